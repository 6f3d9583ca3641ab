"""reencrypt and reencrypt_prefix: key rotation that leaves the content untouched."""

from __future__ import annotations

import pytest

import s3cse

from .helpers import BUCKET, KEY, SSE_C, keyring, other_keyring, plaintext_of
from .memory_s3 import MemoryS3

PLAINTEXT = plaintext_of(2500)
SSE_KMS = {
    "ServerSideEncryption": "aws:kms",
    "SSEKMSKeyId": "arn:aws:kms:us-east-1:111122223333:key/sse",
}


def _read_with(memory: MemoryS3, new: s3cse.Keyring, key: str = KEY, **kwargs: object) -> bytes:
    client = s3cse.EncryptionClient(memory, new)
    return bytes(client.get_object(Bucket=BUCKET, Key=key, **kwargs)["Body"].read())


def test_reencrypt_rewrites_the_metadata_in_place_with_a_conditional_copy(
    memory: MemoryS3, client: s3cse.EncryptionClient
) -> None:
    client.put_object(
        Bucket=BUCKET,
        Key=KEY,
        Body=PLAINTEXT,
        Metadata={"owner": "ana"},
        ContentType="text/csv",
        CacheControl="max-age=60",
        StorageClass="STANDARD_IA",
        **SSE_KMS,
    )
    before = memory.objects[(BUCKET, KEY)]

    assert client.reencrypt(BUCKET, KEY, other_keyring()) == "rotated"

    (copy,) = memory.calls_to("CopyObject")
    assert copy["CopySource"] == {"Bucket": BUCKET, "Key": KEY}
    assert copy["CopySourceIfMatch"] == before.etag
    assert copy["MetadataDirective"] == "REPLACE"
    after = memory.objects[(BUCKET, KEY)]
    assert after.data == before.data
    assert after.metadata["owner"] == "ana"
    assert after.content_type == "text/csv"
    assert after.headers == before.headers  # SSE-KMS and Cache-Control kept
    assert after.storage_class == "STANDARD_IA"
    assert _read_with(memory, other_keyring()) == PLAINTEXT
    with pytest.raises(s3cse.S3CSEError):
        _read_with(memory, keyring())


def test_reencrypt_of_an_instruction_file_object_writes_a_new_instruction_file(
    memory: MemoryS3, client: s3cse.EncryptionClient
) -> None:
    client.put_object(Bucket=BUCKET, Key=KEY, Body=PLAINTEXT, InstructionFilePut=True)
    before = memory.objects[(BUCKET, KEY)]

    assert client.reencrypt(BUCKET, KEY, other_keyring()) == "rotated"

    assert memory.objects[(BUCKET, KEY)] is before  # the object itself is not rewritten
    assert [p["Key"] for p in memory.calls_to("PutObject")][-1] == f"{KEY}.instruction"
    assert _read_with(memory, other_keyring()) == PLAINTEXT


def test_reencrypt_with_another_suffix_keeps_the_old_instruction_file(
    memory: MemoryS3, client: s3cse.EncryptionClient
) -> None:
    client.put_object(Bucket=BUCKET, Key=KEY, Body=PLAINTEXT, InstructionFilePut=True)

    assert client.reencrypt(BUCKET, KEY, other_keyring(), ".rotated") == "rotated"

    assert _read_with(memory, keyring()) == PLAINTEXT
    assert _read_with(memory, other_keyring(), InstructionFileSuffix=".rotated") == PLAINTEXT


def test_reencrypt_skips_an_object_already_under_the_new_key(
    memory: MemoryS3, client: s3cse.EncryptionClient
) -> None:
    client.put_object(Bucket=BUCKET, Key=KEY, Body=PLAINTEXT)
    before = len(memory.calls)

    assert client.reencrypt(BUCKET, KEY, keyring()) == "skipped"

    assert memory.operations()[before:] == ["HeadObject"]


def test_reencrypt_of_an_sse_c_object_heads_and_copies_it_with_its_key(
    memory: MemoryS3, client: s3cse.EncryptionClient
) -> None:
    client.put_object(Bucket=BUCKET, Key=KEY, Body=PLAINTEXT, **SSE_C)

    assert client.reencrypt(BUCKET, KEY, other_keyring(), **SSE_C) == "rotated"

    (copy,) = memory.calls_to("CopyObject")
    assert copy["SSECustomerKey"] == copy["CopySourceSSECustomerKey"] == SSE_C["SSECustomerKey"]
    assert "ServerSideEncryption" not in copy
    assert _read_with(memory, other_keyring(), **SSE_C) == PLAINTEXT


def test_reencrypt_prefix_reports_done_skipped_not_encrypted_and_failed(
    memory: MemoryS3, client: s3cse.EncryptionClient
) -> None:
    new = other_keyring()
    client.put_object(Bucket=BUCKET, Key="p/a", Body=PLAINTEXT)
    s3cse.EncryptionClient(memory, new).put_object(Bucket=BUCKET, Key="p/b", Body=PLAINTEXT)
    memory.store(BUCKET, "p/c", b"plain")
    client.put_object(Bucket=BUCKET, Key="p/d", Body=PLAINTEXT)
    client.put_object(Bucket=BUCKET, Key="p/e", Body=PLAINTEXT, InstructionFilePut=True)
    client.put_object(Bucket=BUCKET, Key="q/outside", Body=PLAINTEXT)
    memory.fail("CopyObject", code="AccessDenied", status=403, when=lambda p: p["Key"] == "p/d")
    progress: list[tuple[str, str]] = []

    summary = client.reencrypt_prefix(
        BUCKET, "p/", new, max_workers=3, progress=lambda k, s: progress.append((k, s))
    )

    assert sorted(summary.done) == ["p/a", "p/e"]
    assert summary.skipped == ["p/b"]
    assert summary.instruction_files == ["p/e.instruction"]
    assert summary.not_encrypted == ["p/c"]
    assert [key for key, _ in summary.failed] == ["p/d"]
    assert "AccessDenied" in summary.failed[0][1]
    assert sorted(progress) == [
        ("p/a", "rotated"),
        ("p/b", "skipped"),
        ("p/c", "not-encrypted"),
        ("p/d", "failed"),
        ("p/e", "rotated"),
        ("p/e.instruction", "instruction-file"),  # every listed key is accounted for
    ]
    assert str(summary) == (
        "2 re-encrypted, 1 already under the new key, 1 not encrypted, 1 instruction files, "
        "0 changed meanwhile (not touched), 1 failed"
    )
    assert _read_with(memory, keyring(), "q/outside") == PLAINTEXT

    again = client.reencrypt_prefix(BUCKET, "p/", new)  # resumable: only p/d is left

    assert again.done == ["p/d"]
    assert sorted(again.skipped) == ["p/a", "p/b", "p/e"]
    for key in ("p/a", "p/b", "p/d", "p/e"):
        assert _read_with(memory, new, key) == PLAINTEXT


def test_reencrypt_prefix_lists_every_page(
    memory: MemoryS3, client: s3cse.EncryptionClient
) -> None:
    for i in range(5):
        memory.store(BUCKET, f"p/{i}", b"plain")

    original = memory.list_objects_v2

    def small_pages(**kwargs: object) -> dict[str, object]:
        return original(**kwargs, MaxKeys=2)

    memory.list_objects_v2 = small_pages  # type: ignore[method-assign]
    summary = client.reencrypt_prefix(BUCKET, "p/", other_keyring())

    assert sorted(summary.not_encrypted) == [f"p/{i}" for i in range(5)]
    assert len(memory.calls_to("ListObjectsV2")) == 3


# ---------------------------------------------------------------- every attribute kept

_ATTRIBUTES = {
    "Metadata": {"owner": "ana", "dept": "cardiology"},
    "ContentType": "text/csv",
    "ContentEncoding": "gzip",
    "ContentDisposition": 'attachment; filename="r.csv"',
    "ContentLanguage": "nl",
    "CacheControl": "max-age=60",
    "Expires": __import__("datetime").datetime(
        2030, 1, 2, tzinfo=__import__("datetime").timezone.utc
    ),
    "WebsiteRedirectLocation": "/elsewhere",
    "StorageClass": "STANDARD_IA",
    "Tagging": "project=apollo&tier=gold",
    "ObjectLockMode": "GOVERNANCE",
    "ObjectLockRetainUntilDate": __import__("datetime").datetime(
        2031, 1, 1, tzinfo=__import__("datetime").timezone.utc
    ),
    "ObjectLockLegalHoldStatus": "ON",
    "ChecksumAlgorithm": "SHA256",
}


def _stored_attributes(memory: MemoryS3, key: str = KEY) -> dict[str, object]:
    obj = memory.objects[(BUCKET, key)]
    return {
        "user metadata": {k: v for k, v in obj.metadata.items() if not k.startswith("x-amz-")},
        "ContentType": obj.content_type,
        "StorageClass": obj.storage_class,
        "Tagging": obj.tagging,
        **obj.headers,
    }


@pytest.mark.parametrize("sse", ["s3", "kms", "sse-c"])
@pytest.mark.parametrize("multipart_copy", [False, True], ids=["copy_object", "upload_part_copy"])
def test_a_metadata_rewrite_keeps_every_attribute_of_the_object(
    memory: MemoryS3, client: s3cse.EncryptionClient, monkeypatch, sse, multipart_copy
) -> None:
    from s3cse import _rewrap

    if multipart_copy:  # as if the object were over CopyObject's 5 GiB
        monkeypatch.setattr(_rewrap, "COPY_OBJECT_LIMIT", 1024)
        monkeypatch.setattr(_rewrap, "_COPY_PART", 5 * 1024 * 1024)
    encryption = {
        "s3": {"ServerSideEncryption": "AES256"},
        "kms": {**SSE_KMS, "BucketKeyEnabled": True},
        "sse-c": SSE_C,
    }[sse]
    body = plaintext_of(11 * 1024 * 1024 if multipart_copy else 2500)
    client.put_object(Bucket=BUCKET, Key=KEY, Body=body, **_ATTRIBUTES, **encryption)
    before = _stored_attributes(memory)
    extra = dict(SSE_C) if sse == "sse-c" else {}

    assert client.reencrypt(BUCKET, KEY, other_keyring(), **extra) == "rotated"

    assert _stored_attributes(memory) == before
    for name in ("ObjectLockMode", "ChecksumAlgorithm", "Expires", "ContentLanguage"):
        assert name in before, name  # the stand-in kept them, so the comparison means something
    operations = memory.operations()
    if multipart_copy:
        assert "UploadPartCopy" in operations and "CopyObject" not in operations
        parts = memory.calls_to("UploadPartCopy")
        assert len(parts) == 3 and all(p["CopySourceIfMatch"] for p in parts)
        assert memory.calls_to("CompleteMultipartUpload")[0]["IfMatch"]
    else:
        assert memory.calls_to("CopyObject")[0]["TaggingDirective"] == "COPY"
    assert _read_with(memory, other_keyring(), **extra) == body


def test_a_failed_part_copy_aborts_the_multipart_rewrite_and_keeps_the_object(
    memory: MemoryS3, client: s3cse.EncryptionClient, monkeypatch
) -> None:
    from s3cse import _rewrap

    monkeypatch.setattr(_rewrap, "COPY_OBJECT_LIMIT", 1024)
    monkeypatch.setattr(_rewrap, "_COPY_PART", 5 * 1024 * 1024)
    body = plaintext_of(11 * 1024 * 1024)
    client.put_object(Bucket=BUCKET, Key=KEY, Body=body)
    memory.fail(
        "UploadPartCopy", code="InternalError", status=500, when=lambda p: p["PartNumber"] == 2
    )
    with pytest.raises(Exception, match="InternalError"):
        client.reencrypt(BUCKET, KEY, other_keyring())
    assert memory.calls_to("AbortMultipartUpload") and not memory.uploads
    assert _read_with(memory, keyring()) == body


# ---------------------------------------------------------------- races: never overwrite


def test_an_instruction_file_rewritten_meanwhile_is_a_conflict_and_is_not_overwritten(
    memory: MemoryS3, client: s3cse.EncryptionClient, monkeypatch
) -> None:
    client.put_object(Bucket=BUCKET, Key=KEY, Body=PLAINTEXT, InstructionFilePut=True)
    real_get = memory.get_object
    newer = b"the application's newer object"

    def racing_get(**kwargs):
        response = real_get(**kwargs)
        if (
            kwargs["Key"] == f"{KEY}.instruction"
        ):  # the application writes between our read and write
            client.put_object(Bucket=BUCKET, Key=KEY, Body=newer, InstructionFilePut=True)
        return response

    monkeypatch.setattr(memory, "get_object", racing_get)
    with pytest.raises(
        s3cse.WriteConflictError, match=f"s3://{BUCKET}/{KEY}:.*nothing was overwritten"
    ):
        client.reencrypt(BUCKET, KEY, other_keyring())
    monkeypatch.setattr(memory, "get_object", real_get)
    assert _read_with(memory, keyring()) == newer


def test_an_object_overwritten_meanwhile_keeps_the_new_metadata(
    memory: MemoryS3, client: s3cse.EncryptionClient, monkeypatch
) -> None:
    client.put_object(Bucket=BUCKET, Key=KEY, Body=PLAINTEXT)
    real_head = memory.head_object
    newer = b"newer"

    def racing_head(**kwargs):
        response = real_head(**kwargs)
        if kwargs.get("ChecksumMode"):  # rotation's first read
            client.put_object(Bucket=BUCKET, Key=KEY, Body=newer)
        return response

    monkeypatch.setattr(memory, "head_object", racing_head)
    summary = client.reencrypt_prefix(BUCKET, "", other_keyring())
    assert [key for key, _ in summary.conflicts] == [KEY] and not summary.done
    monkeypatch.setattr(memory, "head_object", real_head)
    assert _read_with(memory, keyring()) == newer


# ---------------------------------------------------------------- nothing hidden, nothing stops the run


def test_names_and_markers_cannot_hide_objects_from_a_rotation(
    memory: MemoryS3, client: s3cse.EncryptionClient
) -> None:
    # An encrypted object that calls itself an instruction file, and one named like one.
    client.put_object(Bucket=BUCKET, Key="p/marked", Body=PLAINTEXT)
    memory.objects[(BUCKET, "p/marked")].metadata["x-amz-crypto-instr-file"] = ""  # planted
    client.put_object(Bucket=BUCKET, Key="p/named.instruction", Body=PLAINTEXT)
    memory.store(BUCKET, "p/orphan.instruction", b"{}")  # no object beside it
    client.put_object(Bucket=BUCKET, Key="p/real", Body=PLAINTEXT, InstructionFilePut=True)

    summary = client.reencrypt_prefix(BUCKET, "p/", other_keyring())

    assert sorted(summary.done) == ["p/marked", "p/named.instruction", "p/real"]
    assert summary.instruction_files == ["p/real.instruction"]
    assert summary.not_encrypted == ["p/orphan.instruction"]


def test_one_hostile_object_or_a_connection_error_does_not_stop_the_run(
    memory: MemoryS3, client: s3cse.EncryptionClient, monkeypatch
) -> None:
    from botocore.exceptions import EndpointConnectionError

    for name in ("p/a", "p/b", "p/c", "p/d"):
        client.put_object(Bucket=BUCKET, Key=name, Body=PLAINTEXT, InstructionFilePut=name == "p/b")
    fields = __import__("json").loads(memory.objects[(BUCKET, "p/b.instruction")].data)
    fields["x-amz-unencrypted-content-length"] = "9" * 5000  # int() would raise ValueError
    memory.store(BUCKET, "p/b.instruction", __import__("json").dumps(fields).encode())
    real_head = memory.head_object

    def flaky_head(**kwargs):
        if kwargs["Key"] == "p/c":
            raise EndpointConnectionError(endpoint_url="http://127.0.0.1:1")
        return real_head(**kwargs)

    monkeypatch.setattr(memory, "head_object", flaky_head)
    summary = client.reencrypt_prefix(BUCKET, "p/", other_keyring())
    assert sorted(summary.done) == ["p/a", "p/d"]
    failed = dict(summary.failed)
    assert set(failed) == {"p/b", "p/c"}
    assert "x-amz-unencrypted-content-length" in failed["p/b"]
    assert "EndpointConnectionError" in failed["p/c"]
    assert summary.instruction_files == ["p/b.instruction"]


def test_verify_authenticates_the_content_before_rotating_and_refuses_a_tampered_one(
    memory: MemoryS3, client: s3cse.EncryptionClient
) -> None:
    client.put_object(Bucket=BUCKET, Key="p/good", Body=PLAINTEXT)
    client.put_object(Bucket=BUCKET, Key="p/bad", Body=PLAINTEXT)
    obj = memory.objects[(BUCKET, "p/bad")]
    obj.data = obj.data[:-1] + bytes([obj.data[-1] ^ 1])  # one flipped bit in the tag

    unverified = client.reencrypt_prefix(BUCKET, "p/", keyring(), verify=False)
    assert sorted(unverified.skipped) == ["p/bad", "p/good"] and not unverified.verified

    summary = client.reencrypt_prefix(BUCKET, "p/", other_keyring(), verify=True)
    assert summary.done == ["p/good"] and summary.verified == ["p/good"]
    assert [key for key, _ in summary.failed] == ["p/bad"]
    assert (
        "authentication" in dict(summary.failed)["p/bad"] or "tag" in dict(summary.failed)["p/bad"]
    )
    with pytest.raises(s3cse.S3CSEError):  # the tampered object kept its old key
        _read_with(memory, other_keyring(), key="p/bad")


_ONE_ATTRIBUTE = {
    **{name: {name: value} for name, value in _ATTRIBUTES.items()},
    "SSE-S3": {"ServerSideEncryption": "AES256"},
    "SSE-KMS with its key id": dict(SSE_KMS),
    "SSE-KMS bucket key": {**SSE_KMS, "BucketKeyEnabled": True},
}


@pytest.mark.parametrize("attribute", sorted(_ONE_ATTRIBUTE))
def test_a_metadata_rewrite_keeps_this_attribute(
    memory: MemoryS3, client: s3cse.EncryptionClient, attribute: str
) -> None:
    client.put_object(Bucket=BUCKET, Key=KEY, Body=PLAINTEXT, **_ONE_ATTRIBUTE[attribute])
    before = _stored_attributes(memory)
    assert client.reencrypt(BUCKET, KEY, other_keyring()) == "rotated"
    assert _stored_attributes(memory) == before, attribute


def test_reencrypt_prefix_is_a_batch_rewrap_one_head_and_one_copy_per_object(
    memory: MemoryS3, client: s3cse.EncryptionClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("p/a", "p/b", "p/c"):
        client.put_object(Bucket=BUCKET, Key=name, Body=PLAINTEXT, **SSE_C)
    before = len(memory.calls)
    records = []

    from s3cse.batch import _prefix

    real_run = _prefix.run_tasks

    def spy(worker, tasks, **kwargs):  # the batch engine runs it, with the batch Worker
        records.append(type(worker).__name__)
        return real_run(worker, tasks, **kwargs)

    monkeypatch.setattr(_prefix, "run_tasks", spy)
    summary = client.reencrypt_prefix(BUCKET, "p/", other_keyring(), **SSE_C)

    assert records == ["Worker"]
    assert sorted(summary.done) == ["p/a", "p/b", "p/c"]
    assert sorted(memory.operations()[before:]) == ["CopyObject"] * 3 + ["HeadObject"] * 3 + [
        "ListObjectsV2"
    ]
    assert all(
        c["SSECustomerKey"] == SSE_C["SSECustomerKey"] for c in memory.calls_to("HeadObject")[-3:]
    )
    for name in ("p/a", "p/b", "p/c"):
        assert _read_with(memory, other_keyring(), name, **SSE_C) == PLAINTEXT


def test_reencrypt_prefix_keeps_the_clients_commitment_policy(memory: MemoryS3) -> None:
    from s3cse.core.suites import AlgorithmSuite

    v2 = s3cse.EncryptionClient(
        memory,
        keyring(),
        commitment_policy="FORBID_ENCRYPT_ALLOW_DECRYPT",
        encryption_algorithm=AlgorithmSuite.AES_256_GCM_IV12_TAG16_NO_KDF,
    )
    v2.put_object(Bucket=BUCKET, Key="p/v2", Body=PLAINTEXT)
    strict = s3cse.EncryptionClient(memory, keyring())  # V3 only, on reads too

    refused = strict.reencrypt_prefix(BUCKET, "p/", other_keyring())
    assert [key for key, _ in refused.failed] == ["p/v2"]

    lenient = s3cse.EncryptionClient(
        memory, keyring(), commitment_policy="REQUIRE_ENCRYPT_ALLOW_DECRYPT"
    )
    assert lenient.reencrypt_prefix(BUCKET, "p/", other_keyring()).done == ["p/v2"]


def test_reencrypt_prefix_rotates_an_object_whose_name_ends_in_a_slash(
    memory: MemoryS3, client: s3cse.EncryptionClient
) -> None:
    client.put_object(Bucket=BUCKET, Key="p/folder/", Body=PLAINTEXT)

    summary = client.reencrypt_prefix(BUCKET, "p/", other_keyring())

    assert summary.done == ["p/folder/"]
    assert _read_with(memory, other_keyring(), "p/folder/") == PLAINTEXT
