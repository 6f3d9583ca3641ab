"""Session fixtures: the real local servers (SeaweedFS for S3, moto for KMS) on loopback."""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest

import s3cse
from s3cse.local import LocalServers, local_servers

_bucket_numbers = itertools.count()


@pytest.fixture(scope="session")
def servers() -> Iterator[LocalServers]:
    with tempfile.TemporaryDirectory(prefix="s3cse-test-") as root, local_servers(root) as srv:
        saved = {k: os.environ.get(k) for k in srv.environment}
        os.environ.update(srv.environment)
        try:
            yield srv
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


@pytest.fixture(scope="session")
def s3(servers: LocalServers) -> Any:
    return servers.s3_client(retries={"max_attempts": 2})


@pytest.fixture(scope="session")
def kms(servers: LocalServers) -> Any:
    return servers.kms_client()


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"test-{os.getpid()}-{next(_bucket_numbers)}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def kms_key_arn(kms: Any) -> str:
    arn = kms.create_key(Description="s3cse tests")["KeyMetadata"]["Arn"]
    kms.create_alias(AliasName="alias/s3cse-test", TargetKeyId=arn)
    return str(arn)


@pytest.fixture(scope="session")
def other_kms_key_arn(kms: Any) -> str:
    return str(kms.create_key(Description="s3cse tests, other")["KeyMetadata"]["Arn"])


@pytest.fixture(scope="session")
def rsa_pem() -> tuple[bytes, bytes]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


@pytest.fixture
def kms_keyring(kms: Any, kms_key_arn: str) -> s3cse.KmsKeyring:
    return s3cse.KmsKeyring(kms_key_arn, kms_client=kms)


@pytest.fixture
def aes_keyring() -> s3cse.AesKeyring:
    return s3cse.AesKeyring(b"\x5a" * 32, {"kid": "aes-1"})


@pytest.fixture
def rsa_keyring(rsa_pem: tuple[bytes, bytes]) -> s3cse.RsaKeyring:
    return s3cse.RsaKeyring(private_key=rsa_pem[0], material_description={"kid": "rsa-1"})


@pytest.fixture(params=["aes", "rsa", "kms"])
def keyring(request: pytest.FixtureRequest, aes_keyring, rsa_keyring, kms_keyring) -> s3cse.Keyring:
    return {"aes": aes_keyring, "rsa": rsa_keyring, "kms": kms_keyring}[request.param]
