"""get_object and head_encryption: which caller arguments reach the object GET (or HEAD)
and the instruction-file GET, and the shape of what comes back."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.stub import Stubber

import s3cse

from .helpers import (
    BUCKET,
    ETAG,
    KEY,
    PAYER_AND_OWNER,
    SSE_C,
    get_response,
    head_response,
    instruction_response,
    keyring,
    plaintext_of,
)
from .memory_s3 import MemoryS3

PLAINTEXT = plaintext_of(3000)
VERSION = {"VersionId": "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY"}


def test_get_forwards_version_sse_c_payer_and_owner_to_the_object_get(
    stubbed: s3cse.EncryptionClient, stubber: Stubber
) -> None:
    obj = s3cse.encrypt(PLAINTEXT, keyring())
    args = {**VERSION, **SSE_C, **PAYER_AND_OWNER, "IfMatch": ETAG, "ChecksumMode": "ENABLED"}
    stubber.add_response(
        "get_object", get_response(obj, **VERSION), {"Bucket": BUCKET, "Key": KEY, **args}
    )

    response = stubbed.get_object(Bucket=BUCKET, Key=KEY, **args)

    assert response["Body"].read() == PLAINTEXT
    assert response["VersionId"] == VERSION["VersionId"]
    assert response["ETag"] == ETAG


def test_instruction_file_get_carries_payer_and_owner_but_not_version_or_sse_c(
    stubbed: s3cse.EncryptionClient, stubber: Stubber
) -> None:
    """The instruction file has versions of its own and is stored without SSE-C."""
    obj = s3cse.encrypt(PLAINTEXT, keyring(), instruction_file=True)
    args = {**VERSION, **SSE_C, **PAYER_AND_OWNER}
    stubber.add_response("get_object", get_response(obj), {"Bucket": BUCKET, "Key": KEY, **args})
    stubber.add_response(
        "get_object",
        instruction_response(obj),
        {"Bucket": BUCKET, "Key": f"{KEY}.instruction", **PAYER_AND_OWNER},
    )

    response = stubbed.get_object(Bucket=BUCKET, Key=KEY, **args)

    assert response["Body"].read() == PLAINTEXT


def test_get_with_instruction_file_suffix_reads_that_file_and_does_not_send_the_option(
    stubbed: s3cse.EncryptionClient, stubber: Stubber
) -> None:
    obj = s3cse.encrypt(PLAINTEXT, keyring(), instruction_file=True)
    stubber.add_response("get_object", get_response(obj), {"Bucket": BUCKET, "Key": KEY})
    stubber.add_response(
        "get_object", instruction_response(obj), {"Bucket": BUCKET, "Key": f"{KEY}.rotated"}
    )

    response = stubbed.get_object(Bucket=BUCKET, Key=KEY, InstructionFileSuffix=".rotated")

    assert response["Body"].read() == PLAINTEXT


@pytest.mark.parametrize(
    "options",
    [{}, {"buffer_size": 0}, {"enable_delayed_authentication": True}],
    ids=["in-memory", "spooled", "delayed"],
)
def test_get_response_has_the_plaintext_length_and_no_ciphertext_checksums(
    boto_s3: Any, stubber: Stubber, options: dict[str, Any]
) -> None:
    client = s3cse.EncryptionClient(boto_s3, keyring(), **options)
    obj = s3cse.encrypt(PLAINTEXT, keyring())
    checksums = {"ChecksumCRC32": "AAAAAA==", "ChecksumType": "FULL_OBJECT"}
    stubber.add_response(
        "get_object",
        get_response(obj, ContentType="text/csv", **checksums),
        {"Bucket": BUCKET, "Key": KEY},
    )

    response = client.get_object(Bucket=BUCKET, Key=KEY)

    assert response["ContentLength"] == len(PLAINTEXT)
    assert not {k for k in response if k.startswith("Checksum")}
    assert response["ContentType"] == "text/csv"
    with response["Body"] as body:
        assert body.read() == PLAINTEXT


def test_get_of_an_empty_object_returns_no_bytes_and_length_zero(
    stubbed: s3cse.EncryptionClient, stubber: Stubber
) -> None:
    obj = s3cse.encrypt(b"", keyring())
    stubber.add_response("get_object", get_response(obj), {"Bucket": BUCKET, "Key": KEY})

    response = stubbed.get_object(Bucket=BUCKET, Key=KEY)

    assert response["ContentLength"] == 0
    assert response["Body"].read() == b""


def test_get_body_reads_in_pieces_and_iterates_lines(
    memory: MemoryS3, client: s3cse.EncryptionClient
) -> None:
    text = b"".join(b"line %d\n" % i for i in range(300))
    client.put_object(Bucket=BUCKET, Key=KEY, Body=text)

    body = client.get_object(Bucket=BUCKET, Key=KEY)["Body"]
    assert body.read(10) == text[:10]
    assert body.read(0) == b""
    assert list(body.iter_lines()) == text[10:].splitlines()
    assert body.read() == b""


def test_head_encryption_forwards_version_sse_c_payer_and_owner_to_the_head(
    stubbed: s3cse.EncryptionClient, stubber: Stubber
) -> None:
    obj = s3cse.encrypt(PLAINTEXT, keyring())
    stubber.add_response(
        "head_object",
        head_response(obj),
        {"Bucket": BUCKET, "Key": KEY, **VERSION, **SSE_C, **PAYER_AND_OWNER},
    )

    content = stubbed.head_encryption(
        Bucket=BUCKET,
        Key=KEY,
        InstructionFileSuffix=".instruction",
        **VERSION,
        **SSE_C,
        **PAYER_AND_OWNER,
    )

    assert content.version == s3cse.FormatVersion.V3
    assert content.material_description == {"kid": "a"}
    assert content.from_instruction_file is False


def test_head_encryption_reads_the_instruction_file_with_payer_and_owner(
    stubbed: s3cse.EncryptionClient, stubber: Stubber
) -> None:
    obj = s3cse.encrypt(PLAINTEXT, keyring(), instruction_file=True)
    stubber.add_response(
        "head_object",
        head_response(obj),
        {"Bucket": BUCKET, "Key": KEY, **SSE_C, **PAYER_AND_OWNER},
    )
    stubber.add_response(
        "get_object",
        instruction_response(obj),
        {"Bucket": BUCKET, "Key": f"{KEY}.instruction", **PAYER_AND_OWNER},
    )

    content = stubbed.head_encryption(Bucket=BUCKET, Key=KEY, **SSE_C, **PAYER_AND_OWNER)

    assert content.from_instruction_file is True
    assert content.material_description == {"kid": "a"}


def test_get_of_an_sse_c_instruction_file_object_round_trips(memory: MemoryS3) -> None:
    """S3 refuses SSE-C arguments for an object stored without SSE-C: the instruction
    file must be written and read without them, the object with them."""
    client = s3cse.EncryptionClient(memory, keyring(), instruction_file_put=True)
    client.put_object(Bucket=BUCKET, Key=KEY, Body=PLAINTEXT, **SSE_C)

    response = client.get_object(Bucket=BUCKET, Key=KEY, **SSE_C)

    assert response["Body"].read() == PLAINTEXT
    assert memory.objects[(BUCKET, KEY)].sse_customer_key == SSE_C["SSECustomerKey"]
    assert memory.objects[(BUCKET, f"{KEY}.instruction")].sse_customer_key is None


def test_get_in_a_requester_pays_bucket_round_trips_with_an_instruction_file() -> None:
    memory = MemoryS3(requester_pays=(BUCKET,))
    client = s3cse.EncryptionClient(memory, keyring(), instruction_file_put=True)
    client.put_object(Bucket=BUCKET, Key=KEY, Body=PLAINTEXT, **PAYER_AND_OWNER)

    response = client.get_object(Bucket=BUCKET, Key=KEY, **PAYER_AND_OWNER)

    assert response["Body"].read() == PLAINTEXT
    assert all(c.params.get("RequestPayer") == "requester" for c in memory.calls)
