"""The metadata / instruction-file codec: detection, strictness, non-ASCII values."""

from __future__ import annotations

import base64
import contextlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import s3cse
from s3cse.core.metadata import decode_metadata_value, parse_metadata

from .conftest import V2


def b64(n: int, fill: int = 7) -> str:
    return base64.b64encode(bytes([fill]) * n).decode()


V2_FIELDS = {
    "x-amz-key-v2": b64(60),
    "x-amz-iv": b64(12),
    "x-amz-matdesc": "{}",
    "x-amz-wrap-alg": "AES/GCM",
    "x-amz-cek-alg": "AES/GCM/NoPadding",
    "x-amz-tag-len": "128",
}
V3_FIELDS = {
    "x-amz-c": "115",
    "x-amz-3": b64(60),
    "x-amz-w": "02",
    "x-amz-m": "{}",
    "x-amz-d": b64(28),
    "x-amz-i": b64(28),
}
V1_FIELDS = {"x-amz-key": b64(48), "x-amz-iv": b64(16), "x-amz-matdesc": "{}"}


def test_detects_each_family():
    assert parse_metadata(V1_FIELDS).version is s3cse.FormatVersion.V1
    assert parse_metadata(V2_FIELDS).version is s3cse.FormatVersion.V2
    v3 = parse_metadata(V3_FIELDS)
    assert v3.version is s3cse.FormatVersion.V3
    assert v3.suite is s3cse.AlgorithmSuite.AES_256_GCM_HKDF_SHA512_COMMIT_KEY
    assert v3.wrap_algorithm is s3cse.WrapAlgorithm.AES_GCM


def test_header_form_with_prefix_and_case_is_accepted():
    headers = {"X-Amz-Meta-" + k.upper(): v for k, v in V2_FIELDS.items()}
    assert parse_metadata(headers).version is s3cse.FormatVersion.V2


@pytest.mark.parametrize(
    "extra",
    [
        {"x-amz-key": b64(48)},
        {"x-amz-3": b64(60)},
        {"x-amz-d": b64(28)},
        {"x-amz-c": "115"},
    ],
)
def test_v2_with_fields_of_another_version_is_refused(extra):
    with pytest.raises(s3cse.MixedFormatMetadataError):
        parse_metadata({**V2_FIELDS, **extra})


@pytest.mark.parametrize(
    "extra", [{"x-amz-iv": b64(12)}, {"x-amz-key-v2": b64(60)}, {"x-amz-matdesc": "{}"}]
)
def test_v3_with_v1_v2_fields_is_refused(extra):
    with pytest.raises(s3cse.MixedFormatMetadataError):
        parse_metadata({**V3_FIELDS, **extra})


@pytest.mark.parametrize("field", sorted(V2_FIELDS))
def test_each_missing_v2_field_has_its_own_error(field):
    fields = dict(V2_FIELDS)
    del fields[field]
    if field == "x-amz-matdesc":
        assert parse_metadata(fields).material_description == {}
        return
    if field == "x-amz-key-v2":
        with pytest.raises(s3cse.MalformedMetadataError):
            parse_metadata(fields)
        return
    with pytest.raises(s3cse.MalformedMetadataError) as info:
        parse_metadata(fields)
    assert info.value.field == field
    assert field in str(info.value)


@pytest.mark.parametrize("field", sorted(V3_FIELDS))
def test_each_missing_v3_field_has_its_own_error(field):
    fields = dict(V3_FIELDS)
    del fields[field]
    if field == "x-amz-m":
        assert parse_metadata(fields).material_description == {}
        return
    with pytest.raises(s3cse.MalformedMetadataError) as info:
        parse_metadata(fields)
    if field != "x-amz-3":
        assert info.value.field == field


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("x-amz-iv", "not base64!!", "not valid base64"),
        ("x-amz-iv", b64(16), "holds 16 bytes, expected 12"),
        ("x-amz-key-v2", "", "empty"),
        ("x-amz-cek-alg", "AES/CTR/NoPadding", "unknown content algorithm"),
        ("x-amz-wrap-alg", "ROT13", "unknown wrap algorithm"),
        ("x-amz-tag-len", "96", "must be 128"),
        ("x-amz-matdesc", "[1, 2]", "JSON object of strings"),
        ("x-amz-matdesc", "{not json", "not valid JSON"),
        ("x-amz-unencrypted-content-length", "-5", "non-negative integer"),
    ],
)
def test_malformed_v2_fields(field, value, message):
    with pytest.raises(s3cse.MalformedMetadataError, match=message):
        parse_metadata({**V2_FIELDS, field: value})


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("x-amz-c", "114", "unknown V3 content algorithm"),
        ("x-amz-w", "99", "unknown V3 wrap algorithm code"),
        ("x-amz-d", b64(27), "expected 28"),
        ("x-amz-i", b64(12), "expected 28"),
        ("x-amz-3", "%%%", "not valid base64"),
        ("x-amz-m", '{"a": 1}', "JSON object of strings"),
    ],
)
def test_malformed_v3_fields(field, value, message):
    with pytest.raises(s3cse.MalformedMetadataError, match=message):
        parse_metadata({**V3_FIELDS, field: value})


def test_v3_kms_wrap_with_material_description_is_refused():
    with pytest.raises(s3cse.MalformedMetadataError, match="x-amz-t"):
        parse_metadata({**V3_FIELDS, "x-amz-w": "12"})
    fields = {k: v for k, v in V3_FIELDS.items() if k != "x-amz-m"}
    with pytest.raises(s3cse.MalformedMetadataError, match="x-amz-m"):
        parse_metadata({**fields, "x-amz-t": "{}"})


def test_cbc_with_tag_length_is_refused():
    fields = {**V2_FIELDS, "x-amz-cek-alg": "AES/CBC/PKCS5Padding", "x-amz-iv": b64(16)}
    with pytest.raises(s3cse.MalformedMetadataError, match="no tag"):
        parse_metadata(fields)
    del fields["x-amz-tag-len"]
    assert parse_metadata(fields).suite is s3cse.AlgorithmSuite.AES_256_CBC_IV16_NO_KDF


def test_no_metadata_and_no_instruction_file_is_not_encrypted():
    with pytest.raises(s3cse.NotEncryptedError):
        parse_metadata({"owner": "me"})
    assert s3cse.needs_instruction_file({"owner": "me"})
    with pytest.raises(s3cse.NotEncryptedError):
        parse_metadata({}, {"unrelated": "x"})


def test_v2_instruction_file():
    parsed = parse_metadata({}, V2_FIELDS)
    assert parsed.from_instruction_file
    assert parsed.version is s3cse.FormatVersion.V2


def test_go_client_instruction_file_with_plaintext_length_is_accepted():
    parsed = parse_metadata({}, {**V2_FIELDS, "x-amz-unencrypted-content-length": "5"})
    assert parsed.unencrypted_content_length == 5


def test_metadata_in_object_and_instruction_file_is_refused():
    with pytest.raises(s3cse.DuplicateMetadataError):
        parse_metadata(V2_FIELDS, V2_FIELDS)
    with pytest.raises(s3cse.DuplicateMetadataError):
        parse_metadata(V3_FIELDS, {"x-amz-3": b64(60), "x-amz-w": "02"})


def split_v3():
    obj = {k: V3_FIELDS[k] for k in ("x-amz-c", "x-amz-d", "x-amz-i")}
    file = {k: V3_FIELDS[k] for k in ("x-amz-3", "x-amz-w", "x-amz-m")}
    return obj, file


def test_v3_instruction_file():
    obj, file = split_v3()
    assert s3cse.needs_instruction_file(obj)
    parsed = parse_metadata(obj, file)
    assert parsed.from_instruction_file and parsed.version is s3cse.FormatVersion.V3


@pytest.mark.parametrize("field", ["x-amz-c", "x-amz-d", "x-amz-i"])
def test_v3_fields_found_in_instruction_file_are_refused(field):
    obj, file = split_v3()
    file[field] = V3_FIELDS[field]
    with pytest.raises(s3cse.MalformedMetadataError, match="tampered"):
        parse_metadata(obj, file)


def test_v3_instruction_file_without_object_fields_is_refused():
    _, file = split_v3()
    with pytest.raises(s3cse.MalformedMetadataError, match="x-amz-c"):
        parse_metadata({}, file)


def test_v2_fields_in_v3_instruction_file_are_refused():
    obj, file = split_v3()
    file["x-amz-iv"] = b64(12)
    with pytest.raises(s3cse.MixedFormatMetadataError):
        parse_metadata(obj, file)


def test_instruction_file_body_must_be_a_json_object_of_strings():
    with pytest.raises(s3cse.MalformedMetadataError):
        s3cse.decode_instruction_file(b"\xff\xfe")
    with pytest.raises(s3cse.MalformedMetadataError):
        s3cse.decode_instruction_file(b'["x"]')
    with pytest.raises(s3cse.MalformedMetadataError):
        s3cse.decode_instruction_file(b'{"a": 1}')


def test_rfc2047_and_latin1_shown_utf8_values_are_decoded():
    text = "caf\u00e9 \u6771\u4eac"
    encoded = "=?UTF-8?B?" + base64.b64encode(text.encode()).decode() + "?="
    assert decode_metadata_value(encoded) == text
    assert decode_metadata_value(text.encode().decode("latin-1")) == text
    assert decode_metadata_value("plain") == "plain"
    matdesc = json.dumps({"owner": text}, ensure_ascii=False)
    shown = matdesc.encode().decode("latin-1")
    parsed = parse_metadata({**V2_FIELDS, "x-amz-matdesc": shown})
    assert parsed.material_description == {"owner": text}


def test_non_ascii_material_description_is_written_ascii_safe():
    keyring = s3cse.AesKeyring(b"\x01" * 32, {"owner": "J\u00fcrgen"})
    obj = s3cse.encrypt(b"data", keyring, V2)
    assert obj.metadata["x-amz-matdesc"].isascii()
    assert parse_metadata(obj.metadata).material_description == {"owner": "J\u00fcrgen"}


@given(st.dictionaries(st.text(max_size=20), st.text(max_size=60), max_size=12))
def test_parser_raises_only_library_errors_on_arbitrary_maps(fields):
    with contextlib.suppress(s3cse.S3CSEError):
        parse_metadata(fields)


@given(
    st.dictionaries(
        st.sampled_from(sorted(set(V2_FIELDS) | set(V3_FIELDS) | set(V1_FIELDS))),
        st.one_of(
            st.text(max_size=80),
            st.sampled_from([b64(12), b64(16), b64(28), b64(60), "115", "02", "12", "{}"]),
        ),
    ),
    st.one_of(st.none(), st.dictionaries(st.sampled_from(sorted(V3_FIELDS)), st.text(max_size=40))),
)
def test_parser_raises_only_library_errors_on_crypto_like_maps(fields, file):
    with contextlib.suppress(s3cse.S3CSEError):
        parse_metadata(fields, file)


@given(st.binary(max_size=200))
def test_instruction_file_decoder_raises_only_library_errors(body):
    with contextlib.suppress(s3cse.S3CSEError):
        s3cse.decode_instruction_file(body)


def test_hostile_parser_inputs_stay_library_errors():
    with pytest.raises(s3cse.MalformedMetadataError):
        s3cse.decode_instruction_file(b"[" * 60000)
    with pytest.raises(s3cse.MalformedMetadataError):
        parse_metadata({**V2_FIELDS, "x-amz-matdesc": "[" * 60000})
    with pytest.raises(s3cse.MalformedMetadataError):
        parse_metadata({**V2_FIELDS, "x-amz-unencrypted-content-length": "\u00b2"})
    with pytest.raises(s3cse.MalformedMetadataError):
        parse_metadata({**V2_FIELDS, 7: "x"})


def test_encoded_words_inside_json_are_left_alone():
    matdesc = '{"note":"x =?utf-8?q?a?= y"}'
    assert parse_metadata({**V2_FIELDS, "x-amz-matdesc": matdesc}).material_description == {
        "note": "x =?utf-8?q?a?= y"
    }
    file = {**V2_FIELDS, "x-amz-matdesc": '{"n":"=?UTF-8?B?w6k=?="}'}
    assert parse_metadata({}, file).material_description == {"n": "=?UTF-8?B?w6k=?="}


@pytest.mark.parametrize("digits", [21, 5000, 100_000])
def test_a_huge_length_field_is_a_metadata_error_not_a_value_error(digits):
    enc = s3cse.begin_encryption(s3cse.AesKeyring(b"\x01" * 32), V2, plaintext_length=5)
    fields = dict(enc.metadata, **{"x-amz-unencrypted-content-length": "9" * digits})
    with pytest.raises(s3cse.MalformedMetadataError, match="x-amz-unencrypted-content-length"):
        parse_metadata(fields)
    with pytest.raises(s3cse.MalformedMetadataError):
        parse_metadata(
            {"x-amz-crypto-instr-file": ""},
            {**enc.metadata, "x-amz-unencrypted-content-length": "1" * digits},
        )


def test_one_crypto_field_under_two_names_is_refused():
    enc = s3cse.begin_encryption(s3cse.AesKeyring(b"\x01" * 32))
    # boto3's Metadata: the header x-amz-meta-x-amz-meta-x-amz-3 arrives as x-amz-meta-x-amz-3
    forged = dict(enc.metadata)
    forged["x-amz-meta-x-amz-3"] = forged["x-amz-3"][:-4] + "AAAA"
    with pytest.raises(s3cse.DuplicateMetadataError, match="x-amz-3"):
        parse_metadata(forged)


@settings(max_examples=60, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(sorted(s3cse.core.metadata.crypto_metadata_keys())),
        st.builds(
            lambda piece, times: piece * times,
            st.sampled_from(["9", "A", "=", "{", '"', "\u0663", "x-amz-"]),
            st.integers(0, 6000),
        ),
        max_size=8,
    )
)
def test_parser_raises_only_library_errors_on_long_values(fields):
    with contextlib.suppress(s3cse.S3CSEError):
        parse_metadata(fields)


def test_an_instruction_file_naming_a_field_twice_is_refused():
    with pytest.raises(s3cse.MalformedMetadataError, match="twice"):
        s3cse.decode_instruction_file(b'{"x-amz-key-v2": "AAAA", "x-amz-key-v2": "BBBB"}')


def test_non_ascii_names_are_not_lowered_into_crypto_field_names():
    enc = s3cse.begin_encryption(s3cse.AesKeyring(b"\x01" * 32))
    kelvin = dict(enc.metadata)
    kelvin["x-amz-\u212a"] = "planted"  # the Kelvin sign lowers to "k" in Unicode
    assert parse_metadata(kelvin).version == parse_metadata(enc.metadata).version
    assert "x-amz-k" not in s3cse.core.metadata._normalise({"x-amz-\u212a": "v"})
