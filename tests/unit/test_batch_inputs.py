"""The batch layer's parsing of manifests, its report and its KMS rate limit (no servers)."""

from __future__ import annotations

import contextlib
import gzip
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s3cse import batch
from s3cse.batch._operations import Record


def test_a_batch_operations_csv_has_url_encoded_keys_and_optional_versions():
    lines = ["b,a%20b/c%2Bd.txt,v1", "b,plain", "", "b,x.log"]
    tasks = list(batch.from_batch_csv(lines, "m.csv", [("exclude", "*.log")]))
    assert tasks == [batch.Task("b", "a b/c+d.txt", "v1"), batch.Task("b", "plain")]


@pytest.mark.parametrize("row", ["onlybucket", "b,k,v,extra", ",key"])
def test_a_malformed_csv_row_is_named(row):
    with pytest.raises(batch.ManifestError, match=r"m\.csv, row 1"):
        list(batch.from_batch_csv([row], "m.csv"))


def _inventory(rows, schema="Bucket, Key, VersionId, IsLatest, IsDeleteMarker"):
    spec = {
        "sourceBucket": "b",
        "fileFormat": "CSV",
        "fileSchema": schema,
        "files": [{"key": "d.csv.gz"}],
    }
    data = gzip.compress("".join(rows).encode())
    return json.dumps(spec).encode(), (lambda key: data)


def test_an_inventory_keeps_current_versions_only():
    manifest, read = _inventory(
        [
            '"b","k%201","v2","true","false"\n',
            '"b","k%201","v1","false","false"\n',
            '"b","gone","v3","true","true"\n',
        ]
    )
    assert list(batch.from_inventory(manifest, read, "inv")) == [batch.Task("b", "k 1", "v2")]


@pytest.mark.parametrize(
    "manifest, match",
    [
        (b"not json", "not an S3 Inventory manifest"),
        (b'{"fileFormat": "CSV"}', "not an S3 Inventory manifest"),
        (b'{"fileFormat": "ORC", "files": []}', "ORC"),
        (b'{"fileFormat": "CSV", "fileSchema": "Size", "files": []}', "no Bucket and Key"),
    ],
)
def test_a_manifest_that_is_not_one_says_so(manifest, match):
    with pytest.raises(batch.ManifestError, match=match):
        list(batch.from_inventory(manifest, lambda key: b"", "inv"))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.binary(max_size=300))
def test_hostile_inventories_fail_only_with_a_manifest_error(manifest, data):
    with contextlib.suppress(batch.ManifestError):
        list(batch.from_inventory(manifest, lambda key: data, "inv"))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=40), max_size=5))
def test_hostile_csv_manifests_fail_only_with_a_manifest_error(lines):
    with contextlib.suppress(batch.ManifestError):
        list(batch.from_batch_csv(lines, "m.csv"))


def test_the_report_is_in_the_batch_operations_form():
    records = [
        Record("b", "k", None, "succeeded", "re-wrapped"),
        Record("b", "c", "v", "conflict", "changed", "Conflict"),
        Record("b", "f", None, "failed", "bad tag", "IntegrityError"),
    ]
    lines = batch.report_csv(records).splitlines()
    assert lines == [
        "b,k,,succeeded,,200,succeeded: re-wrapped",
        "b,c,v,failed,Conflict,412,conflict: changed",
        "b,f,,failed,IntegrityError,,failed: bad tag",
    ]
    assert len(batch.REPORT_COLUMNS) == 7


def test_the_kms_rate_limit_spaces_requests_without_a_clock_in_the_test(monkeypatch):
    now = [100.0]
    slept = []
    monkeypatch.setattr("s3cse.batch.time.monotonic", lambda: now[0])
    monkeypatch.setattr("s3cse.batch.time.sleep", lambda s: slept.append(round(s, 6)))
    limit = batch.KmsRateLimit(4)
    for _ in range(3):
        limit._wait()
    assert slept == [0.25, 0.5]  # the first goes at once; then one each quarter second
    with pytest.raises(Exception, match="positive"):
        batch.KmsRateLimit(0)


def test_a_job_spec_refuses_what_cannot_run():
    with pytest.raises(Exception, match="new key"):
        batch.JobSpec("rewrap", keys=batch.KeyRefs(kms_key_ids=("k",)))
    with pytest.raises(Exception, match="not one of"):
        batch.JobSpec("shred")  # type: ignore[arg-type]
    spec = batch.JobSpec("census")
    assert json.dumps(spec.as_dict())  # what job.json records: no key bytes, plain data


def test_an_inventory_without_its_bucket_or_with_corrupt_gzip_is_a_manifest_error():
    spec = {"fileFormat": "CSV", "fileSchema": "Bucket, Key", "files": [{"key": "d"}]}
    with pytest.raises(batch.ManifestError, match="sourceBucket"):
        list(batch.from_inventory(json.dumps(spec).encode(), lambda k: b"", "inv"))
    spec["sourceBucket"] = "b"
    corrupt = gzip.compress(b'"b","k"\n' * 100)[:30] + b"\xff" * 40
    with pytest.raises(batch.ManifestError, match="corrupt gzip"):
        list(batch.from_inventory(json.dumps(spec).encode(), lambda k: corrupt, "inv"))


def test_the_lambda_handler_answers_malformed_events_per_task_and_never_raises():
    answer = batch.lambda_handler({"job": "x", "tasks": [{"taskId": "t"}]}, None)
    assert answer["results"][0]["resultCode"] == "PermanentFailure"
    answer = batch.lambda_handler(
        {"job": {"userArguments": {"operation": "census"}}, "tasks": ["a", {"taskId": "t"}]},
        None,
    )
    assert [r["resultCode"] for r in answer["results"]] == ["PermanentFailure"] * 2
