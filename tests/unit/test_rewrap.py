"""Key rotation in the core: same data key, new wrap, content untouched."""

from __future__ import annotations

import itertools

import pytest

import s3cse
from s3cse.core.envelope import can_unwrap, rewrap

from . import legacy_objects as lo
from .conftest import LEGACY, READ_ALL, V2, V3


@pytest.mark.parametrize("config", [V3, V2], ids=["V3", "V2"])
@pytest.mark.parametrize("to_file", [False, True], ids=["to-metadata", "to-instruction"])
def test_rotation_between_every_key_type(aes_keyring, rsa_keyring, kms_keyring, config, to_file):
    read = READ_ALL if config is V2 else V3
    chain = [aes_keyring, rsa_keyring, kms_keyring, aes_keyring]
    obj = s3cse.encrypt(b"rotate me", chain[0], config)
    meta, file = obj.metadata, obj.instruction_file
    for old, new in itertools.pairwise(chain):
        result = rewrap(old, new, meta, read, instruction_file=file, to_instruction_file=to_file)
        if to_file and config is V3:
            assert set(result.metadata) == {"x-amz-c", "x-amz-d", "x-amz-i"}
        meta, file = result.metadata, result.instruction_file
        assert s3cse.decrypt(obj.ciphertext, meta, new, read, instruction_file=file) == b"rotate me"
        parsed = s3cse.parse_metadata(meta, file)
        assert can_unwrap(new, parsed, read) and (old is new or not can_unwrap(old, parsed, read))


def test_rotation_keeps_v3_commitment_and_message_id(aes_keyring, kms_keyring):
    obj = s3cse.encrypt(b"x", aes_keyring)
    result = rewrap(aes_keyring, kms_keyring, obj.metadata)
    for field in ("x-amz-c", "x-amz-d", "x-amz-i"):
        assert result.metadata[field] == obj.metadata[field]
    assert result.metadata["x-amz-w"] == "12"


def test_rotation_with_new_kms_context(kms_keyring):
    obj = s3cse.encrypt(b"x", kms_keyring, encryption_context={"a": "1"})
    result = rewrap(
        kms_keyring,
        kms_keyring,
        obj.metadata,
        encryption_context={"a": "1"},
        new_encryption_context={"b": "2"},
    )
    assert (
        s3cse.decrypt(obj.ciphertext, result.metadata, kms_keyring, encryption_context={"b": "2"})
        == b"x"
    )


def test_rotation_refuses_forged_v3_key(aes_keyring):
    a = s3cse.encrypt(b"a", aes_keyring)
    b = s3cse.encrypt(b"b", aes_keyring)
    forged = dict(a.metadata, **{"x-amz-3": b.metadata["x-amz-3"]})
    with pytest.raises(s3cse.CommitmentMismatchError):
        rewrap(aes_keyring, aes_keyring, forged)


def test_rotation_of_v1_objects_is_refused_with_advice():
    master = b"\x44" * 32
    _, meta = lo.v1_aes_object(master, b"old")
    with pytest.raises(s3cse.ConfigurationError, match="copy the object"):
        rewrap(s3cse.AesKeyring(master), s3cse.AesKeyring(master), meta, LEGACY)


def test_rotation_from_legacy_wrap_to_current_wrap():
    master = b"\x45" * 32
    ct, meta = lo.v2_aeswrap_object(master, b"legacy wrapped")
    config = s3cse.CryptoConfig(
        commitment_policy="REQUIRE_ENCRYPT_ALLOW_DECRYPT", enable_legacy_wrapping=True
    )
    result = rewrap(s3cse.AesKeyring(master), s3cse.AesKeyring(master), meta, config)
    assert result.metadata["x-amz-wrap-alg"] == "AES/GCM"
    assert (
        s3cse.decrypt(ct, result.metadata, s3cse.AesKeyring(master), READ_ALL) == b"legacy wrapped"
    )


def test_rewind_resends_identical_ciphertext(aes_keyring):
    enc = s3cse.begin_encryption(aes_keyring)
    first = enc.update(b"same plaintext") + enc.finalize()
    enc.rewind()
    assert enc.update(b"same plaintext") + enc.finalize() == first


def test_fresh_decryptor_replays_without_new_unwrap(fake_kms, kms_keyring):
    obj = s3cse.encrypt(b"twice", kms_keyring)
    calls = len(fake_kms.calls)
    dec = s3cse.begin_decryption(kms_keyring, obj.metadata)
    again = dec.fresh()
    assert dec.update(obj.ciphertext) + dec.finalize() == b"twice"
    assert again.update(obj.ciphertext) + again.finalize() == b"twice"
    assert len(fake_kms.calls) == calls + 1
