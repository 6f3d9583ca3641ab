"""Broken networks between the client and SeaweedFS (a fault-injecting proxy on
127.0.0.1): uploads succeed after retries or fail cleanly with the multipart upload
aborted; downloads succeed with verified plaintext or fail leaving no file."""

from __future__ import annotations

import hashlib
import os

import boto3
import pytest
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

import s3cse
from s3cse.local import ACCESS_KEY, REGION, SECRET_KEY

from .faultproxy import FaultProxy, Rule

pytestmark = pytest.mark.seaweedfs_only(
    "these test the client's recovery, not the store; behind the fault proxy rclone's serve "
    "s3 was never reached by the faulted requests (not investigated yet, see the notes)"
)

MiB = 1024 * 1024
PARTS = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB, max_concurrency=3)
DATA = os.urandom(16 * MiB + 5)


@pytest.fixture
def proxy(servers):
    with FaultProxy(servers.s3.endpoint) as p:
        yield p


def client_via(proxy: FaultProxy, keyring, attempts: int = 5) -> s3cse.EncryptionClient:
    s3 = boto3.client(
        "s3",
        endpoint_url=proxy.endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(
            s3={"addressing_style": "path"},
            retries={"max_attempts": attempts, "mode": "standard"},
            connect_timeout=2,
            read_timeout=2,
        ),
    )
    return s3cse.EncryptionClient(s3, keyring=keyring)


def no_uploads_left(s3, bucket) -> bool:
    from botocore.exceptions import ClientError

    try:
        return s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    except ClientError as exc:  # rclone's serve s3 answers NoSuchUpload for none
        return exc.response["Error"]["Code"] == "NoSuchUpload"


@pytest.mark.parametrize(
    "rule",
    [
        Rule("PUT", "partNumber=2", "reset"),
        Rule("PUT", "partNumber=", "503", times=2),
        Rule("PUT", "partNumber=1", "500"),
        Rule("POST", "uploadId=", "503"),  # CompleteMultipartUpload
        Rule("POST", "uploads", "reset"),  # CreateMultipartUpload
        Rule("PUT", "partNumber=3", "stall", after=0, seconds=3),
    ],
    ids=["reset-mid-part", "503-parts", "500-part", "503-complete", "reset-create", "stall-part"],
)
def test_upload_recovers_from_transient_faults(s3, bucket, aes_keyring, proxy, rule):
    proxy.add(rule)
    client = client_via(proxy, aes_keyring)
    import io

    client.upload_fileobj(io.BytesIO(DATA), bucket, "up", Config=PARTS)
    assert proxy.log, "the fault never fired"
    direct = s3cse.EncryptionClient(s3, keyring=aes_keyring)
    assert (
        hashlib.sha256(direct.get_object(Bucket=bucket, Key="up")["Body"].read()).digest()
        == hashlib.sha256(DATA).digest()
    )
    assert no_uploads_left(s3, bucket)


def test_upload_that_keeps_failing_is_aborted(s3, bucket, aes_keyring, proxy):
    proxy.add(Rule("PUT", "partNumber=2", "reset", times=100))
    client = client_via(proxy, aes_keyring, attempts=3)
    import io

    with pytest.raises((ClientError, BotoCoreError)):
        client.upload_fileobj(io.BytesIO(DATA), bucket, "doomed", Config=PARTS)
    assert no_uploads_left(s3, bucket)
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0


def test_single_put_reset_is_retried(s3, bucket, kms_keyring, proxy):
    proxy.add(Rule("PUT", "/single", "reset"), Rule("PUT", "/single", "503"))
    client_via(proxy, kms_keyring).put_object(Bucket=bucket, Key="single", Body=DATA[: 3 * MiB])
    direct = s3cse.EncryptionClient(s3, keyring=kms_keyring)
    assert direct.get_object(Bucket=bucket, Key="single")["Body"].read() == DATA[: 3 * MiB]


@pytest.mark.parametrize(
    "rule",
    [
        Rule("GET", "/dl", "reset_response", after=2 * MiB),
        Rule("GET", "/dl", "truncate", after=MiB, times=2),
        Rule("GET", "/dl", "503", times=2),
        Rule("GET", "/dl", "stall", after=64 * 1024, seconds=3),
    ],
    ids=["reset-mid-download", "truncated-response", "503", "stall"],
)
def test_download_file_recovers_or_leaves_nothing(s3, bucket, aes_keyring, proxy, rule, tmp_path):
    s3cse.EncryptionClient(s3, keyring=aes_keyring).put_object(Bucket=bucket, Key="dl", Body=DATA)
    proxy.add(rule)
    client = client_via(proxy, aes_keyring)
    target = tmp_path / "dl.bin"
    client.download_file(bucket, "dl", str(target), Config=PARTS)
    assert target.read_bytes() == DATA
    assert proxy.log


def test_download_that_keeps_failing_leaves_no_file(s3, bucket, aes_keyring, proxy, tmp_path):
    s3cse.EncryptionClient(s3, keyring=aes_keyring).put_object(Bucket=bucket, Key="dl", Body=DATA)
    proxy.add(Rule("GET", "/dl", "truncate", after=MiB, times=1000))
    client = client_via(proxy, aes_keyring, attempts=2)
    with pytest.raises((ClientError, BotoCoreError, s3cse.S3CSEError)):
        client.download_file(bucket, "dl", str(tmp_path / "dl.bin"), Config=PARTS)
    assert list(tmp_path.iterdir()) == []


def test_get_object_cut_off_releases_nothing(s3, bucket, aes_keyring, proxy):
    s3cse.EncryptionClient(s3, keyring=aes_keyring).put_object(
        Bucket=bucket, Key="g", Body=DATA[: 2 * MiB]
    )
    proxy.add(Rule("GET", "/g", "truncate", after=MiB, times=1000))
    client = client_via(proxy, aes_keyring, attempts=2)
    with pytest.raises((ClientError, BotoCoreError, s3cse.S3CSEError)):
        client.get_object(Bucket=bucket, Key="g")
