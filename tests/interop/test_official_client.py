"""Interop with AWS's official Python S3 Encryption Client (amazon-s3-encryption-client-python).

What one client writes, the other reads: V2 and V3, KMS keyring (the only keyring the
official 4.0 client has), with and without encryption context, object metadata and
instruction files (the official client reads them but never writes them), single puts
and multipart uploads. Each official client gets a boto3 client of its own: it installs
hooks on the client it is given.
"""

from __future__ import annotations

import hashlib
import io

import pytest
from boto3.s3.transfer import TransferConfig
from s3_encryption import S3EncryptionClient, S3EncryptionClientConfig
from s3_encryption.materials import AlgorithmSuite, CommitmentPolicy
from s3_encryption.materials.kms_keyring import KmsKeyring as OfficialKmsKeyring

import s3cse

pytestmark = pytest.mark.seaweedfs_only(
    "the official client looks up metadata names as S3 sends them (lower case); rclone's "
    "serve s3 returns them as they were written (X-Amz-Key-V2), which that client cannot read"
)

MiB = 1024 * 1024
SIZES = [0, 1, 15, 16, 17, MiB + 3, 17 * MiB + 5]
CONTEXT = {"tenant": "acme", "purpose": "interop"}


def payload(size: int) -> bytes:
    seed = hashlib.sha256(str(size).encode()).digest()
    return (seed * (size // 32 + 1))[:size]


@pytest.fixture
def official(servers, kms_key_arn):
    def make(version: int) -> S3EncryptionClient:
        if version == 3:
            config = S3EncryptionClientConfig(
                keyring=OfficialKmsKeyring(servers.kms_client(), kms_key_arn),
                commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_ALLOW_DECRYPT,
            )
        else:
            config = S3EncryptionClientConfig(
                keyring=OfficialKmsKeyring(servers.kms_client(), kms_key_arn),
                encryption_algorithm=AlgorithmSuite.ALG_AES_256_GCM_IV12_TAG16_NO_KDF,
                commitment_policy=CommitmentPolicy.FORBID_ENCRYPT_ALLOW_DECRYPT,
            )
        return S3EncryptionClient(servers.s3_client(), config)

    return make


def ours(s3, kms, kms_key_arn, version: int, **kw) -> s3cse.EncryptionClient:
    policy = "REQUIRE_ENCRYPT_ALLOW_DECRYPT" if version == 3 else "FORBID_ENCRYPT_ALLOW_DECRYPT"
    return s3cse.EncryptionClient(
        s3, keyring=s3cse.KmsKeyring(kms_key_arn, kms_client=kms), commitment_policy=policy, **kw
    )


@pytest.mark.parametrize("version", [3, 2], ids=["V3", "V2"])
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("context", [None, CONTEXT], ids=["no-context", "context"])
def test_official_writes_s3cse_reads(
    s3, kms, bucket, kms_key_arn, official, version, size, context
):
    data = payload(size)
    extra = {"EncryptionContext": context} if context else {}
    official(version).put_object(Bucket=bucket, Key="o", Body=data, **extra)
    meta = s3.head_object(Bucket=bucket, Key="o")["Metadata"]
    assert ("x-amz-3" in meta) == (version == 3)
    got = ours(s3, kms, kms_key_arn, version).get_object(Bucket=bucket, Key="o", **extra)
    assert got["Body"].read() == data
    assert got["ContentLength"] == size


@pytest.mark.parametrize("instruction_file", [False, True], ids=["metadata", "instruction-file"])
@pytest.mark.parametrize("version", [3, 2], ids=["V3", "V2"])
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("context", [None, CONTEXT], ids=["no-context", "context"])
def test_s3cse_writes_official_reads(
    s3, kms, bucket, kms_key_arn, official, version, size, context, instruction_file
):
    data = payload(size)
    extra = {"EncryptionContext": context} if context else {}
    ours(s3, kms, kms_key_arn, version, instruction_file_put=instruction_file).put_object(
        Bucket=bucket, Key="s", Body=data, **extra
    )
    got = official(version).get_object(Bucket=bucket, Key="s", **extra)
    assert got["Body"].read() == data


@pytest.mark.parametrize("version", [3, 2], ids=["V3", "V2"])
def test_multipart_both_ways(s3, kms, bucket, kms_key_arn, official, version):
    data = payload(12 * MiB + 7)
    config = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    ours(s3, kms, kms_key_arn, version).upload_fileobj(
        io.BytesIO(data), bucket, "ours-mp", Config=config
    )
    assert "-" in s3.head_object(Bucket=bucket, Key="ours-mp")["ETag"]
    assert official(version).get_object(Bucket=bucket, Key="ours-mp")["Body"].read() == data
    theirs = official(version)
    upload = theirs.create_multipart_upload(Bucket=bucket, Key="theirs-mp")
    parts = []
    pieces = [data[: 5 * MiB], data[5 * MiB : 10 * MiB], data[10 * MiB :]]
    for number, piece in enumerate(pieces, start=1):
        response = theirs.upload_part(
            Bucket=bucket,
            Key="theirs-mp",
            UploadId=upload["UploadId"],
            PartNumber=number,
            Body=piece,
            IsLastPart=number == len(pieces),
        )
        parts.append({"PartNumber": number, "ETag": response["ETag"]})
    theirs.complete_multipart_upload(
        Bucket=bucket,
        Key="theirs-mp",
        UploadId=upload["UploadId"],
        MultipartUpload={"Parts": parts},
    )
    assert "-" in s3.head_object(Bucket=bucket, Key="theirs-mp")["ETag"]
    client = ours(s3, kms, kms_key_arn, version)
    assert client.get_object(Bucket=bucket, Key="theirs-mp")["Body"].read() == data
    out = io.BytesIO()
    client.download_fileobj(bucket, "theirs-mp", out, Config=config)
    assert out.getvalue() == data


def test_context_mismatch_is_refused_by_both(s3, kms, bucket, kms_key_arn, official):
    official(3).put_object(Bucket=bucket, Key="c", Body=b"x", EncryptionContext=CONTEXT)
    with pytest.raises(s3cse.EncryptionContextMismatchError):
        ours(s3, kms, kms_key_arn, 3).get_object(
            Bucket=bucket, Key="c", EncryptionContext={"tenant": "other"}
        )


def test_official_v3_object_refuses_tampered_commitment_in_s3cse(
    s3, kms, bucket, kms_key_arn, official
):
    official(3).put_object(Bucket=bucket, Key="k", Body=b"committed")
    meta = s3.head_object(Bucket=bucket, Key="k")["Metadata"]
    other = dict(meta)
    official(3).put_object(Bucket=bucket, Key="k2", Body=b"other")
    other["x-amz-d"] = s3.head_object(Bucket=bucket, Key="k2")["Metadata"]["x-amz-d"]
    s3.copy_object(
        Bucket=bucket,
        Key="k",
        CopySource={"Bucket": bucket, "Key": "k"},
        MetadataDirective="REPLACE",
        Metadata=other,
    )
    with pytest.raises(s3cse.CommitmentMismatchError):
        ours(s3, kms, kms_key_arn, 3).get_object(Bucket=bucket, Key="k")


def test_batch_upgrades_what_the_official_client_wrote_as_v2_and_it_reads_the_v3_back(
    s3, kms, bucket, kms_key_arn, official
):
    from s3cse import batch

    writer = official(2)
    sizes = {"up/empty": 0, "up/small": 17, "up/big": 9 * MiB + 5}  # the last: multipart
    for key, size in sizes.items():
        writer.put_object(Bucket=bucket, Key=key, Body=payload(size), EncryptionContext=CONTEXT)
    spec = batch.JobSpec(
        "upgrade",
        keys=batch.KeyRefs(kms_key_ids=(kms_key_arn,)),
        encryption_context=CONTEXT,
    )
    summary = batch.run(spec, batch.from_prefix(s3, bucket, "up/"), s3=s3, kms=kms)
    assert summary.counts == {"succeeded": 3}, summary
    reader = official(3)
    for key, size in sizes.items():
        assert "x-amz-3" in s3.head_object(Bucket=bucket, Key=key)["Metadata"]  # now V3
        got = reader.get_object(Bucket=bucket, Key=key, EncryptionContext=CONTEXT)
        assert got["Body"].read() == payload(size)
