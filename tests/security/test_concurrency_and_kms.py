"""Many threads sharing one client, and KMS failing in the ways it does."""

from __future__ import annotations

import concurrent.futures
import hashlib
import os
import threading

import boto3
import pytest
from botocore.exceptions import BotoCoreError, ClientError

import s3cse
from s3cse.local import ACCESS_KEY, REGION, SECRET_KEY

SOAK = os.environ.get("S3CSE_SOAK") == "1"
SMALL_OBJECTS = 20_000 if SOAK else 1_000
LARGE_OBJECTS = 24 if SOAK else 4


@pytest.mark.seaweedfs_only("thread safety is the client's; one store is enough")
@pytest.mark.slow
def test_threads_sharing_one_client(s3, bucket, kms_keyring):
    client = s3cse.EncryptionClient(s3, keyring=kms_keyring, buffer_size=4 * 1024 * 1024)
    errors: list[str] = []
    lock = threading.Lock()

    def body_for(i: int) -> bytes:
        size = 20 * 1024 * 1024 + i if i < LARGE_OBJECTS else 1 + (i * 7919) % 4096
        seed = hashlib.sha256(str(i).encode()).digest()
        return (seed * (size // 32 + 1))[:size]

    def one(i: int) -> None:
        data = body_for(i)
        key = f"c/{i}"
        try:
            client.put_object(
                Bucket=bucket, Key=key, Body=data, EncryptionContext={"n": str(i % 5)}
            )
            got = client.get_object(Bucket=bucket, Key=key, EncryptionContext={"n": str(i % 5)})[
                "Body"
            ].read()
            if got != data:
                with lock:
                    errors.append(f"{key}: wrong plaintext")
        except Exception as exc:
            with lock:
                errors.append(f"{key}: {type(exc).__name__}: {exc}")

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(one, range(SMALL_OBJECTS + LARGE_OBJECTS)))
    assert errors == []


@pytest.fixture
def dead_kms_endpoint():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens here any more: connection refused
    return f"http://127.0.0.1:{port}"


def kms_at(endpoint: str):
    from botocore.config import Config

    return boto3.client(
        "kms",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(retries={"max_attempts": 2}, connect_timeout=1),
    )


def test_kms_down_uploads_nothing(s3, bucket, kms_key_arn, dead_kms_endpoint):
    client = s3cse.EncryptionClient(
        s3, keyring=s3cse.KmsKeyring(kms_key_arn, kms_client=kms_at(dead_kms_endpoint))
    )
    with pytest.raises(BotoCoreError, match="Could not connect"):
        client.put_object(Bucket=bucket, Key="never", Body=b"secret")
    with pytest.raises(BotoCoreError):
        client.upload_file(__file__, bucket, "never2")
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0


def test_kms_throttled_and_disabled_give_clear_errors(s3, bucket, kms, kms_key_arn, servers):
    from .faultproxy import FaultProxy, Rule

    s3cse.EncryptionClient(s3, keyring=s3cse.KmsKeyring(kms_key_arn, kms_client=kms)).put_object(
        Bucket=bucket, Key="k", Body=b"x"
    )
    with FaultProxy(servers.kms.endpoint) as proxy:
        proxy.add(Rule("POST", "", "503", times=100))
        throttled = s3cse.EncryptionClient(
            s3, keyring=s3cse.KmsKeyring(kms_key_arn, kms_client=kms_at(proxy.endpoint))
        )
        with pytest.raises(ClientError) as info:
            throttled.put_object(Bucket=bucket, Key="throttled", Body=b"secret")
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert "throttled" not in [
        o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    ]


def test_kms_wrong_key_id_and_disabled_key(s3, bucket, kms, kms_key_arn):
    missing = s3cse.EncryptionClient(
        s3, keyring=s3cse.KmsKeyring("alias/does-not-exist", kms_client=kms)
    )
    with pytest.raises(ClientError, match="NotFoundException"):
        missing.put_object(Bucket=bucket, Key="nope", Body=b"secret")
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0


def test_kms_disabled_key_on_decrypt_is_a_keyring_error():
    """moto does not enforce disabled keys; KMS's answer is replayed by a stub client."""
    from botocore.exceptions import ClientError as CE

    class DisabledKms:
        def generate_data_key(self, **kw):
            return {
                "Plaintext": b"\x01" * 32,
                "CiphertextBlob": b"blob",
                "KeyId": "arn:aws:kms:us-east-1:1:key/x",
            }

        def decrypt(self, **kw):
            raise CE(
                {"Error": {"Code": "DisabledException", "Message": "key is disabled"}}, "Decrypt"
            )

    keyring = s3cse.KmsKeyring("arn:aws:kms:us-east-1:1:key/x", kms_client=DisabledKms())
    obj = s3cse.encrypt(b"x", keyring)
    with pytest.raises(s3cse.DataKeyUnwrapError, match="disabled; enable it"):
        s3cse.decrypt(obj.ciphertext, obj.metadata, keyring)
