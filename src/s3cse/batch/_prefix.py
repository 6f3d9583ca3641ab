"""Key rotation of every object under a prefix, as :meth:`EncryptionClient.reencrypt_prefix`
and ``s3cse rotate`` offer it: a batch rewrap on the default engine, its records
summed up in the shape those two have always returned."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from .._objects import ObjectStore
from ..core.envelope import MaterialsSource
from ._job import run_tasks
from ._operations import Record, Worker
from ._tasks import from_prefix

__all__ = ["ReencryptSummary", "rewrap_prefix"]


@dataclasses.dataclass
class ReencryptSummary:
    """What :meth:`EncryptionClient.reencrypt_prefix` did: every listed key is in exactly
    one of the lists (``verified`` says which of them had their content authenticated)."""

    done: list[str] = dataclasses.field(default_factory=list)
    skipped: list[str] = dataclasses.field(default_factory=list)
    not_encrypted: list[str] = dataclasses.field(default_factory=list)
    instruction_files: list[str] = dataclasses.field(default_factory=list)
    conflicts: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    failed: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    verified: list[str] = dataclasses.field(default_factory=list)

    def __str__(self) -> str:
        text = (
            f"{len(self.done)} re-encrypted, {len(self.skipped)} already under the new key, "
            f"{len(self.not_encrypted)} not encrypted, {len(self.instruction_files)} "
            f"instruction files, {len(self.conflicts)} changed meanwhile (not touched), "
            f"{len(self.failed)} failed"
        )
        if self.verified:
            text += f"; {len(self.verified)} authenticated first"
        return text


#: A rewrap record's outcome, as the prefix rotation has always called it.
_PROGRESS = {
    "rewrapped": "rotated",
    "already-done": "skipped",
    "not-encrypted": "not-encrypted",
    "instruction-file": "instruction-file",
}


def rewrap_prefix(
    store: ObjectStore,
    bucket: str,
    prefix: str,
    new_keyring: MaterialsSource,
    *,
    workers: int = 8,
    progress: Callable[[str, str], Any] | None = None,
    encryption_context: Mapping[str, str] | None = None,
    new_encryption_context: Mapping[str, str] | None = None,
    request_args: Mapping[str, Any] | None = None,
    verify: bool = False,
    dryrun: bool = False,
) -> ReencryptSummary:
    """Re-wrap every object under ``prefix`` from the keys and settings of ``store``
    to ``new_keyring``; see :meth:`EncryptionClient.reencrypt_prefix`. Every listed key
    is in the summary, instruction files included; no one object stops the run."""
    worker = Worker(
        "rewrap",
        store.s3,
        keyring=store.cmm,
        new_keyring=new_keyring,
        encryption_context=encryption_context,
        new_encryption_context=new_encryption_context,
        legacy_wrapping=store.config.enable_legacy_wrapping,
        legacy_unauthenticated=store.config.enable_legacy_unauthenticated_modes,
        commitment_policy=store.config.commitment_policy,
        verify=verify,
        dryrun=dryrun,
        request_args=dict(request_args or {}),
        instruction_file_suffix=store.instruction_file_suffix,
    )
    summary = ReencryptSummary()

    def took(record: Record) -> None:
        # run_tasks calls this from its own thread, one record at a time.
        status = _PROGRESS.get(record.outcome, record.status)
        if record.status == "succeeded":
            summary.done.append(record.key)
        elif record.status == "conflict":
            summary.conflicts.append((record.key, record.message))
        elif record.status in ("failed", "throttled"):
            status = "failed"
            summary.failed.append((record.key, record.message))
        elif record.outcome == "not-encrypted":
            summary.not_encrypted.append(record.key)
        elif record.outcome == "instruction-file":
            summary.instruction_files.append(record.key)
        else:
            summary.skipped.append(record.key)
        if verify and status in ("rotated", "skipped"):
            summary.verified.append(record.key)
        if progress is not None:
            progress(record.key, status)

    tasks = from_prefix(store.s3, bucket, prefix, access=request_args or {}, every_key=True)
    run_tasks(worker, tasks, workers=workers, progress=took)
    return summary
