"""What a batch job works on: one task per object, from a prefix listing, an S3
Inventory report or an S3 Batch Operations CSV manifest."""

from __future__ import annotations

import csv
import fnmatch
import gzip
import io
import json
import urllib.parse
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..core.metadata import INSTRUCTION_FILE_SUFFIX
from ..errors import ConfigurationError, S3CSEError

__all__ = [
    "ManifestError",
    "Task",
    "from_batch_csv",
    "from_inventory",
    "from_prefix",
    "scoped",
    "selected",
]


class ManifestError(S3CSEError):
    """A manifest (S3 Inventory report or Batch Operations CSV) that cannot be read as
    one: the error names the file and what in it is wrong."""


@dataclass(frozen=True)
class Task:
    """One object of a job. ``version_id`` comes from a manifest; the job acts on the
    current version only (an older one named there is reported as skipped)."""

    bucket: str
    key: str
    version_id: str | None = None

    @property
    def id(self) -> str:
        """A stable name for checkpoints."""
        return json.dumps([self.bucket, self.key, self.version_id or ""])

    def __str__(self) -> str:
        tail = f"?versionId={self.version_id}" if self.version_id else ""
        return f"s3://{self.bucket}/{self.key}{tail}"


def selected(name: str, filters: Sequence[tuple[str, str]]) -> bool:
    """As the CLI's --include/--exclude: everything is in, then the filters apply in
    order, the last that matches wins."""
    included = True
    for kind, pattern in filters:
        if fnmatch.fnmatchcase(name, pattern):
            included = kind == "include"
    return included


def from_prefix(
    s3: Any,
    bucket: str,
    prefix: str,
    filters: Sequence[tuple[str, str]] = (),
    *,
    access: Mapping[str, Any] | None = None,
    every_key: bool = False,
) -> Iterator[Task]:
    """The objects under ``prefix`` (a paginated LIST), filters applied to the names
    relative to it. Instruction files are not tasks of their own: each goes with its
    object (a name ending in the suffix whose object is absent stays a task, so nothing
    planted can hide from a job), and neither are names ending in "/" (folder markers).
    ``every_key=True``: every listed key is a task, for a report that accounts for each. ``access``: ``ExpectedBucketOwner`` and
    ``RequestPayer`` for the LIST."""
    paginator = s3.get_paginator("list_objects_v2")
    previous: list[str] = []
    wanted = {
        k: v for k, v in (access or {}).items() if k in ("ExpectedBucketOwner", "RequestPayer")
    }
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix, **wanted):
        keys = [item["Key"] for item in page.get("Contents", [])]
        # A listing is in key order, so an object precedes its instruction file: keep the
        # last page's keys to match one that starts the next page.
        present = set(keys) | set(previous)
        for key in keys:
            if not selected(key[len(prefix) :], filters) or (not every_key and key.endswith("/")):
                continue
            if (
                not every_key
                and key.endswith(INSTRUCTION_FILE_SUFFIX)
                and key[: -len(INSTRUCTION_FILE_SUFFIX)] in present
            ):
                continue
            yield Task(bucket, key)
        previous = keys[-1000:]


def from_batch_csv(
    lines: Iterable[str], source: str, filters: Sequence[tuple[str, str]] = ()
) -> Iterator[Task]:
    """Tasks of an S3 Batch Operations CSV manifest: ``bucket,key[,version_id]`` per
    row, keys URL-encoded (as S3 requires of that form). ``source`` names the file in
    errors."""
    for number, row in _csv_reader(lines, source):
        if not row or not "".join(row).strip():
            continue
        if len(row) not in (2, 3) or not row[0] or not row[1]:
            raise ManifestError(
                f"{source}, row {number}: expected bucket,key[,version_id], found {len(row)} fields"
            )
        key = urllib.parse.unquote_plus(row[1])
        if selected(key, filters):
            yield Task(row[0], key, (row[2] or None) if len(row) == 3 else None)


def from_inventory(
    manifest: bytes,
    read: Any,
    source: str,
    filters: Sequence[tuple[str, str]] = (),
) -> Iterator[Task]:
    """Tasks of an S3 Inventory report: its ``manifest.json`` (bytes) and ``read(key)``,
    which returns the bytes of one of the data files it lists (CSV, gzipped CSV or
    Parquet, as S3 writes them). Delete markers and versions that are not the latest are
    left out: a job acts on current versions."""
    try:
        spec = json.loads(manifest)
        file_format = str(spec.get("fileFormat", "")).upper()
        files = [str(f["key"]) for f in spec["files"]]
        bucket = str(spec.get("sourceBucket") or "")
        schema = [c.strip() for c in str(spec.get("fileSchema", "")).split(",") if c.strip()]
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise ManifestError(
            f"{source}: not an S3 Inventory manifest.json ({type(exc).__name__}: {exc})"
        ) from None
    if file_format not in ("CSV", "PARQUET"):
        raise ManifestError(
            f"{source}: inventory data files in {file_format or 'no'} format; s3cse reads "
            "CSV and Parquet inventories (ORC: configure the inventory for CSV or Parquet)"
        )
    if file_format == "CSV" and ("Key" not in schema or "Bucket" not in schema):
        raise ManifestError(f"{source}: fileSchema {schema!r} has no Bucket and Key columns")
    if not bucket:
        raise ManifestError(
            f"{source}: no sourceBucket: an inventory names the bucket it lists, and its rows "
            "are held to it"
        )
    for name in files:
        data = read(name)
        rows = _csv_rows(data, schema, name) if file_format == "CSV" else _parquet_rows(data, name)
        for row in rows:
            if str(row.get("IsDeleteMarker", "false")).lower() == "true":
                continue
            if str(row.get("IsLatest", "true")).lower() == "false":
                continue
            key = row.get("Key")
            if not key:
                continue
            row_bucket = row.get("Bucket") or bucket
            if bucket and row_bucket != bucket:
                raise ManifestError(
                    f"{name}: a row names bucket {row_bucket!r}, where the inventory is of "
                    f"{bucket!r}: refused (a manifest must not steer a job to other buckets)"
                )
            if selected(key, filters):
                yield Task(row_bucket, key, row.get("VersionId") or None)


def scoped(
    tasks: Iterable[Task],
    bucket: str,
    prefix: str,
    source: str,
    filters: Sequence[tuple[str, str]] = (),
) -> Iterator[Task]:
    """The tasks of a manifest held to the job's target: those under ``prefix`` (others
    are left out), and a ManifestError for one in another bucket (whoever can write the
    manifest must not steer a job to buckets it was not run on). ``filters`` apply to
    the names relative to ``prefix``, as they do to a listing."""
    for task in tasks:
        if task.bucket != bucket:
            raise ManifestError(
                f"{source}: {task} is not in s3://{bucket}, the bucket this job was given: "
                "refused, nothing of the manifest was run (one job per bucket; split the "
                "manifest by bucket)"
            )
        if task.key.startswith(prefix) and selected(task.key[len(prefix) :], filters):
            yield task


def _csv_reader(lines: Iterable[str], source: str) -> Iterator[tuple[int, list[str]]]:
    """(row number, fields) of CSV text; what the csv module cannot read is a
    ManifestError naming the row."""
    reader = csv.reader(lines)
    number = 0
    while True:
        number += 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise ManifestError(f"{source}, row {number}: not CSV ({exc})") from None
        yield number, row


def _csv_rows(data: bytes, schema: list[str], name: str) -> Iterator[dict[str, str]]:
    raw: Any = io.BytesIO(data)
    if data[:2] == b"\x1f\x8b":  # S3 writes CSV inventories gzipped (.csv.gz)
        raw = gzip.GzipFile(fileobj=raw)  # read as it goes: a gzip bomb never unpacks whole
    text = io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline="")
    try:
        yield from _csv_fields(text, schema, name)
    except GeneratorExit:  # closed early (even at exit, when modules are torn down)
        raise
    except (OSError, EOFError, zlib.error) as exc:
        raise ManifestError(f"{name}: a corrupt gzip file ({exc})") from None


def _csv_fields(text: Any, schema: list[str], name: str) -> Iterator[dict[str, str]]:
    for number, row in _csv_reader(text, name):
        if not row:
            continue
        if len(row) != len(schema):
            raise ManifestError(
                f"{name}, row {number}: {len(row)} fields where the schema has {len(schema)}"
            )
        fields = dict(zip(schema, row, strict=True))
        fields["Key"] = urllib.parse.unquote_plus(fields["Key"])  # URL-encoded in CSV
        yield fields


def _parquet_rows(data: bytes, name: str) -> Iterator[dict[str, str]]:
    try:
        import pyarrow.parquet as pq  # type: ignore[import-untyped]
    except ImportError:  # pragma: no cover - pyarrow is in the test and bench extras
        raise ConfigurationError(
            f"{name}: reading a Parquet inventory needs pyarrow (pip install pyarrow)"
        ) from None
    try:
        table = pq.read_table(io.BytesIO(data))
    except Exception as exc:  # pyarrow raises its own ArrowInvalid and OSError
        raise ManifestError(f"{name}: not a Parquet file ({exc})") from None
    columns = {c.lower(): c for c in table.column_names}
    wanted = {"bucket": "Bucket", "key": "Key", "version_id": "VersionId"}
    wanted.update(is_latest="IsLatest", is_delete_marker="IsDeleteMarker")
    for batch in table.to_batches():
        values = batch.to_pydict()
        count = batch.num_rows
        for i in range(count):
            row = {}
            for parquet_name, ours in wanted.items():
                column = columns.get(parquet_name) or columns.get(ours.lower())
                if column is not None and values[column][i] is not None:
                    row[ours] = str(values[column][i])
            yield row
