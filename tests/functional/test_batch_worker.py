"""The batch Worker and job directory against the in-memory store: answers a store
should never give, and checkpoint order on S3."""

from __future__ import annotations

import io

import pytest
from botocore.response import StreamingBody

import s3cse
from s3cse import batch
from s3cse.batch._operations import Record
from s3cse.core.suites import AlgorithmSuite

from .helpers import BUCKET, keyring, plaintext_of
from .memory_s3 import MemoryS3

PLAINTEXT = plaintext_of(3000)


def _short_answers(memory: MemoryS3, monkeypatch: pytest.MonkeyPatch, **extra: str) -> None:
    """GETs answer with the first half of the object (as a broken proxy might)."""
    real = memory.get_object

    def short(**kwargs):
        response = real(**kwargs)
        data = response["Body"].read()[: response["ContentLength"] // 2]
        return {
            **response,
            "Body": StreamingBody(io.BytesIO(data), len(data)),
            "ContentLength": len(data),
            **extra,
        }

    monkeypatch.setattr(memory, "get_object", short)


@pytest.mark.parametrize("extra", [{}, {"ContentRange": "bytes 0-1499/3000"}])
def test_encrypt_never_writes_a_part_of_the_plaintext_over_the_whole(memory, monkeypatch, extra):
    stored = memory.store(BUCKET, "p/plain", PLAINTEXT)
    _short_answers(memory, monkeypatch, **extra)

    record = batch.Worker("encrypt", memory, new_keyring=keyring()).run(
        batch.Task(BUCKET, "p/plain")
    )

    assert record.status == "failed" and record.error_code == "UnexpectedResponseError", record
    assert "nothing replaced" in record.message
    assert memory.objects[(BUCKET, "p/plain")] is stored  # the plaintext as it was


def test_upgrade_refuses_a_ranged_answer_to_a_whole_object_get(memory, monkeypatch):
    v2 = s3cse.EncryptionClient(
        memory,
        keyring(),
        commitment_policy="FORBID_ENCRYPT_ALLOW_DECRYPT",
        encryption_algorithm=AlgorithmSuite.AES_256_GCM_IV12_TAG16_NO_KDF,
    )
    v2.put_object(Bucket=BUCKET, Key="p/v2", Body=PLAINTEXT)
    before = memory.objects[(BUCKET, "p/v2")]
    _short_answers(memory, monkeypatch, ContentRange="bytes 0-1507/3016")

    record = batch.Worker("upgrade", memory, keyring=keyring()).run(batch.Task(BUCKET, "p/v2"))

    assert record.error_code == "UnexpectedResponseError", record
    assert memory.objects[(BUCKET, "p/v2")] is before


def test_checkpoint_chunks_on_s3_sort_in_the_order_they_were_written_whatever_the_clock(memory):
    # A chunk another machine wrote, named by a clock far ahead of ours: a failure.
    ahead = Record(BUCKET, "k", None, "failed", "throttled", "SlowDown").to_json() + "\n"
    memory.store(BUCKET, "job/checkpoint/09999999999999999999-aaaaaaaa.jsonl", ahead.encode())
    directory = batch.JobDir(f"s3://{BUCKET}/job", memory)

    directory.append([Record(BUCKET, "k", None, "succeeded", "authenticated")])
    directory.append([Record(BUCKET, "j", None, "succeeded", "authenticated")])

    names = sorted(key for (_, key) in memory.objects if key.startswith("job/checkpoint/"))
    assert names[0].startswith("job/checkpoint/09999999999999999999-")
    assert [r.key for r in directory.records()] == ["k", "k", "j"]  # ours after it
    summary = batch.Summary("verify")
    assert len(directory.load(summary)) == 2 and summary.counts == {"succeeded": 2}


@pytest.mark.parametrize("operation", ["census", "rewrap", "upgrade", "encrypt", "verify"])
def test_a_manifest_naming_an_older_version_leaves_it_as_it_is(memory, operation):
    from .helpers import other_keyring

    writer = s3cse.EncryptionClient(memory, keyring())
    old = writer.put_object(Bucket=BUCKET, Key="p/v", Body=b"old")["VersionId"]
    writer.put_object(Bucket=BUCKET, Key="p/v", Body=b"current")
    before = len(memory.calls)
    worker = batch.Worker(operation, memory, keyring=keyring(), new_keyring=other_keyring())

    record = worker.run(batch.Task(BUCKET, "p/v", old))

    assert record.status == "skipped" and record.outcome == "not-current", record
    assert "older versions keep their old key" in record.message
    assert memory.operations()[before:] == ["HeadObject"]  # nothing read, nothing written
