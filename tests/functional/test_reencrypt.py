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
    assert summary.not_encrypted == ["p/c"]
    assert [key for key, _ in summary.failed] == ["p/d"]
    assert "AccessDenied" in summary.failed[0][1]
    assert sorted(progress) == [
        ("p/a", "rotated"),
        ("p/b", "skipped"),
        ("p/c", "not-encrypted"),
        ("p/d", "failed"),
        ("p/e", "rotated"),
    ]
    assert str(summary) == "2 re-encrypted, 1 already under the new key, 1 not encrypted, 1 failed"
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
