"""fsspec: the ``s3cse://`` filesystem (pandas, pyarrow, Dask, DuckDB, xarray...).

Built on s3fs for listing, metadata and transport; reads and writes go through an
:class:`s3cse.EncryptionClient`, so they are encrypted exactly like everything else.

    pd.read_csv("s3cse://bucket/t.csv",
                storage_options={"aes_key_file": "master.key", "endpoint_url": "http://..."})

``fs.open(path, "rb")`` first fetches the ciphertext into a local spool while checking
its tag, then serves seeks and reads from the verified spool (plaintext never touches
disk). ``fs.open(path, "wb")`` encrypts while writing: a multipart upload once the
data outgrows one part, a single PUT below that.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import io
import json
import logging
import os
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import s3fs
from botocore.exceptions import BotoCoreError, ClientError

from . import transfer
from ._body import ReadOnlyStream
from ._download import VerifiedCiphertext, verified_spool
from ._keyfiles import KeyOptions, build_keyrings, parse_json_map
from ._upload import MultipartUpload, put_object
from .client import EncryptionClient
from .core import metadata as md
from .errors import (
    ConfigurationError,
    NotEncryptedError,
    S3CSEError,
    UnsafeOperationError,
    located,
)

__all__ = ["S3CSEFileSystem"]

log = logging.getLogger(__name__)

_MiB = 1024 * 1024
_PART = 8 * _MiB
#: HEADs in flight at once while a detailed listing learns plaintext sizes.
_LISTING_HEADS = 32
#: Listing entries given tasks at once.
_LISTING_BATCH = 1000


def _path_version(path: str) -> str | None:
    """The ``?versionId=`` of a path, whatever the filesystem's version_aware says."""
    _, found, version = str(path).partition("?versionId=")
    return version if found and version else None


class _Sizes:
    """Plaintext sizes learnt from HEADs, by (bucket, key, ETag); the newest ``limit``."""

    def __init__(self, limit: int = 100_000):
        self._limit = limit
        self._entries: collections.OrderedDict[tuple[str, str, str], tuple[bool, int | None]] = (
            collections.OrderedDict()
        )
        self._lock = threading.Lock()

    def get(self, name: tuple[str, str, str]) -> tuple[bool, int | None] | None:
        if not name[2]:
            return None
        with self._lock:
            return self._entries.get(name)

    def put(self, name: tuple[str, str, str], value: tuple[bool, int | None]) -> None:
        if not name[2]:
            return
        with self._lock:
            self._entries[name] = value
            self._entries.move_to_end(name)
            while len(self._entries) > self._limit:
                self._entries.popitem(last=False)


def _names(value: Sequence[str] | str) -> list[str]:
    """A list option that may come as one comma-separated string (URL query, JSON)."""
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return list(value)


class S3CSEFileSystem(s3fs.S3FileSystem):  # type: ignore[misc]
    """An fsspec filesystem of client-side encrypted S3 objects (protocol ``s3cse``)."""

    protocol = ("s3cse",)

    def __init__(
        self,
        *args: Any,
        kms_key_id: str | None = None,
        aes_key_file: str | None = None,
        rsa_private_key_file: str | None = None,
        rsa_public_key_file: str | None = None,
        material_description: Mapping[str, str] | str | None = None,
        encryption_context: Mapping[str, str] | str | None = None,
        commitment_policy: str = "REQUIRE_ENCRYPT_REQUIRE_DECRYPT",
        endpoint_url: str | None = None,
        instruction_file: bool = False,
        kms_discovery: bool = False,
        kms_discovery_accounts: Sequence[str] | str = (),
        kms_discovery_key_arns: Sequence[str] | str = (),
        verified_cache_bytes: int = 512 * _MiB,
        **kwargs: Any,
    ):
        super().__init__(*args, endpoint_url=endpoint_url, **kwargs)
        self._verified = _VerifiedObjects(int(verified_cache_bytes))
        self._sizes = _Sizes()
        self.encryption_context = parse_json_map(encryption_context, "encryption_context")
        import boto3
        from botocore.config import Config

        session = boto3.Session(
            aws_access_key_id=kwargs.get("key"),
            aws_secret_access_key=kwargs.get("secret"),
            aws_session_token=kwargs.get("token"),
            profile_name=kwargs.get("profile"),
            region_name=(kwargs.get("client_kwargs") or {}).get("region_name"),
        )
        s3 = session.client(
            "s3",
            endpoint_url=endpoint_url,
            config=Config(
                s3={"addressing_style": "path"} if endpoint_url else {}, max_pool_connections=32
            ),
        )
        options = KeyOptions(
            kms_key_ids=[kms_key_id] if kms_key_id else [],
            aes_keys=[aes_key_file] if aes_key_file else [],
            rsa_private_keys=[rsa_private_key_file] if rsa_private_key_file else [],
            rsa_public_keys=[rsa_public_key_file] if rsa_public_key_file else [],
            matdesc=material_description,
            matdesc_option="material_description",
            kms_discovery=kms_discovery,
            kms_discovery_accounts=_names(kms_discovery_accounts),
            kms_discovery_key_arns=_names(kms_discovery_key_arns),
        )
        if options.uses_kms:
            options.kms_client = session.client("kms")
        keyring = build_keyrings(options)
        if keyring is None:
            raise ConfigurationError(
                "s3cse:// needs a key: give kms_key_id, aes_key_file, rsa_private_key_file or "
                "rsa_public_key_file, or kms_discovery=True to read objects under any KMS key "
                "you may use (with kms_discovery_accounts=[your account id] to accept only "
                "your own keys)"
            )
        self.encryption = EncryptionClient(
            s3,
            keyring=keyring,
            commitment_policy=commitment_policy,
            instruction_file_put=instruction_file,
        )
        self._store = self.encryption._store

    def invalidate_cache(self, path: str | None = None) -> None:
        super().invalidate_cache(path)
        if path is not None and hasattr(self, "_verified"):
            bucket, key, _ = self.split_path(path)
            self._verified.forget(bucket, key)

    def _extra(self) -> dict[str, Any]:
        return {"EncryptionContext": self.encryption_context} if self.encryption_context else {}

    # ------------------------------------------------------------ listing

    @staticmethod
    def _visible(entry: Any) -> bool:
        name = entry["name"] if isinstance(entry, dict) else entry
        return not str(name).endswith(md.INSTRUCTION_FILE_SUFFIX)

    async def _ls(self, path: str, detail: bool = False, *args: Any, **kwargs: Any) -> Any:
        entries = await super()._ls(path, detail, *args, **kwargs)
        visible = [e for e in entries if self._visible(e)]
        if detail:
            return await self._listed_sizes(visible)
        return visible

    async def _find(self, path: str, *args: Any, detail: bool = False, **kwargs: Any) -> Any:
        found = await super()._find(path, *args, detail=detail, **kwargs)
        if isinstance(found, dict):
            names = [k for k in found if self._visible(k)]
            sized = await self._listed_sizes([found[k] for k in names])
            return dict(zip(names, sized, strict=True))
        return [f for f in found if self._visible(f)]

    def find(self, path: str, *args: Any, **kwargs: Any) -> Any:
        # s3fs binds its own sync find; route it through the filtering _find above.
        from fsspec.asyn import sync

        return sync(self.loop, self._find, path, *args, **kwargs)

    async def _info(
        self, path: str, *args: Any, version_id: str | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        bucket, key, version = self._split(path, version_id)
        head = None
        if key:
            # One HEAD gives both s3fs's fields and the crypto metadata (s3fs's own HEAD
            # drops the user metadata); directories and misses take s3fs's way.
            with contextlib.suppress(FileNotFoundError):
                head = await self._head(bucket, key, version)
        if head is None:
            if version is not None:
                raise FileNotFoundError(path)
            found: dict[str, Any] = await super()._info(path, *args, **kwargs)
            return found
        info: dict[str, Any] = {
            "ETag": head.get("ETag", ""),
            "LastModified": head.get("LastModified", ""),
            "size": head["ContentLength"],
            "name": f"{bucket}/{key}",
            "type": "file",
            "StorageClass": head.get("StorageClass", "STANDARD"),
            "VersionId": head.get("VersionId"),
            "ContentType": head.get("ContentType"),
        }
        return await self._with_plaintext_size(info, bucket, key, head)

    async def _head(self, bucket: str, key: str, version: str | None) -> dict[str, Any]:
        head: dict[str, Any] = await self._call_s3(
            "head_object",
            self.kwargs,
            Bucket=bucket,
            Key=key,
            **({"VersionId": version} if version else {}),
        )
        return head

    async def _with_plaintext_size(
        self, entry: dict[str, Any], bucket: str, key: str, head: dict[str, Any]
    ) -> dict[str, Any]:
        """``entry`` with the plaintext ``size`` (and ``encrypted``, ``stored_size``) when
        the format tells it without a key; plaintext objects keep theirs, and so do objects
        whose crypto metadata cannot be parsed (``size_error`` says why)."""
        stored = int(head["ContentLength"])
        cached = self._sizes.get((bucket, key, str(head.get("ETag") or "")))
        if cached is None:
            try:
                content = await asyncio.to_thread(
                    self._store.content_metadata, bucket, key, head.get("Metadata", {}), {}
                )
            except NotEncryptedError:
                cached = (False, stored)
            except S3CSEError as exc:  # planted or damaged metadata: reading it will say so
                return dict(entry, size_error=str(exc))
            else:
                cached = (True, content.plaintext_length(stored))
            self._sizes.put((bucket, key, str(head.get("ETag") or "")), cached)
        encrypted, size = cached
        entry = dict(entry)
        if encrypted:
            entry["encrypted"] = True
            entry["stored_size"] = stored
            if size is None:  # a legacy CBC object without its length field
                entry["size_known"] = False  # size stays the stored (padded) size
            else:
                entry["size"] = size
        return entry

    async def _listed_sizes(self, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Listing entries with plaintext sizes: one HEAD per file not seen before (same
        ETag), at most ``_LISTING_HEADS`` at once. An object whose metadata cannot be read
        keeps its stored size (and ``size_error`` says why): a listing never fails on
        one object."""
        limit = asyncio.Semaphore(_LISTING_HEADS)

        async def one(entry: dict[str, Any]) -> dict[str, Any]:
            if entry.get("type") != "file":
                return entry
            bucket, key, _ = self.split_path(entry["name"])
            etag = str(entry.get("ETag") or "")
            cached = self._sizes.get((bucket, key, etag)) if etag else None
            if cached is not None:
                head = {"ContentLength": entry.get("Size", entry["size"]), "ETag": etag}
                return await self._with_plaintext_size(entry, bucket, key, head)
            async with limit:
                try:
                    head = await self._head(bucket, key, entry.get("VersionId"))
                    return await self._with_plaintext_size(entry, bucket, key, head)
                except (S3CSEError, OSError, ClientError, BotoCoreError) as exc:
                    log.debug("size of s3://%s/%s: %s", bucket, key, exc)
                    return dict(entry, size_error=str(exc))

        sized: list[dict[str, Any]] = []
        for start in range(0, len(entries), _LISTING_BATCH):  # bounded: tasks, not just HEADs
            batch = entries[start : start + _LISTING_BATCH]
            sized.extend(await asyncio.gather(*(one(e) for e in batch)))
        return sized

    # ------------------------------------------------------------ reading and writing

    def _open(
        self,
        path: str,
        mode: str = "rb",
        block_size: Any = None,
        autocommit: bool = True,
        cache_options: Any = None,
        version_id: str | None = None,
        **kwargs: Any,
    ) -> Any:
        bucket, key, version = self._split(path, version_id)
        if "r" in mode:
            return _VerifiedReadFile(self, bucket, key, version)
        if "w" in mode:
            if version is not None:
                raise ValueError("a version of an object cannot be written; drop the versionId")
            return _EncryptingWriteFile(self, bucket, key, autocommit=autocommit)
        raise ValueError(f"mode {mode!r} is not supported on s3cse:// (use 'rb' or 'wb')")

    def _split(self, path: str, version_id: str | None = None) -> tuple[str, str, str | None]:
        """(bucket, key, version id) of ``path``: a ``?versionId=`` in it (or ``version_id``)
        is honoured with ``version_aware=True`` and refused without (never ignored)."""
        bucket, key, version = self.split_path(path)
        named = version_id or version or _path_version(path)
        if named and not self.version_aware:
            raise ValueError(
                f"{path!r} names a version, but the filesystem is not version aware: open "
                "it with version_aware=True to read versions"
            )
        if version and version_id and version != version_id:
            raise ValueError(f"{path!r} names version {version!r}, version_id {version_id!r}")
        return bucket, key, named or None

    # fsspec calls the async methods below (put, get, cat, pipe, cp, rm, touch all end up
    # here); each one that moves content goes through the EncryptionClient, in a thread.

    def _cat_sync(self, path: str, start: int | None, end: int | None) -> bytes:
        with self._open(path, "rb") as f:
            if start:
                f.seek(start if start >= 0 else max(0, f.size + start))
            if end is None:
                return bytes(f.read())
            stop = end if end >= 0 else f.size + end
            return bytes(f.read(max(0, stop - f.tell())))

    async def _cat_file(
        self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any
    ) -> bytes:
        return await asyncio.to_thread(self._cat_sync, path, start, end)

    def _writable(self, path: str) -> tuple[str, str]:
        bucket, key, version = self._split(path)
        if version is not None:
            raise ValueError(f"{path!r}: a version of an object cannot be written or deleted")
        return bucket, key

    async def _pipe_file(self, path: str, data: bytes, **kwargs: Any) -> None:
        bucket, key = self._writable(path)
        await asyncio.to_thread(
            self.encryption.put_object, Bucket=bucket, Key=key, Body=data, **self._extra()
        )
        self.invalidate_cache(path)

    async def _put_file(self, lpath: str, rpath: str, callback: Any = None, **kwargs: Any) -> None:
        if os.path.isdir(lpath):
            return
        bucket, key = self._writable(rpath)
        await asyncio.to_thread(
            self.encryption.upload_file, lpath, bucket, key, ExtraArgs=self._extra() or None
        )
        self.invalidate_cache(rpath)

    async def _get_file(self, rpath: str, lpath: str, callback: Any = None, **kwargs: Any) -> None:
        if os.path.isdir(lpath):
            return
        bucket, key, version = self._split(rpath)
        extra = {**self._extra(), **({"VersionId": version} if version else {})}
        await asyncio.to_thread(
            self.encryption.download_file, bucket, key, lpath, ExtraArgs=extra or None
        )

    async def _rm_file(self, path: str, **kwargs: Any) -> None:
        bucket, key = self._writable(path)
        await asyncio.to_thread(self.encryption.delete_object, Bucket=bucket, Key=key)
        self.invalidate_cache(path)

    async def _cp_file(self, path1: str, path2: str, **kwargs: Any) -> None:
        b1, k1, v1 = self._split(path1)
        b2, k2 = self._writable(path2)
        source = {"Bucket": b1, "Key": k1, **({"VersionId": v1} if v1 else {})}
        await asyncio.to_thread(self.encryption.copy_object, Bucket=b2, Key=k2, CopySource=source)
        self.invalidate_cache(path2)

    async def _rm(self, path: Any, recursive: bool = False, **kwargs: Any) -> Any:
        # s3fs deletes in bulk on its own client: take the instruction files along.
        paths = await self._expand_path(path, recursive=recursive)
        result = await super()._rm(path, recursive=recursive, **kwargs)
        siblings = [p + md.INSTRUCTION_FILE_SUFFIX for p in paths if self._visible(p)]
        if siblings:
            await super()._rm(siblings, **kwargs)
        return result

    async def _touch(self, path: str, truncate: bool = True, **kwargs: Any) -> None:
        if self._split(path)[2]:
            raise ValueError("S3 does not support touching existing versions of files")
        if not truncate and await self._exists(path):  # as s3fs: never empty an existing one
            raise ValueError("S3 does not support touching existent files")
        await self._pipe_file(path, b"")

    def touch(self, path: str, truncate: bool = True, **kwargs: Any) -> None:
        from fsspec.asyn import sync

        sync(self.loop, self._touch, path, truncate, **kwargs)

    # s3fs operations that would write bytes or metadata around the encryption:
    def _refuse(self, name: str, alternative: str) -> Any:
        raise UnsafeOperationError(
            f"{name} is not available on s3cse:// (it would bypass the encryption); {alternative}"
        )

    def merge(self, *args: Any, **kwargs: Any) -> None:
        self._refuse("merge", "concatenate the plaintext and write it with open(path, 'wb')")

    async def _merge(self, *args: Any, **kwargs: Any) -> None:
        self._refuse("merge", "concatenate the plaintext and write it with open(path, 'wb')")

    def setxattr(self, *args: Any, **kwargs: Any) -> None:
        self._refuse(
            "setxattr", "use EncryptionClient.copy_object with MetadataDirective='REPLACE'"
        )

    async def _setxattr(self, *args: Any, **kwargs: Any) -> None:
        self._refuse(
            "setxattr", "use EncryptionClient.copy_object with MetadataDirective='REPLACE'"
        )

    async def open_async(self, *args: Any, **kwargs: Any) -> Any:
        self._refuse("open_async", "use open(), or s3cse.aio.AsyncEncryptionClient")


class _VerifiedObjects:
    """The verified ciphertext of objects read recently, by bucket, key and ETag.

    Readers often open one object several times in a row (pyarrow: once for the footer,
    once for the columns); each open HEADs the object, and when its ETag is the one
    verified before, the same local spool serves it, with no second download, tag check
    or key unwrap. Spools no open file uses are kept up to ``budget`` bytes (the oldest
    go first); 0 keeps none."""

    def __init__(self, budget: int):
        self._budget = budget
        self._entries: collections.OrderedDict[tuple[str, ...], VerifiedCiphertext] = (
            collections.OrderedDict()
        )
        self._users: dict[int, int] = {}
        # Re-entrant: a reader's finalizer may run (cyclic GC) while this thread holds it.
        self._lock = threading.RLock()

    def open(
        self, fs: S3CSEFileSystem, bucket: str, key: str, version: str | None = None
    ) -> VerifiedCiphertext:
        store = fs._store
        extra = {"VersionId": version} if version else {}
        head = store.head(bucket, key, extra)
        etag = str(head.get("ETag") or "")
        context = json.dumps(fs.encryption_context, sort_keys=True)
        name = (bucket, key, etag, str(head.get("VersionId") or ""), context)
        with self._lock:
            cached = self._entries.get(name) if etag else None
            if cached is not None:
                self._entries.move_to_end(name)
                self._users[id(cached)] = self._users.get(id(cached), 0) + 1
                return cached
        content = store.content_metadata(bucket, key, head.get("Metadata", {}), {})
        decryptor = store.begin_decryptor(bucket, key, content, fs.encryption_context or None)
        stored = int(head["ContentLength"])
        with located(bucket, key):
            if decryptor.suite.cipher != "GCM":
                raise NotEncryptedError(
                    "s3cse:// reads AES-GCM (V2/V3) objects; read legacy objects with the client"
                )
            chunks = transfer.ciphertext_chunks(
                store, bucket, key, stored, etag or None, extra, transfer.TransferSettings(None)
            )
            with contextlib.closing(chunks):
                verified = VerifiedCiphertext(
                    verified_spool(chunks, stored, decryptor), decryptor, stored
                )
        with self._lock:
            self._users[id(verified)] = 1
            if etag and self._budget > 0:
                previous = self._entries.pop(name, None)
                self._entries[name] = verified
                if previous is not None:
                    self._drop_unused(previous)
        return verified

    def done(self, verified: VerifiedCiphertext) -> None:
        """One reader of ``verified`` closed; release what the budget does not keep."""
        with self._lock:
            self._users[id(verified)] -= 1
            if verified not in self._entries.values():
                self._drop_unused(verified)
            total = sum(v.stored_length for v in self._entries.values())
            for name, entry in list(self._entries.items()):
                if total <= self._budget:
                    break
                if not self._users.get(id(entry)):
                    del self._entries[name]
                    total -= entry.stored_length
                    self._drop_unused(entry)

    def forget(self, bucket: str, key: str) -> None:
        """Drop what is kept of ``bucket/key`` (it was written or deleted)."""
        with self._lock:
            for name in [n for n in self._entries if n[:2] == (bucket, key)]:
                self._drop_unused(self._entries.pop(name))

    def _drop_unused(self, verified: VerifiedCiphertext) -> None:
        if not self._users.get(id(verified)):
            self._users.pop(id(verified), None)
            verified.release()


class _VerifiedReadFile(ReadOnlyStream):
    """A seekable file of verified plaintext over a local spool of the ciphertext.

    The ciphertext is fetched as ``download_file`` fetches it (concurrent ranged GETs
    pinned to the object's ETag) and its tag checked before the file opens."""

    def __init__(self, fs: S3CSEFileSystem, bucket: str, key: str, version: str | None = None):
        super().__init__()
        self.path = f"{bucket}/{key}" + (f"?versionId={version}" if version else "")
        self._objects = fs._verified
        self._verified = self._objects.open(fs, bucket, key, version)
        self.size = self._verified.size
        self._position = 0

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence not in (io.SEEK_SET, io.SEEK_CUR, io.SEEK_END):
            raise ValueError(f"invalid whence ({whence}, should be 0, 1 or 2)")
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        self._position = base + offset
        return self._position

    def read(self, size: int | None = -1) -> bytes:
        if self.closed:
            raise ValueError("read of closed file")
        if size is None or size < 0:
            size = self.size - self._position
        plaintext = self._verified.read(self._position, size)
        self._position += len(plaintext)
        return plaintext

    def close(self) -> None:
        if not self.closed and hasattr(self, "_verified"):
            self._objects.done(self._verified)
        super().close()


class _EncryptingWriteFile(io.RawIOBase):
    """Encrypts while writing: parts of 8 MiB through the encrypted multipart driver, or
    one PutObject for a file that stays below one part.

    Only a clean close stores the object. A close while an exception raised after the
    file was opened is propagating (the ``with`` block of a text-mode, compressed or
    ``fsspec.open`` wrapper failed, and the wrapper closes this file on its way out)
    stores nothing, as ``discard()`` does. With ``autocommit=False`` (inside
    ``fs.transaction``) close prepares the object and ``commit()`` stores it."""

    def __init__(self, fs: S3CSEFileSystem, bucket: str, key: str, autocommit: bool = True):
        super().__init__()
        self.fs, self.bucket, self.key = fs, bucket, key
        self.path = f"{bucket}/{key}"
        self.autocommit = autocommit
        self._buffer = bytearray()
        self._upload: MultipartUpload | None = None
        self._parts: list[dict[str, Any]] = []
        self._prepared = False  # closed with autocommit=False: commit() stores it
        self._discarded = False
        # An exception being handled where the file is opened is not one of its block
        # (unless raised again: then it has travelled further, with a longer traceback).
        handled = sys.exc_info()[1]
        self._opened_while = (handled, handled.__traceback__) if handled is not None else None

    def writable(self) -> bool:
        return True

    def __del__(self) -> None:
        # A file nobody closed is not a finished one: never commit it from a finalizer (a
        # truncated object would carry a valid tag, and the upload needs network and
        # threads). What was buffered is dropped; a started multipart upload is left to
        # the bucket's AbortIncompleteMultipartUpload rule.
        if not self.closed:
            self._buffer = bytearray()
            io.RawIOBase.close(self)

    def __exit__(self, kind: object, value: object, traceback: object) -> None:
        if kind is not None:  # the with block failed: store nothing
            self.discard()
        else:
            self.close()

    def discard(self) -> None:
        """Abort the upload (if one started) and close without storing anything."""
        if self._discarded or (self.closed and not self._prepared):
            return
        self._discarded, self._prepared = True, False
        try:
            if self._upload is not None and self._upload.completed is None:
                self._upload.abort()
        finally:
            self._buffer = bytearray()
            io.RawIOBase.close(self)

    def write(self, data: Any) -> int:
        if self.closed:
            raise ValueError("write to closed file")
        view = memoryview(data).cast("B")
        self._buffer += view
        while len(self._buffer) > _PART:  # keep one part back: the last part carries the tag
            self._send(bytes(self._buffer[:_PART]), last=False)
            del self._buffer[:_PART]
        return len(view)

    def _send(self, data: Any, *, last: bool) -> None:
        if self._upload is None:
            self._upload, _ = MultipartUpload.create(
                self.fs._store, self.bucket, self.key, self.fs._extra()
            )
        number = len(self._parts) + 1
        ciphertext = self._upload.encrypt_part(number, data, last=last)
        self._parts.append(self._upload.send_part(number, ciphertext))

    def close(self) -> None:
        if self.closed:
            return
        failing = sys.exc_info()[1]
        opened_while, self._opened_while = self._opened_while, None
        if failing is not None and opened_while != (failing, failing.__traceback__):
            log.warning(
                "s3cse://%s: closed while %s propagates, so nothing is stored (a file is "
                "stored only by a close outside exception handling, or the end of its with "
                "block without an error)",
                self.path,
                type(failing).__name__,
            )
            self.discard()
            return
        try:
            if self._upload is not None:
                self._send(memoryview(self._buffer), last=True)
                self._buffer = bytearray()
            if self.autocommit:
                self._store()
            else:
                self._prepared = True
        except BaseException:
            self.discard()
            raise
        finally:
            super().close()

    def commit(self) -> None:
        """Store the object prepared by close() (``autocommit=False``, transactions)."""
        if not self.closed:
            self.close()
        if not self._prepared:
            return  # discarded, or stored already
        self._prepared = False
        try:
            self._store()
        except BaseException:
            self._prepared = True
            self.discard()
            raise

    def _store(self) -> None:
        if self._upload is None:
            put_object(
                self.fs._store,
                {
                    "Bucket": self.bucket,
                    "Key": self.key,
                    "Body": bytes(self._buffer),
                    **self.fs._extra(),
                },
            )
            self._buffer = bytearray()
        else:
            self._upload.complete(self._parts)
        self.fs.invalidate_cache(self.path)
