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


class _StubWorker:
    """What the engine needs of a Worker, with no store: odd-numbered tasks fail on the
    first run, everything succeeds afterwards."""

    operation, dryrun, s3 = "verify", False, None

    def __init__(self, failing=()):
        import threading

        self.cancel = threading.Event()
        self.failing = set(failing)

    def run(self, task):
        if task.key in self.failing:
            return Record(task.bucket, task.key, None, "failed", "a bad tag", "IntegrityError")
        return Record(task.bucket, task.key, None, "succeeded", "authenticated", bytes=3)


def _tasks(count):
    return (batch.Task("b", f"k{i:06d}") for i in range(count))


def test_a_rerun_reports_every_task_once_with_what_it_came_to(tmp_path):
    job = str(tmp_path / "job")
    odd = {f"k{i:06d}" for i in range(1, 40, 2)}
    first = batch.run(_StubWorker(odd), _tasks(40), job_dir=job, workers=3)
    assert first.counts == {"succeeded": 20, "failed": 20}
    second = batch.run(
        _StubWorker(), _tasks(40), job_dir=job, workers=3, report=str(tmp_path / "copy.csv")
    )
    assert second.already_done == 20 and second.counts == {"succeeded": 40}
    assert second.bytes == 120
    lines = (tmp_path / "job" / "checkpoint.jsonl").read_text().splitlines()
    assert len(lines) == 60  # every record of both runs
    report = (tmp_path / "job" / "report.csv").read_text().splitlines()
    assert sorted(report) == [
        f"b,k{i:06d},,succeeded,,200,succeeded: authenticated" for i in range(40)
    ]
    assert (tmp_path / "copy.csv").read_text().splitlines() == report
    assert json.loads((tmp_path / "job" / "summary.json").read_text())["counts"] == {
        "succeeded": 40
    }


def test_a_stopped_rerun_still_reports_what_earlier_runs_left_failed(tmp_path):
    job = str(tmp_path / "job")
    batch.run(_StubWorker({"k000001"}), _tasks(3), job_dir=job, workers=1)
    batch.run(_StubWorker(), iter(()), job_dir=job, workers=1)  # reaches no task
    report = (tmp_path / "job" / "report.csv").read_text().splitlines()
    assert "b,k000001,,failed,IntegrityError,,failed: a bad tag" in report and len(report) == 3


def test_a_report_without_a_job_dir_is_written_as_the_run_goes_and_whole_or_not_at_all(
    tmp_path, monkeypatch
):
    path = tmp_path / "report.csv"
    batch.run(_StubWorker({"k000000"}), _tasks(5), workers=2, report=str(path))
    assert len(path.read_text().splitlines()) == 5

    def broken():
        yield batch.Task("b", "first")
        raise RuntimeError("the listing broke")

    with pytest.raises(RuntimeError):
        batch.run(_StubWorker(), broken(), workers=2, report=str(tmp_path / "other.csv"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.csv"]  # nothing half-written


def test_a_job_of_many_objects_keeps_no_records_in_memory():
    import tracemalloc

    from s3cse.batch._job import run_tasks

    seen = 0

    def count(_record):
        nonlocal seen
        seen += 1

    tracemalloc.start()
    try:
        summary = run_tasks(_StubWorker(), _tasks(20_000), workers=2, progress=count)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert summary.counts == {"succeeded": 20_000} and seen == 20_000
    # 20,000 records kept would take some 8 MB; the window in flight takes a few KB.
    assert peak < 2 * 1024 * 1024, peak


def test_a_local_checkpoint_is_read_line_by_line(tmp_path):
    directory = batch.JobDir(str(tmp_path / "job"))
    directory.append([Record("b", f"k{i}", None, "succeeded", "ok") for i in range(3)])
    with open(tmp_path / "job" / "checkpoint.jsonl", "a") as f:
        f.write('{"cut off by a crash')
    directory.append([Record("b", "k1", None, "failed", "later", "X")])
    records = directory.records()
    assert not isinstance(records, list)  # a generator over the open file
    assert [(r.key, r.status) for r in records] == [
        ("k0", "succeeded"),
        ("k1", "succeeded"),
        ("k2", "succeeded"),
        ("k1", "failed"),
    ]


def test_a_task_whose_last_record_is_a_conflict_runs_again(tmp_path):
    # A duplicate manifest row, or two runs sharing a directory: done, then a conflict.
    job = str(tmp_path / "job")
    directory = batch.JobDir(job)
    directory.claim({"operation": "verify"})
    directory.append(
        [
            Record("b", "k000000", None, "succeeded", "authenticated", bytes=3),
            Record("b", "k000000", None, "conflict", "changed", "Conflict"),
            Record("b", "k000001", None, "succeeded", "authenticated", bytes=3),
        ]
    )
    ran = []

    class Counting(_StubWorker):
        def run(self, task):
            ran.append(task.key)
            return super().run(task)

    summary = batch.run(Counting(), _tasks(2), job_dir=job, workers=1)
    assert ran == ["k000000"] and summary.already_done == 1
    assert summary.counts == {"succeeded": 2}
    report = sorted((tmp_path / "job" / "report.csv").read_text().splitlines())
    assert [row.split(",")[3] for row in report] == ["succeeded", "succeeded"]


def test_progress_comes_as_tasks_finish_not_when_the_window_fills():
    import threading

    finished = threading.Event()
    seen = []
    seen_before_the_third = []

    class Signalling(_StubWorker):
        def run(self, task):
            record = super().run(task)
            finished.set()
            return record

    def tasks():
        yield batch.Task("b", "k0")
        assert finished.wait(30)  # the first is done (in a worker thread) ...
        yield batch.Task("b", "k1")
        seen_before_the_third.extend(seen)  # ... and reported before the third is asked for
        yield batch.Task("b", "k2")

    from s3cse.batch._job import run_tasks

    run_tasks(Signalling(), tasks(), workers=2, progress=lambda r: seen.append(r.key))
    assert "k0" in seen_before_the_third and sorted(seen) == ["k0", "k1", "k2"]


def test_a_checkpoint_line_from_a_later_version_still_reads():
    line = json.dumps(
        {
            "bucket": "b",
            "key": "k",
            "version_id": None,
            "status": "succeeded",
            "message": "ok",
            "a_field_from_the_future": 1,
        }
    )
    assert Record.from_json(line).done


def test_a_manifest_is_held_to_the_target_and_filtered_as_a_listing_is(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("b,logs/a.txt\nb,logs/tmp/x\nb,other/c\nb,logs2/d\n")
    tasks = batch.from_manifest(None, str(manifest), [("exclude", "tmp/*")], ("b", "logs/"))
    assert [t.key for t in tasks] == ["logs/a.txt"]  # tmp/* relative to the prefix, as cp
    manifest.write_text("b,logs/a.txt\nelsewhere,logs/b.txt\n")
    with pytest.raises(batch.ManifestError, match=r"s3://elsewhere/logs/b\.txt"):
        batch.from_manifest(None, str(manifest), (), ("b", "logs/"))  # before any task


def test_an_inventory_of_another_bucket_is_refused_and_names_the_target_to_give(tmp_path):
    spec, _ = _inventory([])
    (tmp_path / "manifest.json").write_bytes(spec)
    with pytest.raises(batch.ManifestError, match=r"give it as the target: s3://b/"):
        batch.from_manifest(None, str(tmp_path / "manifest.json"), (), ("mine", ""))


def test_lines_that_are_json_but_not_records_are_passed_over(tmp_path):
    directory = batch.JobDir(str(tmp_path / "job"))
    with open(tmp_path / "job" / "checkpoint.jsonl", "w") as f:
        f.write('1\n[1, 2]\n"x"\nnull\n{"bucket": "b"}\n')
    directory.append([Record("b", "k", None, "succeeded", "ok")])
    assert [r.key for r in directory.records()] == ["k"]


def test_a_rerun_tells_which_tasks_an_earlier_run_finished(tmp_path):
    job = str(tmp_path / "job")
    batch.run(_StubWorker({"k000001"}), _tasks(3), job_dir=job, workers=1)
    passed = []
    batch.run(_StubWorker(), _tasks(3), job_dir=job, workers=1, passed=passed.append)
    assert [t.key for t in passed] == ["k000000", "k000002"]
