"""Round trips for every keyring x format written x metadata location, through the public API."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import s3cse

from .conftest import READ_ALL, V2, V3

SIZES = [0, 1, 15, 16, 17, 31, 32, 33, 1000, 65536 + 7]


@pytest.mark.parametrize("instruction_file", [False, True], ids=["metadata", "instruction"])
@pytest.mark.parametrize("config", [V3, V2], ids=["V3", "V2"])
@pytest.mark.parametrize("size", SIZES)
def test_round_trip_every_keyring_and_format(any_keyring, config, instruction_file, size):
    plaintext = bytes(range(256)) * (size // 256) + bytes(size % 256)
    obj = s3cse.encrypt(plaintext, any_keyring, config, instruction_file=instruction_file)
    assert len(obj.ciphertext) == size + 16
    assert plaintext[:16] not in obj.ciphertext or size < 16
    read_config = READ_ALL if config is V2 else V3
    assert (
        s3cse.decrypt(
            obj.ciphertext,
            obj.metadata,
            any_keyring,
            read_config,
            instruction_file=obj.instruction_file,
        )
        == plaintext
    )


def test_v3_metadata_fields(aes_keyring):
    obj = s3cse.encrypt(b"x", aes_keyring)
    assert set(obj.metadata) == {"x-amz-c", "x-amz-3", "x-amz-w", "x-amz-m", "x-amz-d", "x-amz-i"}
    assert obj.metadata["x-amz-c"] == "115"
    assert obj.metadata["x-amz-w"] == "02"
    assert obj.instruction_file is None


def test_v3_instruction_file_split(kms_keyring):
    obj = s3cse.encrypt(b"x", kms_keyring, instruction_file=True)
    assert set(obj.metadata) == {"x-amz-c", "x-amz-d", "x-amz-i"}
    assert set(obj.instruction_file) == {"x-amz-3", "x-amz-w", "x-amz-t"}
    assert obj.instruction_file["x-amz-w"] == "12"


def test_v2_metadata_fields(rsa_keyring):
    obj = s3cse.encrypt(b"abc", rsa_keyring, V2)
    assert obj.metadata["x-amz-wrap-alg"] == "RSA-OAEP-SHA1"
    assert obj.metadata["x-amz-cek-alg"] == "AES/GCM/NoPadding"
    assert obj.metadata["x-amz-tag-len"] == "128"
    assert obj.metadata["x-amz-unencrypted-content-length"] == "3"
    assert obj.metadata["x-amz-matdesc"] == '{"kid":"rsa-1"}'


def test_v2_instruction_file_never_holds_plaintext_length(aes_keyring):
    obj = s3cse.encrypt(b"abc", aes_keyring, V2, instruction_file=True)
    assert obj.metadata == {}
    assert "x-amz-unencrypted-content-length" not in obj.instruction_file
    assert (
        s3cse.decode_instruction_file(s3cse.encode_instruction_file(obj.instruction_file))
        == obj.instruction_file
    )


def test_kms_context_stored_with_reserved_key(kms_keyring, fake_kms):
    obj = s3cse.encrypt(b"abc", kms_keyring, encryption_context={"tenant": "a"})
    assert '"aws:x-amz-cek-alg":"115"' in obj.metadata["x-amz-t"]
    assert fake_kms.calls[-1][1]["EncryptionContext"] == {"tenant": "a", "aws:x-amz-cek-alg": "115"}
    v2 = s3cse.encrypt(b"abc", kms_keyring, V2, encryption_context={"tenant": "a"})
    assert '"aws:x-amz-cek-alg":"AES/GCM/NoPadding"' in v2.metadata["x-amz-matdesc"]


@settings(max_examples=60, deadline=None)
@given(
    data=st.binary(min_size=0, max_size=300),
    cuts=st.lists(st.integers(min_value=0, max_value=300), max_size=8),
    use_v3=st.booleans(),
)
def test_streaming_matches_one_shot_for_any_chunking(data, cuts, use_v3):
    keyring = s3cse.AesKeyring(b"\x22" * 32)
    config = V3 if use_v3 else V2
    enc = s3cse.begin_encryption(keyring, config)
    points = sorted({0, len(data), *(c for c in cuts if c <= len(data))})
    pieces = [enc.update(data[a:b]) for a, b in itertools.pairwise(points)]
    ciphertext = b"".join(pieces) + enc.finalize()
    dec = s3cse.begin_decryption(keyring, enc.metadata, READ_ALL)
    ct_points = sorted({0, len(ciphertext), *(c for c in cuts if c <= len(ciphertext))})
    out = bytearray()
    for a, b in itertools.pairwise(ct_points):
        buf = bytearray(b - a + 31)
        n = dec.update_into(ciphertext[a:b], buf)
        out += buf[:n]
    out += dec.finalize()
    assert bytes(out) == data
