"""delete_object, delete_objects and copy_object keep an object and its instruction file
together, and send the caller's RequestPayer / ExpectedBucketOwner with every request."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.stub import Stubber

import s3cse

from .helpers import (
    BUCKET,
    KEY,
    OWNER,
    PAYER_AND_OWNER,
    SSE_C,
    head_response,
    keyring,
    plaintext_of,
)
from .memory_s3 import MemoryS3

PLAINTEXT = plaintext_of(2000)
SOURCE_OWNER = "444455556666"
COPY_RESULT = {"CopyObjectResult": {"ETag": '"copy"'}}


def test_delete_object_also_deletes_the_instruction_file_with_payer_and_owner(
    stubbed: s3cse.EncryptionClient, stubber: Stubber
) -> None:
    stubber.add_response(
        "delete_object", {"DeleteMarker": True}, {"Bucket": BUCKET, "Key": KEY, **PAYER_AND_OWNER}
    )
    stubber.add_response(
        "delete_object",
        {},
        {"Bucket": BUCKET, "Key": f"{KEY}.instruction", **PAYER_AND_OWNER},
    )

    response = stubbed.delete_object(Bucket=BUCKET, Key=KEY, **PAYER_AND_OWNER)

    assert response["DeleteMarker"] is True  # the object's answer


def test_delete_object_of_a_version_leaves_the_instruction_file(
    stubbed: s3cse.EncryptionClient, stubber: Stubber
) -> None:
    stubber.add_response(
        "delete_object",
        {"VersionId": "v-1"},
        {"Bucket": BUCKET, "Key": KEY, "VersionId": "v-1", **PAYER_AND_OWNER},
    )

    stubbed.delete_object(Bucket=BUCKET, Key=KEY, VersionId="v-1", **PAYER_AND_OWNER)


def test_delete_objects_deletes_instruction_files_in_the_same_request(
    stubbed: s3cse.EncryptionClient, stubber: Stubber
) -> None:
    asked = [{"Key": "b"}, {"Key": "a"}, {"Key": "c.instruction"}, {"Key": "d", "VersionId": "v"}]
    sent = [*asked, {"Key": "a.instruction"}, {"Key": "b.instruction"}]
    stubber.add_response(
        "delete_objects",
        {
            "Deleted": [{"Key": o["Key"]} for o in sent],
            "Errors": [{"Key": "zz", "Code": "AccessDenied"}],
        },
        {"Bucket": BUCKET, "Delete": {"Objects": sent, "Quiet": False}, **PAYER_AND_OWNER},
    )

    response = stubbed.delete_objects(
        Bucket=BUCKET, Delete={"Objects": asked, "Quiet": False}, **PAYER_AND_OWNER
    )

    assert [d["Key"] for d in response["Deleted"]] == ["b", "a", "c.instruction", "d"]
    assert response["Errors"] == [{"Key": "zz", "Code": "AccessDenied"}]


def test_delete_objects_splits_requests_at_1000_keys(
    memory: MemoryS3, client: s3cse.EncryptionClient
) -> None:
    keys = [f"k{i:04d}" for i in range(600)]
    for key in keys:
        memory.store(BUCKET, key, b"x")

    response = client.delete_objects(
        Bucket=BUCKET, Delete={"Objects": [{"Key": k} for k in keys]}, **PAYER_AND_OWNER
    )

    requests = memory.calls_to("DeleteObjects")
    assert [len(r["Delete"]["Objects"]) for r in requests] == [1000, 200]
    assert all(r["RequestPayer"] == "requester" for r in requests)
    sent = [o["Key"] for r in requests for o in r["Delete"]["Objects"]]
    assert sorted(sent) == sorted(keys + [f"{k}.instruction" for k in keys])
    assert sorted(d["Key"] for d in response["Deleted"]) == keys
    assert "Errors" not in response
    assert memory.objects == {}


def test_delete_removes_object_and_instruction_file_from_the_store(
    memory: MemoryS3, client: s3cse.EncryptionClient
) -> None:
    client.put_object(Bucket=BUCKET, Key=KEY, Body=PLAINTEXT, InstructionFilePut=True)
    assert len(memory.objects) == 2

    client.delete_object(Bucket=BUCKET, Key=KEY)

    assert memory.objects == {}


def _source(instruction_file: bool) -> dict[str, Any]:
    obj = s3cse.encrypt(PLAINTEXT, keyring(), instruction_file=instruction_file)
    return head_response(obj)


def test_copy_object_copies_the_instruction_file_too(
    stubbed: s3cse.EncryptionClient, stubber: Stubber
) -> None:
    stubber.add_response("head_object", _source(True), {"Bucket": "src", "Key": "in/a"})
    copy = {"Bucket": BUCKET, "Key": KEY, "CopySource": {"Bucket": "src", "Key": "in/a"}}
    stubber.add_response("copy_object", COPY_RESULT, copy)
    stubber.add_response(
        "copy_object",
        {"CopyObjectResult": {"ETag": '"instruction-copy"'}},
        {
            "Bucket": BUCKET,
            "Key": f"{KEY}.instruction",
            "CopySource": {"Bucket": "src", "Key": "in/a.instruction"},
        },
    )

    response = stubbed.copy_object(**copy)

    assert response["CopyObjectResult"]["ETag"] == '"copy"'


def test_copy_object_of_a_metadata_object_copies_only_the_object(
    stubbed: s3cse.EncryptionClient, stubber: Stubber
) -> None:
    stubber.add_response("head_object", _source(False), {"Bucket": "src", "Key": "dir/a b"})
    copy = {"Bucket": BUCKET, "Key": KEY, "CopySource": "src/dir/a b"}
    stubber.add_response("copy_object", COPY_RESULT, copy)

    stubbed.copy_object(**copy)


def test_copy_object_with_replace_keeps_the_crypto_metadata(
    stubbed: s3cse.EncryptionClient, stubber: Stubber
) -> None:
    source = _source(False)
    stubber.add_response("head_object", source, {"Bucket": "src", "Key": "a"})
    stubber.add_response(
        "copy_object",
        COPY_RESULT,
        {
            "Bucket": BUCKET,
            "Key": KEY,
            "CopySource": {"Bucket": "src", "Key": "a"},
            "MetadataDirective": "REPLACE",
            "ContentType": "text/plain",
            "Metadata": {"owner": "bo", **source["Metadata"]},
        },
    )

    stubbed.copy_object(
        Bucket=BUCKET,
        Key=KEY,
        CopySource={"Bucket": "src", "Key": "a"},
        MetadataDirective="REPLACE",
        ContentType="text/plain",
        Metadata={"owner": "bo"},
    )


def test_copy_object_with_replace_refuses_reserved_metadata_names(
    memory: MemoryS3, client: s3cse.EncryptionClient
) -> None:
    client.put_object(Bucket="src", Key="a", Body=PLAINTEXT)

    with pytest.raises(s3cse.ConfigurationError, match="reserved"):
        client.copy_object(
            Bucket=BUCKET,
            Key=KEY,
            CopySource={"Bucket": "src", "Key": "a"},
            MetadataDirective="REPLACE",
            Metadata={"x-amz-key-v2": "forged"},
        )

    assert memory.calls_to("CopyObject") == []


def test_copy_of_an_sse_c_source_heads_it_with_its_key(
    stubbed: s3cse.EncryptionClient, stubber: Stubber
) -> None:
    source_key = {f"CopySource{k}": v for k, v in SSE_C.items()}
    stubber.add_response("head_object", _source(False), {"Bucket": "src", "Key": "a", **SSE_C})
    copy = {
        "Bucket": BUCKET,
        "Key": KEY,
        "CopySource": {"Bucket": "src", "Key": "a"},
        **SSE_C,
        **source_key,
    }
    stubber.add_response("copy_object", COPY_RESULT, copy)

    stubbed.copy_object(**copy)


@pytest.mark.parametrize("instruction_file", [False, True], ids=["metadata", "instruction-file"])
def test_copied_object_is_readable_at_its_new_key(
    memory: MemoryS3, client: s3cse.EncryptionClient, instruction_file: bool
) -> None:
    client.put_object(
        Bucket="src",
        Key="a",
        Body=PLAINTEXT,
        Metadata={"owner": "ana"},
        InstructionFilePut=instruction_file,
    )

    client.copy_object(
        Bucket=BUCKET,
        Key=KEY,
        CopySource={"Bucket": "src", "Key": "a"},
        MetadataDirective="REPLACE",
        Metadata={"owner": "bo"},
    )

    response = client.get_object(Bucket=BUCKET, Key=KEY)
    assert response["Body"].read() == PLAINTEXT
    assert response["Metadata"]["owner"] == "bo"


def test_a_copied_version_of_an_instruction_file_object_is_readable(
    memory: MemoryS3, client: s3cse.EncryptionClient
) -> None:
    """A version is read with the current instruction file (as other S3EC clients do), so
    a copy of a version needs that file beside it as much as a copy of the latest. (Here
    the newer version keeps its metadata in the object, so the file is still the first
    version's; one replaced since belongs to another data key, and key commitment
    refuses the pair.)"""
    first = client.put_object(Bucket="src", Key="a", Body=PLAINTEXT, InstructionFilePut=True)
    client.put_object(Bucket="src", Key="a", Body=b"newer")
    version = first.get("VersionId")
    assert version

    client.copy_object(
        Bucket=BUCKET, Key=KEY, CopySource={"Bucket": "src", "Key": "a", "VersionId": version}
    )

    assert client.get_object(Bucket=BUCKET, Key=KEY)["Body"].read() == PLAINTEXT


def test_copy_object_in_a_requester_pays_bucket_sends_request_payer_with_every_request() -> None:
    """A requester-pays bucket answers any request without RequestPayer with 403: the
    source HEAD and the instruction-file copy need it as much as the object's copy."""
    memory = MemoryS3(requester_pays=("src", BUCKET))
    client = s3cse.EncryptionClient(memory, keyring())
    client.put_object(
        Bucket="src", Key="a", Body=PLAINTEXT, InstructionFilePut=True, RequestPayer="requester"
    )
    before = len(memory.calls)

    client.copy_object(
        Bucket=BUCKET,
        Key=KEY,
        CopySource={"Bucket": "src", "Key": "a"},
        RequestPayer="requester",
    )

    copy_calls = memory.calls[before:]
    assert [c.operation for c in copy_calls] == ["HeadObject", "CopyObject", "CopyObject"]
    assert [c.params.get("RequestPayer") for c in copy_calls] == ["requester"] * 3
    body = client.get_object(Bucket=BUCKET, Key=KEY, RequestPayer="requester")["Body"]
    assert body.read() == PLAINTEXT


def test_copy_object_checks_the_bucket_owners_on_every_request() -> None:
    """The source HEAD is a request on the source bucket (its expected owner is
    ExpectedSourceBucketOwner); the instruction-file copy checks both owners, as the
    object's copy does."""
    memory = MemoryS3(owners={"src": SOURCE_OWNER, BUCKET: OWNER})
    client = s3cse.EncryptionClient(memory, keyring())
    client.put_object(Bucket="src", Key="a", Body=PLAINTEXT, InstructionFilePut=True)
    before = len(memory.calls)
    owners = {"ExpectedBucketOwner": OWNER, "ExpectedSourceBucketOwner": SOURCE_OWNER}

    client.copy_object(Bucket=BUCKET, Key=KEY, CopySource={"Bucket": "src", "Key": "a"}, **owners)

    head, copy, instruction_copy = (c.params for c in memory.calls[before:])
    assert head.get("ExpectedBucketOwner") == SOURCE_OWNER
    assert {k: copy.get(k) for k in owners} == owners
    assert instruction_copy["Key"] == f"{KEY}.instruction"
    assert {k: instruction_copy.get(k) for k in owners} == owners
