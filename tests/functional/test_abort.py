"""A managed multipart upload that fails is aborted, never completed, and its error re-raised.

AbortMultipartUpload takes RequestPayer and ExpectedBucketOwner (a requester-pays
bucket refuses it without RequestPayer, leaving the parts to be billed) but no SSE-C
arguments. The in-memory S3 validates each call against the S3 model.
"""

from __future__ import annotations

import io
from typing import Any

import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

import s3cse

from .helpers import BUCKET, KEY, PAYER_AND_OWNER, SSE_C, MiB, keyring, plaintext_of
from .memory_s3 import MemoryS3

BIG = plaintext_of(11 * MiB)
CONFIG = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)

FAILURES = {
    "second-part": ("UploadPart", lambda params: params["PartNumber"] == 2),
    "complete": ("CompleteMultipartUpload", None),
}


def _upload(client: s3cse.EncryptionClient, extra: dict[str, Any]) -> ClientError:
    with pytest.raises(ClientError) as raised:
        client.upload_fileobj(io.BytesIO(BIG), BUCKET, KEY, ExtraArgs=extra, Config=CONFIG)
    return raised.value


@pytest.mark.parametrize("failure", FAILURES)
def test_failed_upload_is_aborted_not_completed_and_reraised(
    memory: MemoryS3, client: s3cse.EncryptionClient, failure: str
) -> None:
    operation, when = FAILURES[failure]
    memory.fail(operation, code="SlowDown", status=503, when=when)

    error = _upload(client, {})

    assert error.response["Error"]["Code"] == "SlowDown"
    assert error.operation_name == operation
    (upload_id,) = {c["UploadId"] for c in memory.calls_to("UploadPart")}
    assert memory.calls_to("AbortMultipartUpload") == [
        {"Bucket": BUCKET, "Key": KEY, "UploadId": upload_id}
    ]
    completes = memory.calls_to("CompleteMultipartUpload")
    assert len(completes) == (1 if failure == "complete" else 0)
    assert memory.uploads == {}
    assert memory.objects == {}


@pytest.mark.parametrize("failure", FAILURES)
def test_abort_after_failure_forwards_request_payer_and_expected_bucket_owner(
    failure: str,
) -> None:
    """Without RequestPayer a requester-pays bucket refuses the abort, and the parts
    already uploaded stay (and are billed) until a lifecycle rule removes them."""
    memory = MemoryS3(requester_pays=(BUCKET,))
    client = s3cse.EncryptionClient(memory, keyring())
    operation, when = FAILURES[failure]
    memory.fail(operation, when=when)

    error = _upload(client, dict(PAYER_AND_OWNER))

    assert error.operation_name == operation  # not the abort's error
    (upload_id,) = {c["UploadId"] for c in memory.calls_to("UploadPart")}
    assert memory.calls_to("AbortMultipartUpload") == [
        {"Bucket": BUCKET, "Key": KEY, "UploadId": upload_id, **PAYER_AND_OWNER}
    ]
    assert memory.uploads == {}  # the requester-pays bucket accepted the abort


def test_abort_of_an_sse_c_upload_sends_no_sse_c_arguments(
    memory: MemoryS3, client: s3cse.EncryptionClient
) -> None:
    memory.fail("UploadPart", when=lambda params: params["PartNumber"] == 2)

    _upload(client, dict(SSE_C))

    assert all("SSECustomerKey" in c for c in memory.calls_to("UploadPart"))
    (abort,) = memory.calls_to("AbortMultipartUpload")
    assert not {k for k in abort if k.startswith("SSECustomer")}
    assert memory.uploads == {}


def test_failed_create_sends_no_part_and_no_abort(
    memory: MemoryS3, client: s3cse.EncryptionClient
) -> None:
    memory.fail("CreateMultipartUpload", code="AccessDenied", status=403)

    error = _upload(client, {})

    assert error.response["Error"]["Code"] == "AccessDenied"
    assert memory.operations() == ["CreateMultipartUpload"]


def test_failed_abort_does_not_hide_the_original_error(
    memory: MemoryS3, client: s3cse.EncryptionClient
) -> None:
    memory.fail("UploadPart", code="SlowDown", status=503)
    memory.fail("AbortMultipartUpload", code="InternalError", status=500)

    error = _upload(client, {})

    assert error.response["Error"]["Code"] == "SlowDown"
    assert len(memory.calls_to("AbortMultipartUpload")) == 1


def test_failed_upload_with_instruction_file_writes_no_instruction_file(
    memory: MemoryS3, client: s3cse.EncryptionClient
) -> None:
    memory.fail("CompleteMultipartUpload")

    _upload(client, {"InstructionFilePut": True})

    assert memory.calls_to("PutObject") == []
    assert len(memory.calls_to("AbortMultipartUpload")) == 1


def test_low_level_abort_forgets_the_upload(
    memory: MemoryS3, client: s3cse.EncryptionClient
) -> None:
    upload_id = client.create_multipart_upload(Bucket=BUCKET, Key=KEY)["UploadId"]
    client.abort_multipart_upload(Bucket=BUCKET, Key=KEY, UploadId=upload_id)

    with pytest.raises(s3cse.ConfigurationError, match="not open in this EncryptionClient"):
        client.upload_part(
            Bucket=BUCKET, Key=KEY, UploadId=upload_id, PartNumber=1, Body=b"x", IsLastPart=True
        )

    assert memory.operations() == ["CreateMultipartUpload", "AbortMultipartUpload"]
