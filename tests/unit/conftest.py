from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

import s3cse

from .fakes import FakeKms


@pytest.fixture(scope="session")
def rsa_private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def other_rsa_private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def fake_kms() -> FakeKms:
    return FakeKms()


@pytest.fixture
def kms_keyring(fake_kms: FakeKms) -> s3cse.KmsKeyring:
    arn = fake_kms.create_key(alias="alias/data")
    return s3cse.KmsKeyring(arn, kms_client=fake_kms)  # type: ignore[arg-type]


@pytest.fixture
def aes_keyring() -> s3cse.AesKeyring:
    return s3cse.AesKeyring(b"\x11" * 32, {"purpose": "unit"})


@pytest.fixture
def rsa_keyring(rsa_private_key: rsa.RSAPrivateKey) -> s3cse.RsaKeyring:
    return s3cse.RsaKeyring(private_key=rsa_private_key, material_description={"kid": "rsa-1"})


@pytest.fixture(params=["aes", "rsa", "kms"])
def any_keyring(
    request: pytest.FixtureRequest, aes_keyring, rsa_keyring, kms_keyring
) -> s3cse.Keyring:
    return {"aes": aes_keyring, "rsa": rsa_keyring, "kms": kms_keyring}[request.param]


V2 = s3cse.CryptoConfig(commitment_policy="FORBID_ENCRYPT_ALLOW_DECRYPT")
V3 = s3cse.CryptoConfig()
READ_ALL = s3cse.CryptoConfig(commitment_policy="REQUIRE_ENCRYPT_ALLOW_DECRYPT")
LEGACY = s3cse.CryptoConfig(
    commitment_policy="REQUIRE_ENCRYPT_ALLOW_DECRYPT",
    enable_legacy_wrapping=True,
    enable_legacy_unauthenticated_modes=True,
)
