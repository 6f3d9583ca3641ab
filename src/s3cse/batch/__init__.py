"""Jobs over many objects: census, rewrap, upgrade, encrypt and verify, from a prefix or
a manifest, resumable, on a thread pool here, on Dask, or as an S3 Batch Operations
Lambda function.

    from s3cse import batch
    spec = batch.JobSpec("rewrap", keys=batch.KeyRefs(kms_key_ids=("alias/old",)),
                         to_keys=batch.KeyRefs(kms_key_ids=("alias/new",)))
    summary = batch.run(spec, batch.from_prefix(s3, "bucket", "data/"), job_dir="job/")

A :class:`JobSpec` names keys by reference (KMS key ids, key-file paths), never by
their bytes, so it can be written to the job directory and sent to other processes.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from .. import _keyfiles
from ..errors import ConfigurationError
from ._job import REPORT_COLUMNS, JobDir, ReportFile, Summary, report_csv, run_tasks
from ._lambda import lambda_handler
from ._operations import (
    OPERATIONS,
    Operation,
    Record,
    Worker,
    describe_for_census,
    missing_keys,
)
from ._tasks import (
    ManifestError,
    Task,
    from_batch_csv,
    from_inventory,
    from_prefix,
    scoped,
    selected,
)

__all__ = [
    "OPERATIONS",
    "REPORT_COLUMNS",
    "JobDir",
    "JobSpec",
    "KeyRefs",
    "KmsRateLimit",
    "ManifestError",
    "Record",
    "Summary",
    "Task",
    "Worker",
    "describe_for_census",
    "from_batch_csv",
    "from_inventory",
    "from_manifest",
    "from_prefix",
    "lambda_handler",
    "report_csv",
    "run",
    "selected",
]


@dataclasses.dataclass(frozen=True)
class KeyRefs:
    """Keys by reference: KMS key ids or aliases, and paths of key files (AES: 32 raw
    bytes or base64; RSA: PEM). The first given encrypts, as on the command line."""

    kms_key_ids: tuple[str, ...] = ()
    aes_key_files: tuple[str, ...] = ()
    rsa_private_key_files: tuple[str, ...] = ()
    rsa_public_key_files: tuple[str, ...] = ()
    material_description: Mapping[str, str] | None = None

    def __bool__(self) -> bool:
        return bool(
            self.kms_key_ids
            or self.aes_key_files
            or self.rsa_private_key_files
            or self.rsa_public_key_files
        )

    def keyring(self, kms: Any) -> Any:
        """The keyring these keys make (None when there are none); ``kms``: the KMS
        client, needed only for KMS keys."""
        if not self:
            return None
        options = _keyfiles.KeyOptions(
            kms_key_ids=self.kms_key_ids,
            aes_keys=self.aes_key_files,
            rsa_private_keys=self.rsa_private_key_files,
            rsa_public_keys=self.rsa_public_key_files,
            matdesc=dict(self.material_description) if self.material_description else None,
            kms_client=kms if self.kms_key_ids else None,
        )
        return _keyfiles.build_keyrings(options)

    def as_dict(self) -> dict[str, Any]:
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
        }


@dataclasses.dataclass(frozen=True)
class JobSpec:
    """What a job does, in plain data: the operation, the keys that read (``keys``)
    and the key that writes (``to_keys``; rewrap needs it, upgrade and encrypt may have
    it), encryption contexts, legacy switches and limits."""

    operation: Operation
    keys: KeyRefs = KeyRefs()
    to_keys: KeyRefs = KeyRefs()
    encryption_context: Mapping[str, str] | None = None
    new_encryption_context: Mapping[str, str] | None = None
    legacy_wrapping: bool = False
    legacy_unauthenticated: bool = False
    verify: bool = False
    dryrun: bool = False
    max_kms_rps: float | None = None
    #: Where the clients a worker builds itself connect (Dask workers, Lambda); None:
    #: botocore's environment on that machine. Never credentials.
    s3_endpoint_url: str | None = None
    kms_endpoint_url: str | None = None
    region: str | None = None

    def __post_init__(self) -> None:
        refused = missing_keys(self.operation, bool(self.keys), bool(self.to_keys))
        if refused:
            raise ConfigurationError(refused)

    def as_dict(self) -> dict[str, Any]:
        """The job as job.json records it (keys by reference; dryrun and limits are not
        part of which job it is)."""
        return {
            "operation": self.operation,
            "keys": self.keys.as_dict(),
            "to_keys": self.to_keys.as_dict(),
            "encryption_context": dict(self.encryption_context or {}),
            "new_encryption_context": dict(self.new_encryption_context or {}),
            "legacy_wrapping": self.legacy_wrapping,
            "legacy_unauthenticated": self.legacy_unauthenticated,
            "verify": self.verify,
        }

    def s3_client(self) -> Any:
        """An S3 client as this spec says (endpoint, region), else botocore's defaults."""
        import boto3

        return boto3.client("s3", endpoint_url=self.s3_endpoint_url, region_name=self.region)

    def worker(self, s3: Any = None, kms: Any = None) -> Worker:
        """A Worker over the clients given (None: built as this spec says, or from
        botocore's environment; a KMS client only when a KMS key is named), with
        max_kms_rps applied."""
        if s3 is None:
            s3 = self.s3_client()
        if kms is None and (self.keys.kms_key_ids or self.to_keys.kms_key_ids):
            import boto3
            from botocore.config import Config

            # Adaptive retries: botocore backs off and rate-limits on ThrottlingException.
            kms = boto3.client(
                "kms",
                endpoint_url=self.kms_endpoint_url,
                region_name=self.region,
                config=Config(retries={"mode": "adaptive", "max_attempts": 10}),
            )
        if kms is not None and self.max_kms_rps:
            KmsRateLimit(self.max_kms_rps).attach(kms)
        return Worker(
            self.operation,
            s3,
            keyring=self.keys.keyring(kms),
            new_keyring=self.to_keys.keyring(kms),
            encryption_context=self.encryption_context,
            new_encryption_context=self.new_encryption_context,
            legacy_wrapping=self.legacy_wrapping,
            legacy_unauthenticated=self.legacy_unauthenticated,
            verify=self.verify,
            dryrun=self.dryrun,
        )


class KmsRateLimit:
    """At most ``rate`` KMS requests a second from one client (a token bucket, checked
    before each request is sent); attach it to every KMS client of a job."""

    def __init__(self, rate: float):
        if rate <= 0:
            raise ConfigurationError("max_kms_rps must be a positive number of requests a second")
        self.rate = float(rate)
        self._lock = threading.Lock()
        self._next = time.monotonic()

    def attach(self, kms: Any) -> None:
        kms.meta.events.register("before-send.kms", self._wait)

    def _wait(self, **_: Any) -> None:
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + 1.0 / self.rate
        if start > now:
            time.sleep(start - now)


def from_manifest(
    s3: Any,
    location: str,
    filters: Sequence[tuple[str, str]] = (),
    within: tuple[str, str] | None = None,
) -> Iterable[Task]:
    """Tasks of a manifest at ``location`` (a local path or s3://bucket/key): an S3
    Inventory ``manifest.json`` (its data files are read from the inventory's
    destination bucket, or beside a local manifest) or a Batch Operations CSV.

    ``within``: (bucket, prefix), the job's target. Objects outside the prefix are left
    out, ``filters`` apply to names relative to it (as to a listing), and a manifest
    naming another bucket is refused with a ManifestError: a CSV before any task is
    handed out (it is checked whole first), an inventory by its sourceBucket (and a row
    naming another bucket, which the inventory check refuses where it is met). Without
    ``within`` a manifest may name any bucket the credentials reach and filters match
    whole keys; the command line always gives it."""

    def read(where: str) -> bytes:
        if where.startswith("s3://"):
            bucket, _, key = where[5:].partition("/")
            return bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        with open(where, "rb") as f:
            return f.read()

    data = read(location)
    if location.endswith(".json") or data.lstrip()[:1] == b"{":
        spec = _json_or_error(data, location)
        destination = str(spec.get("destinationBucket", "")).rpartition(":")[2]

        def read_data_file(key: str) -> bytes:
            if location.startswith("s3://") or not destination:
                return read(f"s3://{destination}/{key}")
            import os

            local = os.path.join(os.path.dirname(location), os.path.basename(key))
            if os.path.exists(local):
                return read(local)
            return read(f"s3://{destination}/{key}")

        if within is not None:
            source = str(spec.get("sourceBucket") or "")
            if source and source != within[0]:
                raise ManifestError(
                    f"{location}: an inventory of s3://{source}, not of s3://{within[0]}, "
                    f"the bucket this job was given: refused (to run on that bucket, give "
                    f"it as the target: s3://{source}/)"
                )
            return scoped(
                from_inventory(data, read_data_file, location), *within, location, filters
            )
        return from_inventory(data, read_data_file, location, filters)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{location}: not a CSV manifest in UTF-8 ({exc})") from None
    lines = text.splitlines()
    if within is None:
        return from_batch_csv(lines, location, filters)
    for _ in scoped(from_batch_csv(lines, location), *within, location):
        pass  # the whole manifest first: a row for another bucket runs nothing
    return scoped(from_batch_csv(lines, location), *within, location, filters)


def _json_or_error(data: bytes, location: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError as exc:
        raise ManifestError(f"{location}: not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ManifestError(f"{location}: not an S3 Inventory manifest.json")
    return value


def run(
    spec: JobSpec | Worker,
    tasks: Iterable[Task],
    *,
    s3: Any = None,
    kms: Any = None,
    job_dir: str | JobDir | None = None,
    workers: int = 8,
    progress: Callable[[Record], Any] | None = None,
    passed: Callable[[Task], Any] | None = None,
    stop: threading.Event | None = None,
    report: str | None = None,
    dask: Any = None,
    target: str | None = None,
) -> Summary:
    """Run a job on a bounded thread pool in this process. ``spec``: a JobSpec (its
    clients built from ``s3``/``kms`` or botocore's environment) or a ready Worker.
    ``job_dir`` (a folder or s3://bucket/prefix) makes it resumable: a rerun skips
    what is done and retries what failed, and the report and summary are written
    there; ``report`` writes the report CSV to a local path as well. ``progress`` is
    called with each record of this run, ``passed`` with each task skipped because an
    earlier run finished it (both in this thread). ``dask``: a
    ``distributed.Client``: the tasks run on its cluster's workers instead, each building
    its own clients and keys from the JobSpec (a Worker cannot be sent). ``target``
    (the prefix or manifest) is recorded in job.json with the spec."""
    if isinstance(spec, JobSpec):
        if s3 is None:
            s3 = spec.s3_client()
        worker = spec.worker(s3, kms)
        recorded = spec.as_dict()
    else:
        worker, recorded = spec, {"operation": spec.operation}
        s3 = s3 or spec.s3
    directory = JobDir(job_dir, s3) if isinstance(job_dir, str) else job_dir
    if target is not None:
        recorded = {**recorded, "target": target}
    if directory is not None and not worker.dryrun:
        directory.claim(recorded)
    if directory is not None and directory.location.startswith("s3://"):
        # Never the job's own checkpoints, report and job.json, wherever they are.
        bucket, _, prefix = directory.location[5:].partition("/")
        own = prefix.rstrip("/") + "/" if prefix.strip("/") else ""
        names = ("job.json", "report.csv", "summary.json")
        tasks = (
            t
            for t in tasks
            if not (
                t.bucket == bucket
                and t.key.startswith(own)
                and (bool(own) or t.key in names or t.key.startswith("checkpoint/"))
            )
        )
    if dask is not None and not isinstance(spec, JobSpec):
        raise ConfigurationError(
            "the Dask engine takes a JobSpec (keys by reference), not a built Worker"
        )
    # The report: from the checkpoint at the end with a job directory (every task of
    # every run, the last record of each), else written row by row as this run goes.
    keeps_state = directory is not None and not worker.dryrun
    streamed = ReportFile(report) if report and not keeps_state else None
    seen = progress
    if streamed is not None:

        def seen(record: Record) -> None:
            streamed.add(record)
            if progress is not None:
                progress(record)

    try:
        if dask is not None:
            from ._dask import run_on_dask

            assert isinstance(spec, JobSpec)
            summary = run_on_dask(
                spec,
                tasks,
                dask,
                job_dir=directory,
                threads_per_worker=workers,
                progress=seen,
                passed=passed,
            )
        else:
            summary = run_tasks(
                worker,
                tasks,
                job_dir=directory,
                workers=workers,
                progress=seen,
                passed=passed,
                stop=stop,
            )
    except BaseException:
        if streamed is not None:
            streamed.discard()
        raise
    if streamed is not None:
        streamed.finish()
    if keeps_state:
        assert directory is not None
        directory.write_report(summary, copy_to=report)
    return summary
