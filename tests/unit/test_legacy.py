"""Legacy reads: each only behind its named switch, each checked against objects built from primitives."""

from __future__ import annotations

import pytest

import s3cse

from . import legacy_objects as lo
from .conftest import LEGACY, READ_ALL, V3

MASTER = b"\x33" * 32
TEXT = b"legacy secret, not block aligned!"


@pytest.mark.parametrize("data_key_len", [16, 24, 32])
def test_v1_aes_ecb_wrapped_cbc_object(data_key_len):
    ct, meta = lo.v1_aes_object(MASTER, TEXT, data_key_len)
    keyring = s3cse.AesKeyring(MASTER)
    assert s3cse.decrypt(ct, meta, keyring, LEGACY) == TEXT


def test_v1_needs_both_switches_and_names_them():
    ct, meta = lo.v1_aes_object(MASTER, TEXT)
    keyring = s3cse.AesKeyring(MASTER)
    with pytest.raises(s3cse.CommitmentPolicyError, match="REQUIRE_ENCRYPT_ALLOW_DECRYPT"):
        s3cse.decrypt(ct, meta, keyring, V3)
    with pytest.raises(s3cse.LegacyAlgorithmDisabledError) as info:
        s3cse.decrypt(ct, meta, keyring, READ_ALL)
    assert info.value.switch == "enable_legacy_unauthenticated_modes"
    only_cbc = s3cse.CryptoConfig(
        commitment_policy="REQUIRE_ENCRYPT_ALLOW_DECRYPT", enable_legacy_unauthenticated_modes=True
    )
    with pytest.raises(s3cse.LegacyAlgorithmDisabledError) as info:
        s3cse.decrypt(ct, meta, keyring, only_cbc)
    assert info.value.switch == "enable_legacy_wrapping"
    assert "enable_legacy_wrapping=True" in str(info.value)


def test_v1_rsa_pkcs1_object(rsa_private_key):
    ct, meta = lo.v1_rsa_object(rsa_private_key.public_key(), TEXT)
    keyring = s3cse.RsaKeyring(private_key=rsa_private_key)
    assert s3cse.decrypt(ct, meta, keyring, LEGACY) == TEXT


def test_v1_rsa_refused_without_switch_before_any_rsa_operation(rsa_private_key, monkeypatch):
    ct, meta = lo.v1_rsa_object(rsa_private_key.public_key(), TEXT)
    keyring = s3cse.RsaKeyring(private_key=rsa_private_key)
    monkeypatch.setattr(
        keyring, "_decrypt", lambda *a: pytest.fail("RSA used while the switch is off")
    )
    config = s3cse.CryptoConfig(
        commitment_policy="REQUIRE_ENCRYPT_ALLOW_DECRYPT", enable_legacy_unauthenticated_modes=True
    )
    with pytest.raises(s3cse.LegacyAlgorithmDisabledError):
        s3cse.decrypt(ct, meta, keyring, config)


def test_pkcs1_bad_padding_and_wrong_key_are_indistinguishable(
    rsa_private_key, other_rsa_private_key
):
    ct, meta = lo.v1_rsa_object(rsa_private_key.public_key(), TEXT)
    wrong_key = s3cse.RsaKeyring(private_key=other_rsa_private_key)
    with pytest.raises(s3cse.DataKeyUnwrapError) as wrong:
        s3cse.decrypt(ct, meta, wrong_key, LEGACY)
    garbage = dict(meta, **{"x-amz-key": lo.b64(b"\x00\x02" + b"\x55" * 254)})
    right_key = s3cse.RsaKeyring(private_key=rsa_private_key)
    with pytest.raises(s3cse.DataKeyUnwrapError) as bad_padding:
        s3cse.decrypt(ct, garbage, right_key, LEGACY)
    assert type(wrong.value) is type(bad_padding.value)
    assert str(wrong.value) == str(bad_padding.value)


def test_v2_aeswrap_object():
    ct, meta = lo.v2_aeswrap_object(MASTER, TEXT)
    keyring = s3cse.AesKeyring(MASTER)
    with pytest.raises(s3cse.LegacyAlgorithmDisabledError, match="enable_legacy_wrapping"):
        s3cse.decrypt(ct, meta, keyring, READ_ALL)
    config = s3cse.CryptoConfig(
        commitment_policy="REQUIRE_ENCRYPT_ALLOW_DECRYPT", enable_legacy_wrapping=True
    )
    assert s3cse.decrypt(ct, meta, keyring, config) == TEXT


@pytest.mark.parametrize("mgf_sha1", [True, False], ids=["mgf1-sha1", "mgf1-sha256"])
def test_v2_rsa_oaep_sha256_object(rsa_private_key, mgf_sha1):
    ct, meta = lo.v2_rsa_oaep_sha256_object(rsa_private_key.public_key(), TEXT, mgf_sha1)
    keyring = s3cse.RsaKeyring(private_key=rsa_private_key)
    with pytest.raises(s3cse.LegacyAlgorithmDisabledError):
        s3cse.decrypt(ct, meta, keyring, READ_ALL)
    assert s3cse.decrypt(ct, meta, keyring, LEGACY) == TEXT


@pytest.mark.parametrize("cbc", [False, True])
def test_v2_legacy_kms_object(fake_kms, cbc):
    arn = fake_kms.create_key()
    ct, meta = lo.v2_kms_legacy_object(fake_kms, arn, TEXT, cbc)
    keyring = s3cse.KmsKeyring(arn, kms_client=fake_kms)
    with pytest.raises(s3cse.LegacyAlgorithmDisabledError):
        s3cse.decrypt(ct, meta, keyring, READ_ALL)
    assert s3cse.decrypt(ct, meta, keyring, LEGACY) == TEXT


def test_v2_aes_gcm_object_built_from_primitives():
    ct, meta = lo.v2_gcm_object_with_raw_aes_gcm_wrap(MASTER, TEXT)
    assert s3cse.decrypt(ct, meta, s3cse.AesKeyring(MASTER), READ_ALL) == TEXT


def test_v1_cbc_truncated_gives_integrity_error():
    ct, meta = lo.v1_aes_object(MASTER, TEXT)
    with pytest.raises(s3cse.IntegrityError):
        s3cse.decrypt(ct[:-1], meta, s3cse.AesKeyring(MASTER), LEGACY)
