"""Key rotation of stored objects: the data key re-wrapped under a new master key, the
content untouched (a new instruction file, or the metadata rewritten in place)."""

from __future__ import annotations

import concurrent.futures
import contextvars
import dataclasses
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from botocore.exceptions import ClientError

from . import _s3args
from ._objects import ObjectStore
from .core import metadata as md
from .core.envelope import MaterialsSource, can_unwrap, rewrap
from .errors import NotEncryptedError, S3CSEError, located

__all__ = ["ReencryptSummary", "reencrypt", "reencrypt_prefix"]

log = logging.getLogger(__name__)

_KEPT_ON_REWRITE = (
    "ContentType",
    "CacheControl",
    "ContentDisposition",
    "ContentEncoding",
    "ContentLanguage",
    "Expires",
    "WebsiteRedirectLocation",
)


@dataclasses.dataclass
class ReencryptSummary:
    """What :meth:`EncryptionClient.reencrypt_prefix` did."""

    done: list[str] = dataclasses.field(default_factory=list)
    skipped: list[str] = dataclasses.field(default_factory=list)
    not_encrypted: list[str] = dataclasses.field(default_factory=list)
    failed: list[tuple[str, str]] = dataclasses.field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"{len(self.done)} re-encrypted, {len(self.skipped)} already under the new key, "
            f"{len(self.not_encrypted)} not encrypted, {len(self.failed)} failed"
        )


def reencrypt(
    store: ObjectStore,
    bucket: str,
    key: str,
    new_keyring: MaterialsSource,
    instruction_file_suffix: str | None = None,
    *,
    encryption_context: Mapping[str, str] | None = None,
    new_encryption_context: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """Re-wrap one object's data key under ``new_keyring``; see
    :meth:`EncryptionClient.reencrypt`. Returns ``"rotated"``, ``"skipped"`` or
    ``"instruction-file"`` (the key names an instruction file, left alone)."""
    extra = dict(extra or {})
    head = store.s3.head_object(
        Bucket=bucket, Key=key, **{k: extra[k] for k in _s3args.SSE_C_ARGS if k in extra}
    )
    metadata = {k.lower(): v for k, v in head.get("Metadata", {}).items()}
    if "x-amz-crypto-instr-file" in metadata or (
        # Some stores (SeaweedFS) drop the empty marker value; the name and the
        # absence of crypto metadata still tell an instruction file.
        key.endswith(md.INSTRUCTION_FILE_SUFFIX) and not md.has_crypto_metadata(metadata)
    ):
        return "instruction-file"
    with located(bucket, key):
        content = store.content_metadata(bucket, key, metadata, extra)
        new_file = instruction_file_suffix not in (None, md.INSTRUCTION_FILE_SUFFIX)
        if not new_file and can_unwrap(
            new_keyring, content, store.config, encryption_context=new_encryption_context
        ):
            return "skipped"
        result = rewrap(
            store.cmm,
            new_keyring,
            content,
            store.config,
            encryption_context=encryption_context,
            new_encryption_context=new_encryption_context,
        )
    log.debug(
        "re-encrypt s3://%s/%s: %s -> %s",
        bucket,
        key,
        content.wrap_algorithm.value,
        result.content_metadata.wrap_algorithm.value,
    )
    if result.instruction_file is not None:
        suffix = instruction_file_suffix or md.INSTRUCTION_FILE_SUFFIX
        store.put_instruction_file(bucket, key, result.instruction_file, {}, suffix)
        return "rotated"
    user = {k: v for k, v in metadata.items() if k not in md.crypto_metadata_keys()}
    copy_args: dict[str, Any] = {
        "Bucket": bucket,
        "Key": key,
        "CopySource": {"Bucket": bucket, "Key": key},
        "MetadataDirective": "REPLACE",
        "Metadata": {**user, **result.metadata},
        "CopySourceIfMatch": head["ETag"],
    }
    for name in _KEPT_ON_REWRITE:
        if head.get(name):
            copy_args[name] = head[name]  # type: ignore[literal-required]
    if head.get("ServerSideEncryption") and not head.get("SSECustomerAlgorithm"):
        copy_args["ServerSideEncryption"] = head["ServerSideEncryption"]
        if head.get("SSEKMSKeyId"):
            copy_args["SSEKMSKeyId"] = head["SSEKMSKeyId"]
        if head.get("BucketKeyEnabled"):
            copy_args["BucketKeyEnabled"] = True
    if head.get("StorageClass"):
        copy_args["StorageClass"] = head["StorageClass"]
    for name in _s3args.SSE_C_ARGS:
        if name in extra:
            copy_args[name] = extra[name]
            copy_args[f"CopySource{name}"] = extra[name]
    store.s3.copy_object(**copy_args)
    return "rotated"


def _list_keys(store: ObjectStore, bucket: str, prefix: str) -> Iterable[str]:
    paginator = store.s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            yield item["Key"]


def reencrypt_prefix(
    store: ObjectStore,
    bucket: str,
    prefix: str,
    new_keyring: MaterialsSource,
    *,
    max_workers: int = 8,
    progress: Callable[[str, str], Any] | None = None,
    encryption_context: Mapping[str, str] | None = None,
    new_encryption_context: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> ReencryptSummary:
    """Rotate every object under ``prefix`` concurrently; see
    :meth:`EncryptionClient.reencrypt_prefix`."""
    summary = ReencryptSummary()
    lock = threading.Lock()

    def one(key: str) -> None:
        try:
            status = reencrypt(
                store,
                bucket,
                key,
                new_keyring,
                encryption_context=encryption_context,
                new_encryption_context=new_encryption_context,
                extra=extra,
            )
        except NotEncryptedError:
            status = "not-encrypted"
            with lock:
                summary.not_encrypted.append(key)
        except (S3CSEError, ClientError) as exc:
            status = "failed"
            with lock:
                summary.failed.append((key, str(exc)))
        else:
            with lock:
                if status == "rotated":
                    summary.done.append(key)
                elif status == "skipped":
                    summary.skipped.append(key)
        if progress is not None and status != "instruction-file":
            progress(key, status)

    with concurrent.futures.ThreadPoolExecutor(max_workers=max_workers) as pool:
        pending: set[concurrent.futures.Future[None]] = set()
        for key in _list_keys(store, bucket, prefix):
            if len(pending) >= max_workers * 4:
                done, pending = concurrent.futures.wait(
                    pending, return_when=concurrent.futures.FIRST_COMPLETED
                )
                for future in done:
                    future.result()
            pending.add(pool.submit(contextvars.copy_context().run, one, key))
        for future in concurrent.futures.as_completed(pending):
            future.result()
    return summary
