"""The Dask engine: a job's tasks in partitions across a ``distributed`` cluster's
workers, each worker process with its own S3 and KMS clients and keys.

What travels to the workers is the JobSpec, which names keys by reference (KMS key
ids, key-file paths): no key bytes cross the network, TLS or not. Key files must be
readable at the same path on every worker. Records come back to this process, which
keeps the checkpoint and the report, so a worker that dies loses nothing: Dask runs its
partition again elsewhere (every operation is idempotent), and a rerun of the job skips
what its checkpoint finished.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import itertools
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from ._job import JobDir, Summary, task_digest
from ._operations import Record, Worker
from ._tasks import Task

__all__ = ["run_on_dask"]

_workers: dict[str, Worker] = {}
_lock = threading.Lock()


def _partition(spec: Any, tasks: list[Task], threads: int) -> list[Record]:
    """On a Dask worker: run ``tasks`` on ``threads`` threads with this process's own
    Worker (built once per job settings)."""
    name = repr(spec)
    with _lock:
        worker = _workers.get(name)
        if worker is None:
            worker = spec.worker()  # this process's own clients, as the spec says
            _workers[name] = worker
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        return list(pool.map(worker.run, tasks))


def run_on_dask(
    spec: Any,
    tasks: Iterable[Task],
    client: Any,
    *,
    job_dir: JobDir | None = None,
    partition_size: int = 100,
    threads_per_worker: int = 8,
    progress: Callable[[Record], Any] | None = None,
    passed: Callable[[Task], Any] | None = None,
) -> Summary:
    """Run the JobSpec ``spec`` over ``tasks`` on the cluster of ``client`` (a
    ``distributed.Client``); at most two partitions per worker are queued at once.
    ``max_kms_rps`` is shared out among the workers. ``progress`` is called with each
    record, in this process; no record is kept here."""
    from distributed import as_completed

    started = time.monotonic()
    workers = max(1, len(client.scheduler_info().get("workers", {})))
    if spec.max_kms_rps:
        spec = dataclasses.replace(spec, max_kms_rps=spec.max_kms_rps / workers)
    summary = Summary(spec.operation, dryrun=spec.dryrun)
    done_before = job_dir.load(summary) if job_dir is not None and not spec.dryrun else set()

    def fresh() -> Iterable[Task]:
        for task in tasks:
            if done_before and task_digest(task) in done_before:
                if passed is not None:
                    passed(task)
                continue  # counted when the checkpoint was read
            yield task

    remaining = iter(fresh())

    def chunks_of() -> Iterable[list[Task]]:
        while chunk := list(itertools.islice(remaining, partition_size)):
            yield chunk

    chunks = iter(chunks_of())
    queue: Any = as_completed()  # type: ignore[no-untyped-call]
    for chunk in itertools.islice(chunks, workers * 2):
        queue.add(client.submit(_partition, spec, chunk, threads_per_worker, pure=False))
    for future in queue:
        done: list[Record] = future.result()
        for record in done:
            summary.add(record)
            if progress is not None:
                progress(record)
        if job_dir is not None and not spec.dryrun:
            job_dir.append(done)
        next_chunk = next(chunks, None)
        if next_chunk:
            queue.add(client.submit(_partition, spec, next_chunk, threads_per_worker, pure=False))
    summary.seconds = time.monotonic() - started
    return summary
