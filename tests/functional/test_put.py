"""put_object: which caller arguments reach the object PUT and the instruction-file PUT.

Stubber checks each request's parameters exactly, and botocore validates them against
the S3 model, so an argument S3 does not take for an operation fails the test.
"""

from __future__ import annotations

import base64
import io
import zlib
from typing import Any

import pytest
from botocore.exceptions import ClientError
from botocore.stub import ANY, Stubber

import s3cse

from .helpers import (
    BUCKET,
    KEY,
    PAYER_AND_OWNER,
    SSE_C,
    Captured,
    crypto_metadata_names,
    keyring,
    plaintext_of,
)
from .memory_s3 import MemoryS3

PLAINTEXT = plaintext_of(3000)
SSE_KMS = {
    "ServerSideEncryption": "aws:kms",
    "SSEKMSKeyId": "arn:aws:kms:us-east-1:111122223333:key/sse",
}


def expect_object_put(stubber: Stubber, body: Captured, metadata: Captured, **params: Any) -> None:
    stubber.add_response(
        "put_object",
        {"ETag": '"put-etag"', "VersionId": "v7"},
        {
            "Bucket": BUCKET,
            "Key": KEY,
            "Body": body,
            "ContentLength": len(PLAINTEXT) + 16,
            "Metadata": metadata,
            **params,
        },
    )


def test_put_forwards_sse_kms_payer_owner_and_object_attributes(
    stubbed: s3cse.EncryptionClient, stubber: Stubber
) -> None:
    attributes = {
        **SSE_KMS,
        "BucketKeyEnabled": True,
        **PAYER_AND_OWNER,
        "ContentType": "text/csv",
        "CacheControl": "no-cache",
        "StorageClass": "STANDARD_IA",
        "Tagging": "team=data&tier=2",
    }
    body, metadata = Captured(), Captured()
    expect_object_put(stubber, body, metadata, **attributes)

    response = stubbed.put_object(
        Bucket=BUCKET, Key=KEY, Body=PLAINTEXT, Metadata={"owner": "ana"}, **attributes
    )

    assert response["ETag"] == '"put-etag"'
    assert response["VersionId"] == "v7"
    assert metadata.value["owner"] == "ana"
    assert set(metadata.value) == {"owner"} | crypto_metadata_names()
    crypto = {k: v for k, v in metadata.value.items() if k != "owner"}
    assert s3cse.decrypt(body.value, crypto, keyring()) == PLAINTEXT


def test_put_forwards_sse_c_arguments_to_the_object_put(
    stubbed: s3cse.EncryptionClient, stubber: Stubber
) -> None:
    body, metadata = Captured(), Captured()
    expect_object_put(stubber, body, metadata, **SSE_C, **PAYER_AND_OWNER)

    stubbed.put_object(Bucket=BUCKET, Key=KEY, Body=PLAINTEXT, **SSE_C, **PAYER_AND_OWNER)

    assert s3cse.decrypt(body.value, metadata.value, keyring()) == PLAINTEXT


def test_put_forwards_checksum_algorithm_and_adds_no_checksum_value(
    stubbed: s3cse.EncryptionClient, stubber: Stubber
) -> None:
    body, metadata = Captured(), Captured()
    expect_object_put(stubber, body, metadata, ChecksumAlgorithm="SHA256")

    stubbed.put_object(Bucket=BUCKET, Key=KEY, Body=PLAINTEXT, ChecksumAlgorithm="SHA256")

    assert len(body.value) == len(PLAINTEXT) + 16


def test_put_with_str_body_encrypts_its_utf8_bytes(
    stubbed: s3cse.EncryptionClient, stubber: Stubber
) -> None:
    text = "grüße, " * 50
    body, metadata = Captured(), Captured()
    stubber.add_response(
        "put_object",
        {"ETag": '"e"'},
        {
            "Bucket": BUCKET,
            "Key": KEY,
            "Body": body,
            "ContentLength": len(text.encode()) + 16,
            "Metadata": metadata,
        },
    )

    stubbed.put_object(Bucket=BUCKET, Key=KEY, Body=text)

    assert s3cse.decrypt(body.value, metadata.value, keyring()) == text.encode()


def expect_instruction_put(stubber: Stubber, body: Captured, **params: Any) -> None:
    stubber.add_response(
        "put_object",
        {"ETag": '"instruction-etag"'},
        {
            "Bucket": BUCKET,
            "Key": f"{KEY}.instruction",
            "Body": body,
            "Metadata": {"x-amz-crypto-instr-file": ""},
            "ContentType": "application/json",
            **params,
        },
    )


def test_instruction_file_put_carries_payer_owner_and_server_side_encryption(
    stubbed: s3cse.EncryptionClient, stubber: Stubber
) -> None:
    object_only = {"ContentType": "text/plain", "StorageClass": "STANDARD_IA", "Tagging": "a=b"}
    body, metadata, instruction = Captured(), Captured(), Captured()
    expect_object_put(stubber, body, metadata, **SSE_KMS, **PAYER_AND_OWNER, **object_only)
    expect_instruction_put(stubber, instruction, **SSE_KMS, **PAYER_AND_OWNER)

    response = stubbed.put_object(
        Bucket=BUCKET,
        Key=KEY,
        Body=PLAINTEXT,
        Metadata={"owner": "ana"},
        InstructionFilePut=True,
        **SSE_KMS,
        **PAYER_AND_OWNER,
        **object_only,
    )

    assert response["ETag"] == '"put-etag"'  # the object's, not the instruction file's
    assert set(metadata.value) == {"owner"} | crypto_metadata_names(instruction_file=True)
    fields = s3cse.decode_instruction_file(instruction.value)
    crypto = {k: v for k, v in metadata.value.items() if k != "owner"}
    assert s3cse.decrypt(body.value, crypto, keyring(), instruction_file=fields) == PLAINTEXT


def test_instruction_file_put_of_an_sse_c_object_carries_no_sse_c(
    stubbed: s3cse.EncryptionClient, stubber: Stubber
) -> None:
    """The instruction file is stored without SSE-C, and read without it (see test_get)."""
    body, metadata, instruction = Captured(), Captured(), Captured()
    expect_object_put(stubber, body, metadata, **SSE_C, **PAYER_AND_OWNER)
    expect_instruction_put(stubber, instruction, **PAYER_AND_OWNER)

    stubbed.put_object(
        Bucket=BUCKET, Key=KEY, Body=PLAINTEXT, InstructionFilePut=True, **SSE_C, **PAYER_AND_OWNER
    )

    fields = s3cse.decode_instruction_file(instruction.value)
    assert (
        s3cse.decrypt(body.value, metadata.value, keyring(), instruction_file=fields) == PLAINTEXT
    )


def test_client_wide_instruction_file_put_is_overridden_per_call(
    boto_s3: Any, stubber: Stubber
) -> None:
    client = s3cse.EncryptionClient(boto_s3, keyring(), instruction_file_put=True)
    second_metadata = Captured()
    expect_object_put(stubber, Captured(), Captured())
    expect_instruction_put(stubber, Captured())
    expect_object_put(stubber, Captured(), second_metadata)

    client.put_object(Bucket=BUCKET, Key=KEY, Body=PLAINTEXT)
    client.put_object(Bucket=BUCKET, Key=KEY, Body=PLAINTEXT, InstructionFilePut=False)

    assert set(second_metadata.value) == crypto_metadata_names()


def test_instruction_file_is_not_written_when_the_object_put_fails(
    memory: MemoryS3, client: s3cse.EncryptionClient
) -> None:
    memory.fail("PutObject", code="AccessDenied", status=403)

    with pytest.raises(ClientError) as raised:  # botocore's error, unchanged
        client.put_object(Bucket=BUCKET, Key=KEY, Body=PLAINTEXT, InstructionFilePut=True)

    assert raised.value.response["Error"]["Code"] == "AccessDenied"
    assert [c["Key"] for c in memory.calls_to("PutObject")] == [KEY]
    assert memory.objects == {}


def test_put_of_a_file_body_sends_its_ciphertext_with_its_length(
    memory: MemoryS3, client: s3cse.EncryptionClient
) -> None:
    # The caller's ContentLength (of the plaintext) is replaced by the ciphertext's.
    client.put_object(
        Bucket=BUCKET, Key=KEY, Body=io.BytesIO(PLAINTEXT), ContentLength=len(PLAINTEXT)
    )

    (sent,) = memory.calls_to("PutObject")
    assert sent["ContentLength"] == len(PLAINTEXT) + 16 == len(sent["Body"])
    assert "ChecksumCRC32" not in sent  # over HTTPS botocore puts it in a trailer itself
    assert client.get_object(Bucket=BUCKET, Key=KEY)["Body"].read() == PLAINTEXT


def test_put_of_a_file_body_over_plain_http_sends_the_crc32_of_the_ciphertext() -> None:
    memory = MemoryS3(endpoint_url="http://s3.example.invalid")
    client = s3cse.EncryptionClient(memory, keyring())

    large = PLAINTEXT * (2 * 1024 * 1024 // len(PLAINTEXT) + 1)  # streamed, not held
    client.put_object(Bucket=BUCKET, Key=KEY, Body=io.BytesIO(large))

    (sent,) = memory.calls_to("PutObject")
    crc = zlib.crc32(sent["Body"]).to_bytes(4, "big")
    assert sent["ChecksumCRC32"] == base64.b64encode(crc).decode()
    assert sent["Body"] != large and len(sent["Body"]) == len(large) + 16


def test_a_small_file_body_is_sent_as_bytes_sparing_botocores_100_continue(
    memory: MemoryS3, client: s3cse.EncryptionClient, tmp_path: Any
) -> None:
    # botocore sends `Expect: 100-continue` (one more round trip) with any file-like
    # body; bytes go straight out.
    path = tmp_path / "small"
    path.write_bytes(PLAINTEXT)
    with open(path, "rb") as f:
        client.put_object(Bucket=BUCKET, Key=KEY, Body=f)

    (sent,) = memory.calls_to("PutObject")
    assert isinstance(sent["Body"], bytes) and len(sent["Body"]) == len(PLAINTEXT) + 16
    assert client.get_object(Bucket=BUCKET, Key=KEY)["Body"].read() == PLAINTEXT


class _Pipe:
    """A readable source of unknown length (no seek), like a pipe."""

    def __init__(self, data: bytes):
        self._stream = io.BytesIO(data)

    def read(self, size: int = -1) -> bytes:
        return self._stream.read(min(size, 700) if size and size > 0 else 700)


def test_put_of_a_body_of_unknown_length_sends_the_whole_ciphertext_with_its_length(
    memory: MemoryS3, client: s3cse.EncryptionClient
) -> None:
    client.put_object(Bucket=BUCKET, Key=KEY, Body=_Pipe(PLAINTEXT))

    (sent,) = memory.calls_to("PutObject")
    assert sent["ContentLength"] == len(PLAINTEXT) + 16 == len(sent["Body"])
    assert client.get_object(Bucket=BUCKET, Key=KEY)["Body"].read() == PLAINTEXT


def test_upload_fileobj_below_the_threshold_forwards_extra_args_to_one_put(
    stubbed: s3cse.EncryptionClient, stubber: Stubber
) -> None:
    stubber.add_response(
        "put_object",
        {"ETag": '"e"'},
        {
            "Bucket": BUCKET,
            "Key": KEY,
            "Body": ANY,
            "ContentLength": len(PLAINTEXT) + 16,
            "Metadata": ANY,
            "ContentType": "text/plain",
            **SSE_C,
            **PAYER_AND_OWNER,
        },
    )

    stubbed.upload_fileobj(
        io.BytesIO(PLAINTEXT),
        BUCKET,
        KEY,
        ExtraArgs={"ContentType": "text/plain", **SSE_C, **PAYER_AND_OWNER},
    )


def test_upload_fileobj_reports_each_plaintext_byte_once(
    memory: MemoryS3, client: s3cse.EncryptionClient
) -> None:
    seen: list[int] = []

    client.upload_fileobj(io.BytesIO(PLAINTEXT), BUCKET, KEY, Callback=seen.append)

    assert sum(seen) == len(PLAINTEXT)
    assert client.get_object(Bucket=BUCKET, Key=KEY)["Body"].read() == PLAINTEXT
