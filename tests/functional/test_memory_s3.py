"""The in-memory S3 stand-in enforces the S3 rules the other tests rely on."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, ParamValidationError

from .helpers import BUCKET, KEY, OWNER, SSE_C, MiB
from .memory_s3 import MemoryS3


def _code(error: pytest.ExceptionInfo[ClientError]) -> str:
    return str(error.value.response["Error"]["Code"])


def test_arguments_are_validated_against_the_s3_model(memory: MemoryS3) -> None:
    with pytest.raises(ParamValidationError, match="SSECustomerKey"):
        memory.abort_multipart_upload(Bucket=BUCKET, Key=KEY, UploadId="u", **SSE_C)
    with pytest.raises(ParamValidationError, match="IfMatch"):
        memory.get_object(Bucket=BUCKET, Key=KEY, IfMatch=None)

    assert memory.calls == []


def test_ranges_follow_s3(memory: MemoryS3) -> None:
    memory.store(BUCKET, KEY, b"0123456789")

    response = memory.get_object(Bucket=BUCKET, Key=KEY, Range="bytes=-3")
    assert response["Body"].read() == b"789"
    assert response["ContentRange"] == "bytes 7-9/10"
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert memory.get_object(Bucket=BUCKET, Key=KEY, Range="bytes=8-99")["Body"].read() == b"89"
    with pytest.raises(ClientError) as raised:
        memory.get_object(Bucket=BUCKET, Key=KEY, Range="bytes=10-")
    assert _code(raised) == "InvalidRange"


def test_conditions_sse_c_payer_and_owner_are_enforced() -> None:
    memory = MemoryS3(requester_pays=("paid",), owners={"other": "999999999999"})
    memory.put_object(Bucket=BUCKET, Key=KEY, Body=b"x", **SSE_C)
    memory.put_object(Bucket="paid", Key=KEY, Body=b"x", RequestPayer="requester")
    memory.put_object(Bucket="other", Key=KEY, Body=b"x")

    attempts = [
        ("PreconditionFailed", dict(Bucket=BUCKET, Key=KEY, IfMatch='"no"', **SSE_C)),
        ("InvalidRequest", dict(Bucket=BUCKET, Key=KEY)),
        ("AccessDenied", dict(Bucket="paid", Key=KEY)),
        ("AccessDenied", dict(Bucket="other", Key=KEY, ExpectedBucketOwner=OWNER)),
        ("InvalidRequest", dict(Bucket="other", Key=KEY, **SSE_C)),
    ]
    for code, params in attempts:
        with pytest.raises(ClientError) as raised:
            memory.head_object(**params)
        assert _code(raised) == code, params


def test_body_length_and_checksums_are_checked(memory: MemoryS3) -> None:
    with pytest.raises(ClientError) as raised:
        memory.put_object(Bucket=BUCKET, Key=KEY, Body=b"abc", ContentLength=4)
    assert _code(raised) == "IncompleteBody"
    with pytest.raises(ClientError) as raised:
        memory.put_object(Bucket=BUCKET, Key=KEY, Body=b"abc", ChecksumCRC32="AAAAAA==")
    assert _code(raised) == "BadDigest"
    assert memory.objects == {}


def test_multipart_completion_follows_s3(memory: MemoryS3) -> None:
    upload = memory.create_multipart_upload(Bucket=BUCKET, Key=KEY, ChecksumAlgorithm="SHA256")
    ids = {"Bucket": BUCKET, "Key": KEY, "UploadId": upload["UploadId"]}
    small = memory.upload_part(**ids, PartNumber=1, Body=b"a" * 100)
    last = memory.upload_part(**ids, PartNumber=2, Body=b"b")

    def complete(*parts: dict[str, object]) -> str:
        with pytest.raises(ClientError) as raised:
            memory.complete_multipart_upload(**ids, MultipartUpload={"Parts": list(parts)})
        return _code(raised)

    one = {"PartNumber": 1, "ETag": small["ETag"], "ChecksumSHA256": small["ChecksumSHA256"]}
    two = {"PartNumber": 2, "ETag": last["ETag"], "ChecksumSHA256": last["ChecksumSHA256"]}
    assert complete(two, one) == "InvalidPartOrder"
    assert complete({**one, "ETag": '"x"'}, two) == "InvalidPart"
    assert complete({"PartNumber": 1, "ETag": small["ETag"]}, two) == "InvalidRequest"
    assert complete(one, two) == "EntityTooSmall"

    big = memory.upload_part(**ids, PartNumber=1, Body=b"a" * (5 * MiB))
    one = {"PartNumber": 1, "ETag": big["ETag"], "ChecksumSHA256": big["ChecksumSHA256"]}
    done = memory.complete_multipart_upload(**ids, MultipartUpload={"Parts": [one, two]})

    assert done["ETag"].endswith('-2"')
    assert memory.objects[(BUCKET, KEY)].data == b"a" * (5 * MiB) + b"b"
    assert memory.uploads == {}


def test_injected_failure_is_recorded_and_used_up(memory: MemoryS3) -> None:
    memory.fail("PutObject", code="SlowDown", status=503, when=lambda p: p["Key"] == "b")

    memory.put_object(Bucket=BUCKET, Key="a", Body=b"1")
    with pytest.raises(ClientError) as raised:
        memory.put_object(Bucket=BUCKET, Key="b", Body=b"2")
    memory.put_object(Bucket=BUCKET, Key="b", Body=b"3")

    assert _code(raised) == "SlowDown"
    assert [c["Body"] for c in memory.calls_to("PutObject")] == [b"1", b"2", b"3"]
    assert memory.objects[(BUCKET, "b")].data == b"3"
