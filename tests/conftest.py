"""Session fixtures: the real local servers (SeaweedFS for S3, moto for KMS) on loopback."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

import s3cse
from s3cse.local import LocalServers, local_servers

pytest_plugins = ["tests.secret_scan"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test that uses the real local servers is an integration test, by its
    fixtures: `pytest -m "not integration"` runs the unit, functional and sans-IO
    security tests alone."""
    for item in items:
        if "servers" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)
        only = item.get_closest_marker("seaweedfs_only")
        params = getattr(getattr(item, "callspec", None), "params", {})
        if only is not None and params.get("servers", "seaweedfs") != "seaweedfs":
            item.add_marker(pytest.mark.skip(reason=f"not on {params['servers']}: {only.args[0]}"))


#: The S3 implementations every integration test runs against: SeaweedFS, and rclone's
#: serve s3 as a second, stricter one (2000-byte metadata, no conditional writes).
S3_IMPLEMENTATIONS = ("seaweedfs", "rclone")


@pytest.fixture(scope="session", params=S3_IMPLEMENTATIONS)
def servers(request: pytest.FixtureRequest) -> Iterator[LocalServers]:
    keep = os.environ.get("S3CSE_TEST_SERVER_DIR")  # keep server data and logs for a post-mortem
    with (
        (
            contextlib.nullcontext(os.path.join(keep, request.param))
            if keep
            else tempfile.TemporaryDirectory(prefix="s3cse-test-")
        ) as root,
        local_servers(root, request.param) as srv,
    ):
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


@pytest.fixture(scope="module")
def _module_bucket(s3: Any, request: pytest.FixtureRequest) -> str:
    name = f"t{os.getpid()}-{request.module.__name__.rsplit('.', 1)[-1].replace('_', '-')}"[:63]
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def bucket(s3: Any, _module_bucket: str) -> Iterator[str]:
    """An empty bucket: one per test module, emptied after each test. (SeaweedFS gives
    every bucket volumes of its own, so a bucket per test would be slow; and it keeps
    "directories" of deleted keys, so modules do not share one.)"""
    yield _module_bucket
    try:
        uploads = s3.list_multipart_uploads(Bucket=_module_bucket).get("Uploads", [])
    except ClientError:  # rclone's serve s3 answers NoSuchUpload when there are none
        uploads = []
    for upload in uploads:
        s3.abort_multipart_upload(
            Bucket=_module_bucket, Key=upload["Key"], UploadId=upload["UploadId"]
        )
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=_module_bucket):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", []) if o["Key"].isprintable()]
        if keys:
            s3.delete_objects(Bucket=_module_bucket, Delete={"Objects": keys, "Quiet": True})
        for o in page.get("Contents", []):  # names XML 1.0 cannot carry (control characters)
            if not o["Key"].isprintable():
                s3.delete_object(Bucket=_module_bucket, Key=o["Key"])


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
