"""Every metadata field and every region of the ciphertext, altered: a specific error, never plaintext."""

from __future__ import annotations

import base64

import pytest

import s3cse

from .conftest import READ_ALL, V2, V3

PLAINTEXT = bytes(range(256)) * 3 + b"tail"


def flip_b64(value: str, index: int = 0) -> str:
    raw = bytearray(base64.b64decode(value))
    raw[index % len(raw)] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


def encrypt(keyring, config, instruction_file=False):
    return s3cse.encrypt(PLAINTEXT, keyring, config, instruction_file=instruction_file)


def read(obj_ct, meta, keyring, config, file=None):
    return s3cse.decrypt(
        obj_ct, meta, keyring, READ_ALL if config is V2 else config, instruction_file=file
    )


B64_FIELDS_V3 = ["x-amz-3", "x-amz-d", "x-amz-i"]
B64_FIELDS_V2 = ["x-amz-key-v2", "x-amz-iv"]


@pytest.mark.parametrize("field", B64_FIELDS_V3)
@pytest.mark.parametrize("position", [0, -1])
def test_v3_bit_flipped_fields(any_keyring, field, position):
    obj = encrypt(any_keyring, V3)
    meta = dict(obj.metadata, **{field: flip_b64(obj.metadata[field], position)})
    expected = {
        "x-amz-3": s3cse.KeyringError,
        "x-amz-d": s3cse.CommitmentMismatchError,
        "x-amz-i": s3cse.CommitmentMismatchError,
    }[field]
    with pytest.raises(expected):
        read(obj.ciphertext, meta, any_keyring, V3)


@pytest.mark.parametrize("field", B64_FIELDS_V2)
def test_v2_bit_flipped_fields(any_keyring, field):
    obj = encrypt(any_keyring, V2)
    meta = dict(obj.metadata, **{field: flip_b64(obj.metadata[field])})
    expected = s3cse.KeyringError if field == "x-amz-key-v2" else s3cse.IntegrityError
    with pytest.raises(expected):
        read(obj.ciphertext, meta, any_keyring, V2)


@pytest.mark.parametrize("config", [V3, V2], ids=["V3", "V2"])
def test_every_field_removed_or_emptied(any_keyring, config):
    obj = encrypt(any_keyring, config)
    for field in obj.metadata:
        if field in ("x-amz-unencrypted-content-length", "x-amz-matdesc", "x-amz-m", "x-amz-t"):
            continue
        for meta in (
            {k: v for k, v in obj.metadata.items() if k != field},
            dict(obj.metadata, **{field: ""}),
        ):
            with pytest.raises(s3cse.S3CSEError) as info:
                read(obj.ciphertext, meta, any_keyring, config)
            assert not isinstance(info.value, s3cse.IntegrityError) or field == "x-amz-iv"


def test_material_description_change_with_matching_keyring(aes_keyring):
    obj = encrypt(aes_keyring, V3)
    multi = s3cse.MultiKeyring(children=[aes_keyring])
    meta = dict(obj.metadata, **{"x-amz-m": '{"purpose":"other"}'})
    with pytest.raises(s3cse.NoMatchingKeyringError):
        read(obj.ciphertext, meta, multi, V3)


def test_wrap_algorithm_changed(aes_keyring, rsa_keyring):
    obj = encrypt(aes_keyring, V3)
    with pytest.raises(s3cse.NoMatchingKeyringError):
        read(obj.ciphertext, dict(obj.metadata, **{"x-amz-w": "22"}), aes_keyring, V3)
    v2 = encrypt(aes_keyring, V2)
    with pytest.raises(s3cse.LegacyAlgorithmDisabledError):
        read(v2.ciphertext, dict(v2.metadata, **{"x-amz-wrap-alg": "AESWrap"}), aes_keyring, V2)


def test_v2_gcm_object_relabelled_cbc_is_refused(aes_keyring):
    """CVE-2020-8912-style: changing the content algorithm must not yield plaintext."""
    obj = encrypt(aes_keyring, V2)
    meta = {k: v for k, v in obj.metadata.items() if k != "x-amz-tag-len"}
    meta["x-amz-cek-alg"] = "AES/CBC/PKCS5Padding"
    with pytest.raises(s3cse.S3CSEError):
        read(obj.ciphertext, meta, aes_keyring, V2)
    legacy = s3cse.CryptoConfig(
        commitment_policy="REQUIRE_ENCRYPT_ALLOW_DECRYPT", enable_legacy_unauthenticated_modes=True
    )
    with pytest.raises(s3cse.S3CSEError):
        s3cse.decrypt(obj.ciphertext, meta, aes_keyring, legacy)


def test_v3_object_presented_as_v2_is_refused(aes_keyring):
    obj = encrypt(aes_keyring, V3)
    forged = {
        "x-amz-key-v2": obj.metadata["x-amz-3"],
        "x-amz-iv": base64.b64encode(b"\x01" * 12).decode(),
        "x-amz-wrap-alg": "AES/GCM",
        "x-amz-cek-alg": "AES/GCM/NoPadding",
        "x-amz-tag-len": "128",
    }
    with pytest.raises(s3cse.CommitmentPolicyError):
        read(obj.ciphertext, forged, aes_keyring, V3)
    with pytest.raises(s3cse.DataKeyUnwrapError):
        read(obj.ciphertext, forged, aes_keyring, V2)


@pytest.mark.parametrize("config", [V3, V2], ids=["V3", "V2"])
@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda ct: ct[:-1], id="truncated-1"),
        pytest.param(lambda ct: ct[:-16], id="truncated-16"),
        pytest.param(lambda ct: ct[:10], id="truncated-to-10"),
        pytest.param(lambda ct: b"", id="empty"),
        pytest.param(lambda ct: ct + b"\x00", id="extended-1"),
        pytest.param(lambda ct: ct + bytes(16), id="extended-16"),
        pytest.param(lambda ct: bytes([ct[0] ^ 1]) + ct[1:], id="first-byte"),
        pytest.param(lambda ct: ct[:400] + bytes([ct[400] ^ 0x80]) + ct[401:], id="middle"),
        pytest.param(lambda ct: ct[:-1] + bytes([ct[-1] ^ 1]), id="tag"),
        pytest.param(lambda ct: ct[:-17] + bytes([ct[-17] ^ 1]) + ct[-16:], id="last-content-byte"),
    ],
)
def test_ciphertext_tampering_releases_no_plaintext(aes_keyring, config, mutate):
    obj = encrypt(aes_keyring, config)
    with pytest.raises(s3cse.IntegrityError):
        read(mutate(obj.ciphertext), obj.metadata, aes_keyring, config)


def test_swapped_v3_instruction_file_fails_commitment(aes_keyring):
    """CVE-2025-14763: another object's instruction file must not open this object."""
    a = encrypt(aes_keyring, V3, instruction_file=True)
    b = encrypt(aes_keyring, V3, instruction_file=True)
    with pytest.raises(s3cse.CommitmentMismatchError):
        read(a.ciphertext, a.metadata, aes_keyring, V3, file=b.instruction_file)


def test_swapped_v3_metadata_fails_commitment(kms_keyring):
    a = encrypt(kms_keyring, V3)
    b = encrypt(kms_keyring, V3)
    meta = dict(a.metadata, **{"x-amz-3": b.metadata["x-amz-3"]})
    with pytest.raises(s3cse.CommitmentMismatchError):
        read(a.ciphertext, meta, kms_keyring, V3)


def test_zero_byte_and_block_aligned_objects_detect_truncation(aes_keyring):
    for size in (0, 16, 32):
        obj = s3cse.encrypt(bytes(size), aes_keyring)
        assert s3cse.decrypt(obj.ciphertext, obj.metadata, aes_keyring) == bytes(size)
        with pytest.raises(s3cse.IntegrityError):
            s3cse.decrypt(obj.ciphertext[:-16], obj.metadata, aes_keyring)


def test_error_messages_carry_no_key_material(aes_keyring):
    obj = encrypt(aes_keyring, V3)
    meta = dict(obj.metadata, **{"x-amz-d": flip_b64(obj.metadata["x-amz-d"])})
    with pytest.raises(s3cse.S3CSEError) as info:
        read(obj.ciphertext, meta, aes_keyring, V3)
    text = str(info.value)
    for field in ("x-amz-3", "x-amz-d", "x-amz-i"):
        assert obj.metadata[field] not in text
    assert (b"\x11" * 32).hex() not in text
