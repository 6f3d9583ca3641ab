"""Keyrings: wrapping, selection, clear errors, and reprs that never show key bytes."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

import s3cse

from .conftest import V2, V3


def test_reprs_never_show_key_bytes(aes_keyring, rsa_keyring, kms_keyring, rsa_private_key):
    secret = b"\x11" * 32
    text = repr(aes_keyring) + repr(s3cse.MultiKeyring(aes_keyring, [rsa_keyring, kms_keyring]))
    assert secret.hex() not in text and repr(secret) not in text and "256-bit AES key" in text
    d = rsa_private_key.private_numbers().d
    assert str(d) not in repr(rsa_keyring) and hex(d)[2:12] not in repr(rsa_keyring)
    assert "alias" not in repr(kms_keyring) and "arn:aws:kms" in repr(kms_keyring)


def test_encryption_materials_repr_hides_data_key(aes_keyring):
    materials = aes_keyring.on_encrypt(
        s3cse.EncryptionMaterials(suite=s3cse.AlgorithmSuite.AES_256_GCM_HKDF_SHA512_COMMIT_KEY)
    )
    assert materials.plaintext_data_key.hex() not in repr(materials)
    assert repr(materials.plaintext_data_key) not in repr(materials)


@pytest.mark.parametrize("key", [b"", b"\x00" * 31, b"\x00" * 64])
def test_aes_key_of_wrong_length_is_refused(key):
    with pytest.raises(s3cse.InvalidKeyError, match="16, 24 or 32 bytes"):
        s3cse.AesKeyring(key)


def test_aes_wrong_key_gives_unwrap_error():
    obj = s3cse.encrypt(b"data", s3cse.AesKeyring(b"\x01" * 32))
    with pytest.raises(s3cse.DataKeyUnwrapError, match="wrong key"):
        s3cse.decrypt(obj.ciphertext, obj.metadata, s3cse.AesKeyring(b"\x02" * 32))


def test_rsa_public_key_alone_encrypts_and_refuses_to_decrypt(rsa_private_key):
    pem = rsa_private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    uploader = s3cse.RsaKeyring(public_key=pem)
    assert not uploader.can_decrypt
    obj = s3cse.encrypt(b"for the holder of the private key", uploader)
    with pytest.raises(s3cse.MissingPrivateKeyError, match="private_key"):
        s3cse.decrypt(obj.ciphertext, obj.metadata, uploader)
    der = rsa_private_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    reader = s3cse.RsaKeyring(private_key=der)
    assert (
        s3cse.decrypt(obj.ciphertext, obj.metadata, reader) == b"for the holder of the private key"
    )


def test_rsa_encrypted_pem_with_password(rsa_private_key):
    pem = rsa_private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    )
    assert s3cse.RsaKeyring(private_key=pem, password=b"pw").can_decrypt
    with pytest.raises(s3cse.InvalidKeyError):
        s3cse.RsaKeyring(private_key=pem, password=b"wrong")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"private_key": b"this is not a key"},
        {"public_key": b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"},
        {"public_key": 42},
        {},
    ],
)
def test_rsa_input_that_is_not_a_key_gets_a_clear_error(kwargs):
    with pytest.raises(s3cse.ConfigurationError):
        s3cse.RsaKeyring(**kwargs)


def test_rsa_ec_key_is_refused():
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(s3cse.InvalidKeyError, match="not an RSA key"):
        s3cse.RsaKeyring(private_key=pem)


def test_rsa_mismatched_pair_is_refused(rsa_private_key, other_rsa_private_key):
    with pytest.raises(s3cse.InvalidKeyError, match="not one key pair"):
        s3cse.RsaKeyring(public_key=other_rsa_private_key.public_key(), private_key=rsa_private_key)


def test_rsa_wrong_private_key(rsa_keyring, other_rsa_private_key):
    obj = s3cse.encrypt(b"x", rsa_keyring)
    with pytest.raises(s3cse.DataKeyUnwrapError):
        s3cse.decrypt(
            obj.ciphertext, obj.metadata, s3cse.RsaKeyring(private_key=other_rsa_private_key)
        )


def test_rsa_v2_object_cannot_be_relabelled_v3(rsa_keyring):
    """The pseudo-key binds the content algorithm name: a V2 wrap does not open as V3."""
    import dataclasses

    from s3cse.core.materials import DecryptionMaterials

    obj = s3cse.encrypt(b"x", rsa_keyring, V2)
    parsed = s3cse.parse_metadata(obj.metadata)
    relabelled = dataclasses.replace(
        parsed, suite=s3cse.AlgorithmSuite.AES_256_GCM_HKDF_SHA512_COMMIT_KEY
    )
    with pytest.raises(s3cse.DataKeyUnwrapError):
        rsa_keyring.on_decrypt(DecryptionMaterials(metadata=relabelled))


def test_kms_context_round_trip_and_mismatch(kms_keyring):
    obj = s3cse.encrypt(b"x", kms_keyring, encryption_context={"tenant": "a", "app": "b"})
    assert (
        s3cse.decrypt(
            obj.ciphertext,
            obj.metadata,
            kms_keyring,
            encryption_context={"app": "b", "tenant": "a"},
        )
        == b"x"
    )
    with pytest.raises(s3cse.EncryptionContextMismatchError) as info:
        s3cse.decrypt(
            obj.ciphertext,
            obj.metadata,
            kms_keyring,
            encryption_context={"tenant": "z", "app": "b"},
        )
    assert "different values" in str(info.value)
    with pytest.raises(
        s3cse.EncryptionContextMismatchError,
        match=r"stored keys \['app', 'tenant'\], given keys \[\]",
    ):
        s3cse.decrypt(obj.ciphertext, obj.metadata, kms_keyring)


def test_kms_reserved_context_key_is_refused(kms_keyring):
    with pytest.raises(s3cse.ConfigurationError, match="reserved"):
        s3cse.encrypt(b"x", kms_keyring, encryption_context={"aws:x-amz-cek-alg": "115"})


def test_kms_context_naming_another_algorithm_is_refused(kms_keyring):
    obj = s3cse.encrypt(b"x", kms_keyring)
    meta = dict(obj.metadata, **{"x-amz-t": '{"aws:x-amz-cek-alg":"AES/GCM/NoPadding"}'})
    with pytest.raises(s3cse.MalformedMetadataError, match="aws:x-amz-cek-alg"):
        s3cse.decrypt(obj.ciphertext, meta, kms_keyring)


def test_kms_other_key_gives_unwrap_error(fake_kms, kms_keyring):
    obj = s3cse.encrypt(b"x", kms_keyring)
    other = s3cse.KmsKeyring(fake_kms.create_key(), kms_client=fake_kms)
    with pytest.raises(s3cse.DataKeyUnwrapError, match="IncorrectKeyException"):
        s3cse.decrypt(obj.ciphertext, obj.metadata, other)


def test_raw_keyrings_refuse_an_encryption_context(aes_keyring):
    with pytest.raises(s3cse.ConfigurationError, match="KMS keyrings only"):
        s3cse.encrypt(b"x", aes_keyring, encryption_context={"a": "b"})


def test_kms_discovery(fake_kms, kms_keyring):
    obj = s3cse.encrypt(b"found", kms_keyring)
    assert (
        s3cse.decrypt(obj.ciphertext, obj.metadata, s3cse.KmsKeyring.discovery(fake_kms))
        == b"found"
    )
    assert (
        s3cse.decrypt(
            obj.ciphertext,
            obj.metadata,
            s3cse.KmsKeyring.discovery(fake_kms, accounts=["111122223333"]),
        )
        == b"found"
    )
    limited = s3cse.KmsKeyring.discovery(
        fake_kms, key_arns=["arn:aws:kms:us-east-1:111122223333:key/other"]
    )
    with pytest.raises(s3cse.NoMatchingKeyringError, match="do not allow"):
        s3cse.decrypt(obj.ciphertext, obj.metadata, limited)
    with pytest.raises(s3cse.NoMatchingKeyringError):
        s3cse.decrypt(
            obj.ciphertext, obj.metadata, s3cse.KmsKeyring.discovery(fake_kms, accounts=["999"])
        )
    with pytest.raises(s3cse.ConfigurationError, match="only decrypt"):
        s3cse.encrypt(b"x", s3cse.KmsKeyring.discovery(fake_kms))
    assert fake_kms.calls[-1][0] == "Decrypt" and fake_kms.calls[-1][1]["KeyId"] is None


def test_kms_keyring_needs_a_key_id():
    with pytest.raises(s3cse.ConfigurationError, match="discovery"):
        s3cse.KmsKeyring("")


def test_keyring_of_another_family_names_the_problem(aes_keyring, kms_keyring):
    obj = s3cse.encrypt(b"x", kms_keyring)
    with pytest.raises(s3cse.NoMatchingKeyringError, match="kms\\+context"):
        s3cse.decrypt(obj.ciphertext, obj.metadata, aes_keyring)


def test_multi_keyring_picks_member_by_material_description():
    k1 = s3cse.AesKeyring(b"\x01" * 32, {"kid": "1"})
    k2 = s3cse.AesKeyring(b"\x02" * 32, {"kid": "2"})
    multi = s3cse.MultiKeyring(generator=k2, children=[k1])
    old = s3cse.encrypt(b"old", k1)
    new = s3cse.encrypt(b"new", multi)
    assert new.metadata["x-amz-m"] == '{"kid":"2"}'
    assert s3cse.decrypt(old.ciphertext, old.metadata, multi) == b"old"
    assert s3cse.decrypt(new.ciphertext, new.metadata, multi) == b"new"
    stranger = s3cse.encrypt(b"x", s3cse.AesKeyring(b"\x03" * 32, {"kid": "3"}))
    with pytest.raises(s3cse.NoMatchingKeyringError, match="kid"):
        s3cse.decrypt(stranger.ciphertext, stranger.metadata, multi)


def test_multi_keyring_mixes_key_types(fake_kms, kms_keyring, rsa_keyring, aes_keyring):
    other_kms = s3cse.KmsKeyring(fake_kms.create_key(), kms_client=fake_kms)
    multi = s3cse.MultiKeyring(children=[other_kms, kms_keyring, rsa_keyring, aes_keyring])
    for keyring in (kms_keyring, rsa_keyring, aes_keyring):
        obj = s3cse.encrypt(b"any", keyring, V3)
        assert s3cse.decrypt(obj.ciphertext, obj.metadata, multi) == b"any"
    with pytest.raises(s3cse.ConfigurationError, match="generator"):
        s3cse.encrypt(b"x", multi)


def test_multi_keyring_reports_each_failure(aes_keyring):
    obj = s3cse.encrypt(b"x", aes_keyring)
    impostor = s3cse.AesKeyring(b"\x99" * 32, {"purpose": "unit"})
    with pytest.raises(s3cse.NoMatchingKeyringError, match="none of the matching keyrings"):
        s3cse.decrypt(obj.ciphertext, obj.metadata, s3cse.MultiKeyring(children=[impostor]))


def test_custom_cmm_is_used(aes_keyring):
    class CountingCmm(s3cse.DefaultCryptoMaterialsManager):
        count = 0

        def decrypt_materials(self, materials):
            CountingCmm.count += 1
            return super().decrypt_materials(materials)

    cmm = CountingCmm(aes_keyring)
    obj = s3cse.encrypt(b"x", cmm)
    assert s3cse.decrypt(obj.ciphertext, obj.metadata, cmm) == b"x"
    assert CountingCmm.count == 1


@pytest.mark.parametrize("raw", ["aes", "rsa"])
def test_a_read_that_asks_for_an_encryption_context_refuses_a_raw_key_object(
    raw, aes_keyring, rsa_keyring, kms_keyring
):
    ring = aes_keyring if raw == "aes" else rsa_keyring
    # The tenant check the application thinks it makes: a MultiKeyring of its KMS key
    # and a raw key, a read that passes the tenant's context, and an object planted
    # under the raw key.
    reader = s3cse.MultiKeyring(generator=kms_keyring, children=[ring])
    planted = s3cse.encrypt(b"planted", ring)
    with pytest.raises(s3cse.EncryptionContextMismatchError, match="binds no encryption context"):
        s3cse.decrypt(
            planted.ciphertext, planted.metadata, reader, encryption_context={"tenant": "acme"}
        )
    assert s3cse.decrypt(planted.ciphertext, planted.metadata, reader) == b"planted"
    genuine = s3cse.encrypt(b"genuine", kms_keyring, encryption_context={"tenant": "acme"})
    assert (
        s3cse.decrypt(
            genuine.ciphertext, genuine.metadata, reader, encryption_context={"tenant": "acme"}
        )
        == b"genuine"
    )


def test_key_files_others_can_change_or_read_get_a_warning(tmp_path, rsa_private_key):
    import os
    import warnings

    from cryptography.hazmat.primitives import serialization as ser

    from s3cse import _keyfiles

    aes = tmp_path / "aes.key"
    aes.write_bytes(b"\x07" * 32)
    public = tmp_path / "public.pem"
    public.write_bytes(
        rsa_private_key.public_key().public_bytes(
            ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo
        )
    )
    for path, mode, expected in (
        (aes, 0o600, []),
        (aes, 0o666, ["can be changed by other users", "readable by other users"]),
        (public, 0o644, []),  # a public key may be read by anyone ...
        (public, 0o646, ["can be changed by other users"]),  # ... but not swapped
    ):
        os.chmod(path, mode)
        options = (
            _keyfiles.KeyOptions(aes_keys=[str(path)])
            if path == aes
            else _keyfiles.KeyOptions(rsa_public_keys=[str(path)])
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            options.keyrings()
        found = [str(w.message) for w in caught if issubclass(w.category, _keyfiles.KeyFileWarning)]
        assert len(found) == len(expected), (mode, found)
        for text, message in zip(expected, found, strict=True):
            assert text in message and str(path) in message


def test_no_key_option_gives_no_keyring_and_discovery_is_only_ever_asked_for():
    from s3cse import _keyfiles

    assert _keyfiles.build_keyrings(_keyfiles.KeyOptions()) is None
    implied = _keyfiles.KeyOptions(kms_discovery_accounts=["111122223333"])
    assert implied.kms_discovery and implied.uses_kms
    (ring,) = implied.keyrings()
    assert ring.is_discovery and "111122223333" in repr(ring)
