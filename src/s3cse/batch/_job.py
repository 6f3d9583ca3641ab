"""A job's directory (checkpoints, report, summary) and the default engine: a bounded
thread pool in this process."""

from __future__ import annotations

import concurrent.futures
import contextlib
import contextvars
import csv
import hashlib
import io
import json
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigurationError
from ._operations import Record, Worker
from ._tasks import Task

__all__ = [
    "JobDir",
    "ReportFile",
    "Summary",
    "report_csv",
    "report_row",
    "run_tasks",
    "task_digest",
]

#: Columns of the report: those of an S3 Batch Operations completion report.
REPORT_COLUMNS = (
    "Bucket",
    "Key",
    "VersionId",
    "TaskStatus",
    "ErrorCode",
    "HTTPStatusCode",
    "ResultMessage",
)
_FLUSH_RECORDS, _FLUSH_SECONDS = 500, 5.0


@dataclass
class Summary:
    """Counts, bytes and rate of a run (this run's tasks and those a checkpoint had
    already finished), and census's grouping of what it found."""

    operation: str
    counts: Counter[str] = field(default_factory=Counter)
    bytes: int = 0
    seconds: float = 0.0
    already_done: int = 0
    census: dict[str, dict[str, int]] = field(default_factory=dict)
    dryrun: bool = False
    error_codes: Counter[str] = field(default_factory=Counter)

    def add(self, record: Record) -> None:
        self.counts[record.status] += 1
        if record.error_code:
            self.error_codes[record.error_code] += 1
        self.bytes += record.bytes
        if record.census is not None:
            group = ", ".join(
                str(record.census.get(k, "-")) for k in ("format", "wrap", "key", "location")
            )
            entry = self.census.setdefault(group, {"objects": 0, "bytes": 0})
            entry["objects"] += 1
            entry["bytes"] += record.bytes

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def failed(self) -> int:
        return self.counts["failed"] + self.counts["conflict"] + self.counts["throttled"]

    @property
    def rate(self) -> float | None:
        """Objects a second of this run (what earlier runs did not count)."""
        ran = self.total - self.already_done
        return ran / self.seconds if self.seconds and ran else None

    def as_dict(self) -> dict[str, Any]:
        rate = self.rate
        return {
            "operation": self.operation,
            "dryrun": self.dryrun,
            "objects": self.total,
            "counts": dict(self.counts),
            "error_codes": dict(self.error_codes),
            "already_done_before_this_run": self.already_done,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
            "objects_per_second": round(rate, 1) if rate else None,
            "census": self.census,
        }

    def __str__(self) -> str:
        parts = [f"{self.counts[s]} {s}" for s in ("succeeded", "skipped") if self.counts[s]]
        parts += [f"{self.counts[s]} {s}" for s in ("conflict", "throttled", "failed")]
        head = f"{'(dryrun) ' if self.dryrun else ''}{self.operation}: {self.total} objects"
        tail = f" ({self.already_done} done by an earlier run)" if self.already_done else ""
        rate = f", {self.rate:.0f} objects/s" if self.rate else ""
        return f"{head}{tail}: {', '.join(parts)}; {self.bytes:,} bytes{rate}"


class JobDir:
    """Where a job keeps its state: a local folder, or ``s3://bucket/prefix`` (then
    ``s3`` is the plain S3 client). ``job.json`` says which job it is (a rerun must be
    the same one), ``checkpoint`` holds one JSON line per finished task, appended as
    the job goes, and ``report.csv`` and ``summary.json`` are written at the end."""

    def __init__(self, location: str, s3: Any = None):
        self.location = location
        self._s3 = s3
        self._lock = threading.Lock()
        self._next_chunk: int | None = None
        if location.startswith("s3://"):
            if s3 is None:
                raise ConfigurationError("a job directory on S3 needs the S3 client")
            self._bucket, _, prefix = location[5:].partition("/")
            self._prefix = prefix.rstrip("/") + "/" if prefix else ""
        else:
            os.makedirs(location, exist_ok=True)

    # -- storage
    def _write(self, name: str, data: bytes) -> None:
        if self._s3 is not None and self.location.startswith("s3://"):
            self._s3.put_object(Bucket=self._bucket, Key=self._prefix + name, Body=data)
            return
        path = os.path.join(self.location, name)
        temporary = f"{path}.{uuid.uuid4().hex}.tmp"
        with open(temporary, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)

    def _read(self, name: str) -> bytes | None:
        if self.location.startswith("s3://"):
            try:
                response = self._s3.get_object(Bucket=self._bucket, Key=self._prefix + name)
            except self._s3.exceptions.NoSuchKey:
                return None
            return bytes(response["Body"].read())
        try:
            with open(os.path.join(self.location, name), "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    # -- the job it is
    def claim(self, spec: Mapping[str, Any]) -> None:
        """Record ``spec`` (operation, target, keys by reference), or check that a
        rerun is the same job: one directory, one job."""
        found = self._read("job.json")
        if found is None:
            self._write("job.json", json.dumps(spec, sort_keys=True, indent=1).encode())
            return
        try:
            recorded = json.loads(found)
        except ValueError:
            raise ConfigurationError(
                f"{self.location}/job.json is not a job description s3cse wrote (it is not "
                "JSON): give the job a directory of its own"
            ) from None
        if not isinstance(recorded, dict) or recorded != json.loads(json.dumps(spec)):
            recorded = recorded if isinstance(recorded, dict) else {}
            differs = sorted(k for k in set(recorded) | set(spec) if recorded.get(k) != spec.get(k))
            raise ConfigurationError(
                f"{self.location} holds another job (it differs in {', '.join(differs)}): "
                "give each job a directory of its own"
            )

    # -- checkpoints
    def load(self, summary: Summary) -> set[bytes]:
        """What earlier runs finished for good, as each task's last record says (one
        done and then a conflict, from a duplicate row or a second run, is not done):
        those last records are added to ``summary`` (as ``already_done``), and the ids
        of their tasks returned (as :func:`task_digest`, 16 bytes: some 80 bytes a task
        in memory, where a record took a kilobyte; about 130 while the checkpoint is
        read). Two passes over the checkpoint."""
        names = self._chunk_names()
        last: dict[bytes, int] = {}
        for number, record in enumerate(self.records(names)):
            last[task_digest(record.task)] = number
        done: set[bytes] = set()
        for number, record in enumerate(self.records(names)):
            digest = task_digest(record.task)
            if record.done and last.get(digest) == number:
                done.add(digest)
                summary.already_done += 1
                summary.add(record)
        return done

    def records(self, names: list[str] | None = None) -> Iterator[Record]:
        """Every record the checkpoint holds, in the order they were written (a task
        retried has several; the last is what it came to). ``names``: the checkpoint
        objects of a job directory on S3, as :meth:`_chunk_names` listed them (two
        passes over one listing see the same records in the same order)."""
        for lines in self._chunks(names):
            for line in lines:
                if line.strip():
                    try:
                        yield Record.from_json(line)
                    except (ValueError, TypeError):
                        continue  # a line cut off by a crash: that task runs again

    def _chunk_names(self) -> list[str] | None:
        if not self.location.startswith("s3://"):
            return None
        paginator = self._s3.get_paginator("list_objects_v2")
        return [
            item["Key"]
            for page in paginator.paginate(Bucket=self._bucket, Prefix=self._prefix + "checkpoint/")
            for item in page.get("Contents", [])
        ]

    def _chunks(self, names: list[str] | None) -> Iterator[Iterable[str]]:
        if self.location.startswith("s3://"):
            for name in names if names is not None else (self._chunk_names() or []):
                response = self._s3.get_object(Bucket=self._bucket, Key=name)
                data = bytes(response["Body"].read())
                yield data.decode("utf-8", errors="replace").splitlines()
            return
        try:
            with open(
                os.path.join(self.location, "checkpoint.jsonl"), encoding="utf-8", errors="replace"
            ) as f:
                yield f  # line by line: never the whole file in memory
        except FileNotFoundError:
            return

    def append(self, records: list[Record]) -> None:
        """Record finished tasks durably (a crash afterwards does not redo them)."""
        if not records:
            return
        data = "".join(r.to_json() + "\n" for r in records).encode()
        with self._lock:
            if self.location.startswith("s3://"):
                # Named by a counter past every chunk already there, not by the clock
                # (a machine whose clock is behind would sort its records first).
                if self._next_chunk is None:
                    numbers = [0]
                    for existing in self._chunk_names() or []:
                        head = existing.rpartition("/")[2][:20]
                        if head.isdigit():
                            numbers.append(int(head))
                    self._next_chunk = max(numbers) + 1
                name = f"checkpoint/{self._next_chunk:020d}-{uuid.uuid4().hex[:8]}.jsonl"
                self._next_chunk += 1
                self._write(name, data)
                return
            with open(os.path.join(self.location, "checkpoint.jsonl"), "ab+") as f:
                if f.tell():  # after a line a crash cut off, start on a line of our own
                    f.seek(-1, os.SEEK_END)
                    if f.read(1) != b"\n":
                        data = b"\n" + data
                f.write(data)
                f.flush()
                os.fsync(f.fileno())

    def write_report(self, summary: Summary, copy_to: str | None = None) -> None:
        """``report.csv`` (the last record of every task, from the checkpoint, streamed
        through a temporary file) and ``summary.json``; ``copy_to``: the report at that
        local path too."""
        names = self._chunk_names()  # one listing for both passes
        last: dict[bytes, int] = {}  # some 130 bytes a task
        for number, record in enumerate(self.records(names)):
            last[task_digest(record.task)] = number
        with tempfile.TemporaryFile("w+b") as spool:
            text = io.TextIOWrapper(spool, encoding="utf-8", newline="")
            writer = csv.writer(text, lineterminator="\n")
            for number, record in enumerate(self.records(names)):
                if last.get(task_digest(record.task)) == number:
                    writer.writerow(report_row(record))
            text.flush()
            del last
            if self.location.startswith("s3://"):
                spool.seek(0)  # PutObject takes up to 5 GiB: some 50 million rows
                self._s3.put_object(
                    Bucket=self._bucket, Key=self._prefix + "report.csv", Body=spool
                )
            else:
                spool.seek(0)
                _copy_file(spool, os.path.join(self.location, "report.csv"))
            if copy_to:
                spool.seek(0)
                _copy_file(spool, copy_to)
            text.detach()
        self._write("summary.json", json.dumps(summary.as_dict(), indent=1).encode())


def task_digest(task: Task) -> bytes:
    """A task's id in 16 bytes, for the sets a job of millions keeps."""
    return hashlib.blake2b(task.id.encode("utf-8"), digest_size=16).digest()


def _copy_file(source: Any, path: str) -> None:
    """``source`` (an open binary file) to ``path``, whole or not at all."""
    temporary = f"{path}.{uuid.uuid4().hex}.tmp"
    try:
        with open(temporary, "wb") as f:
            shutil.copyfileobj(source, f, 1024 * 1024)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


class ReportFile:
    """A report written as a run goes, for runs without a job directory: rows go to a
    temporary file beside ``path``, which takes its name when the run ends."""

    def __init__(self, path: str):
        self.path = path
        self._temporary = f"{path}.{uuid.uuid4().hex}.tmp"
        self._file = open(self._temporary, "w", encoding="utf-8", newline="")  # noqa: SIM115
        self._writer = csv.writer(self._file, lineterminator="\n")

    def add(self, record: Record) -> None:
        self._writer.writerow(report_row(record))

    def finish(self) -> None:
        self._file.close()
        os.replace(self._temporary, self.path)

    def discard(self) -> None:
        self._file.close()
        with contextlib.suppress(OSError):
            os.unlink(self._temporary)


def report_row(r: Record) -> list[str]:
    """One record as a row of S3 Batch Operations' completion report (REPORT_COLUMNS)."""
    return [
        r.bucket,
        r.key,
        r.version_id or "",
        "succeeded" if r.done else "failed",
        r.error_code if not r.done else "",
        "200" if r.done else ("412" if r.status == "conflict" else ""),
        f"{r.status}: {r.message}",
    ]


def report_csv(records: Iterable[Record]) -> str:
    """The records in S3 Batch Operations' completion-report form (no header row, as
    S3 writes it; the columns are REPORT_COLUMNS)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for r in records:
        writer.writerow(report_row(r))
    return out.getvalue()


def run_tasks(
    worker: Worker,
    tasks: Iterable[Task],
    *,
    job_dir: JobDir | None = None,
    workers: int = 8,
    progress: Callable[[Record], Any] | None = None,
    passed: Callable[[Task], Any] | None = None,
    stop: threading.Event | None = None,
) -> Summary:
    """Run ``worker`` over ``tasks`` on ``workers`` threads, at most a few times
    ``workers`` tasks in flight (a listing of any length never piles up in memory),
    ``progress`` called with each record, from this thread. With ``job_dir``: tasks a
    checkpoint has finished are skipped, and every record is checkpointed as the job
    goes, and ``passed`` is called with each task skipped for it. ``stop`` (an Event)
    stops what has not started. No record is kept here."""
    started = time.monotonic()
    summary = Summary(worker.operation, dryrun=worker.dryrun)
    done_before = job_dir.load(summary) if job_dir is not None and not worker.dryrun else set()
    pending_checkpoint: list[Record] = []
    last_flush = time.monotonic()

    def flush(force: bool = False) -> None:
        nonlocal last_flush
        if job_dir is None or not checkpointing:
            return
        due = force or len(pending_checkpoint) >= _FLUSH_RECORDS
        if not due and time.monotonic() - last_flush < _FLUSH_SECONDS:
            return
        batch = pending_checkpoint[:]
        pending_checkpoint.clear()
        last_flush = time.monotonic()
        job_dir.append(batch)

    checkpointing = job_dir is not None and not worker.dryrun

    def take(record: Record) -> None:
        summary.add(record)
        if checkpointing:
            pending_checkpoint.append(record)
        if progress is not None:
            progress(record)

    pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="s3cse-batch")
    window: set[concurrent.futures.Future[Record]] = set()

    def collect(done: Iterable[concurrent.futures.Future[Record]]) -> None:
        for future in done:
            error = future.exception()
            if error is not None:  # Worker.run records every failure; this is a last resort
                raise error
            take(future.result())
        flush()

    try:
        for task in tasks:
            if stop is not None and stop.is_set():
                for future in window:  # what has not started does not start
                    future.cancel()
                worker.cancel.set()  # and rewrites under way stop at their next part
                break
            if done_before and task_digest(task) in done_before:
                if passed is not None:
                    passed(task)
                continue  # counted when the checkpoint was read
            if len(window) >= workers * 4:
                done, window = concurrent.futures.wait(
                    window, return_when=concurrent.futures.FIRST_COMPLETED
                )
                collect(done)
            window.add(pool.submit(contextvars.copy_context().run, worker.run, task))
            ready = {f for f in window if f.done()}  # reported as they finish, not in bursts
            if ready:
                window -= ready
                collect(ready)
        while window:
            done, window = concurrent.futures.wait(
                window, return_when=concurrent.futures.FIRST_COMPLETED
            )
            collect(f for f in done if not f.cancelled())
    finally:
        for future in window:
            future.cancel()
        worker.cancel.set()  # rewrites under way stop at their next part, aborted
        pool.shutdown(wait=True, cancel_futures=True)
        worker.cancel.clear()
        for future in window:  # finished while shutting down: keep what they did
            if future.done() and not future.cancelled() and future.exception() is None:
                take(future.result())
        window.clear()
        flush(force=True)
    summary.seconds = time.monotonic() - started
    return summary
