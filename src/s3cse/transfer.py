"""Big objects: parallel multipart uploads and parallel ranged downloads, bounded memory.

Encryption is one GCM stream, so it runs sequentially in the calling thread, ahead
of the network; the parts it produces are uploaded by a pool of threads. At most
``max_concurrency`` encrypted parts exist at once, so memory is bounded by
``max_concurrency x multipart_chunksize`` whatever the object's size.

Downloads fetch ciphertext with concurrent ranged GETs (pinned to the object's ETag)
and feed it to the decryptor in order; at most ``max_concurrency`` ranges are held.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import contextvars
import functools
import logging
import os
import stat
import tempfile
import threading
from collections.abc import Callable, Generator, Iterator, Mapping
from typing import Any

from botocore.exceptions import ClientError
from s3transfer.utils import S3_RETRYABLE_DOWNLOAD_ERRORS

from . import _s3args
from ._body import readinto_exactly
from ._bridge import cooperate
from ._download import decrypt_to, verified_spool, without_redundant_checksum
from ._objects import ObjectStore, not_encrypted_error
from ._spool import release, spool_chunks
from ._upload import MultipartUpload, plaintext_source, put_object
from .errors import (
    ConfigurationError,
    NotEncryptedError,
    SourceChangedError,
    UnexpectedResponseError,
    located,
)

__all__ = ["TransferSettings", "ciphertext_chunks", "download", "replacing_file", "upload"]

log = logging.getLogger(__name__)

_MiB = 1024 * 1024
#: S3 refuses parts (but the last) below 5 MiB.
_MIN_PART = 5 * _MiB
_MAX_PARTS = 10_000
_RANGE_ATTEMPTS = 5


class TransferSettings:
    """The parts of boto3's ``TransferConfig`` s3cse uses, with boto3's defaults."""

    def __init__(self, config: Any = None):
        self.multipart_threshold = int(getattr(config, "multipart_threshold", 8 * _MiB))
        self.multipart_chunksize = int(getattr(config, "multipart_chunksize", 8 * _MiB))
        self.max_concurrency = max(1, int(getattr(config, "max_concurrency", 10)))
        if getattr(config, "use_threads", True) is False:
            self.max_concurrency = 1
        if self.multipart_threshold < 0 or self.multipart_chunksize <= 0:
            raise ConfigurationError("multipart_threshold and multipart_chunksize must be positive")

    def part_size(self, length: int | None) -> int:
        """Upload part size: the configured one, a multiple of 16, at least 5 MiB, and
        large enough that a known length fits in 10,000 parts."""
        size = max(self.multipart_chunksize, _MIN_PART)
        if length is not None:
            size = max(size, -(-length // _MAX_PARTS))
        return -(-size // 16) * 16


# ---------------------------------------------------------------- upload


def _plaintext_parts(
    source: Any, part_size: int, length: int | None
) -> Iterator[tuple[int, memoryview, bool]]:
    """Yield (part number, plaintext, is_last), each part read into one of two reused
    buffers (each is encrypted before the next but one is read).

    With an unknown length one part is read ahead, to know which is the last."""
    buffers = [
        memoryview(bytearray(part_size if length is None else min(part_size, max(length, 1))))
        for _ in range(2 if length is None else 1)
    ]
    if length is not None:
        count = max(1, -(-length // part_size))
        remaining = length
        for number in range(1, count + 1):
            want = min(part_size, remaining)
            got = readinto_exactly(source, buffers[0][:want])
            if got != want:
                raise SourceChangedError(
                    f"the upload source ended {remaining - got} bytes early: it was truncated "
                    "while being read"
                )
            remaining -= got
            yield number, buffers[0][:got], number == count
        return
    current = buffers[0][: readinto_exactly(source, buffers[0])]
    number = 1
    while True:
        following = buffers[number % 2]
        got = readinto_exactly(source, following) if len(current) == part_size else 0
        last = not got
        yield number, current, last
        if last:
            return
        current, number = following[:got], number + 1


def upload(
    store: ObjectStore,
    source: Any,
    bucket: str,
    key: str,
    *,
    extra_args: Mapping[str, Any] | None,
    callback: Callable[[int], Any] | None,
    config: Any,
) -> None:
    """Encrypt ``source`` (a readable binary file object) and upload it to ``bucket/key``."""
    settings = TransferSettings(config)
    extra = dict(extra_args or {})
    source, length = plaintext_source(source)
    if length is not None and length < settings.multipart_threshold:
        body = _ProgressReader(source, callback) if callback else source
        put_object(store, {"Bucket": bucket, "Key": key, "Body": body, **extra})
        return
    _multipart_upload(store, source, bucket, key, length, extra, callback, settings)


def _multipart_upload(
    store: ObjectStore,
    source: Any,
    bucket: str,
    key: str,
    length: int | None,
    extra: dict[str, Any],
    callback: Callable[[int], Any] | None,
    settings: TransferSettings,
) -> None:
    upload, _ = MultipartUpload.create(store, bucket, key, extra, length)
    slots = threading.BoundedSemaphore(settings.max_concurrency)
    done_parts: list[dict[str, Any]] = []
    lock = threading.Lock()

    def send(number: int, ciphertext: bytearray, plaintext_size: int) -> None:
        try:
            entry = upload.send_part(number, ciphertext)
            with lock:
                done_parts.append(entry)
            if callback is not None:
                callback(plaintext_size)
        finally:
            slots.release()

    try:
        with concurrent.futures.ThreadPoolExecutor(settings.max_concurrency) as pool:
            futures = []
            parts = _plaintext_parts(source, settings.part_size(length), length)
            while True:
                # A slot first: at most max_concurrency encrypted parts exist at once.
                slots.acquire()
                try:
                    number, plaintext, last = next(parts)
                    ciphertext = upload.encrypt_part(number, plaintext, last=last)
                except BaseException as exc:
                    slots.release()
                    if isinstance(exc, StopIteration):
                        break
                    raise
                cooperate()
                futures.append(
                    pool.submit(
                        contextvars.copy_context().run, send, number, ciphertext, len(plaintext)
                    )
                )
                del ciphertext, plaintext
                for future in [f for f in futures if f.done()]:
                    future.result()  # surface a failed part early
            for future in futures:
                future.result()
        upload.complete(done_parts)
    except BaseException:
        if upload.completed is None:  # else the object exists; only its instruction file failed
            try:
                upload.abort()
            except Exception as exc:
                log.warning(
                    "multipart upload %s of s3://%s/%s failed and could not be aborted (%s); "
                    "it stays open until aborted",
                    upload.upload_id,
                    bucket,
                    key,
                    exc,
                )
        raise


class _ProgressReader:
    """Counts plaintext bytes for a boto3-style Callback, each byte once across rewinds."""

    def __init__(self, source: Any, callback: Callable[[int], Any]):
        self._source = source
        self._callback = callback
        self._position = 0
        self._reported = 0
        self._start = 0
        with contextlib.suppress(AttributeError, OSError, ValueError):
            self._start = int(source.tell())

    def read(self, size: int = -1) -> bytes:
        data: bytes = self._source.read(size)
        self._position += len(data)
        if self._position > self._reported:
            self._callback(self._position - self._reported)
            self._reported = self._position
        return data

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        position = int(self._source.seek(offset, whence))
        self._position = position - self._start
        return position

    def tell(self) -> int:
        return int(self._source.tell())

    def seekable(self) -> bool:
        return bool(getattr(self._source, "seekable", lambda: False)())


# ---------------------------------------------------------------- download


def download(
    store: ObjectStore,
    bucket: str,
    key: str,
    sink: Any,
    *,
    extra_args: Mapping[str, Any] | None,
    callback: Callable[[int], Any] | None,
    config: Any,
    sink_is_private: bool,
    delayed: bool,
    allow_unencrypted: bool = False,
) -> None:
    """Download, verify and decrypt ``bucket/key`` into the writable ``sink``.

    ``sink_is_private`` says that ``sink`` is a temporary file nobody reads before the
    transfer succeeded (download_file); then plaintext is written as it decrypts and
    verified at the end, as with ``delayed`` authentication. Otherwise the ciphertext
    is spooled and verified first, so ``sink`` sees only verified plaintext. A plaintext
    object is copied as it is with ``allow_unencrypted``, as ``get_object`` returns it.
    """
    settings = TransferSettings(config)
    extra = dict(extra_args or {})
    context = extra.pop("EncryptionContext", None)
    head, size, first = _first_range(store, bucket, key, extra, settings)
    chunks = ciphertext_chunks(
        store, bucket, key, size, head.get("ETag"), extra, settings, first=first
    )
    with located(bucket, key), contextlib.closing(chunks):
        try:
            content = store.content_metadata(bucket, key, head.get("Metadata", {}), extra)
        except NotEncryptedError:
            if not allow_unencrypted:
                raise not_encrypted_error() from None
            for chunk in chunks:
                sink.write(chunk)
                if callback is not None:
                    callback(len(chunk))
            return
        decryptor = store.begin_decryptor(bucket, key, content, context)
        if sink_is_private or delayed:
            decrypt_to(sink, chunks, decryptor, callback, size=size)
            return
        spool = verified_spool(chunks, size, decryptor.fresh())
        try:
            decrypt_to(sink, spool_chunks(spool), decryptor, callback, size=size)
        finally:
            release(spool)


def _first_range(
    store: ObjectStore,
    bucket: str,
    key: str,
    extra: Mapping[str, Any],
    settings: TransferSettings,
) -> tuple[dict[str, Any], int, bytes]:
    """(the object's headers, its stored size, its first bytes) from one GET of its first
    range, where a HEAD would say the same and fetch nothing: an object of one range
    (most of a tree of small files) then takes one request, not two. The bytes may be
    fewer than a range (none, when the read was cut off: the ranges fetch them again)."""
    chunk = max(settings.multipart_chunksize, _MiB)
    try:
        response: dict[str, Any] = dict(
            store.s3.get_object(
                Bucket=bucket,
                Key=key,
                Range=f"bytes=0-{chunk - 1}",
                **_s3args.forward("head", extra),
            )
        )
    except ClientError as exc:
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if status != 416 and exc.response.get("Error", {}).get("Code") != "InvalidRange":
            raise
        head = store.head(bucket, key, extra)  # an empty object has no first byte
        return head, int(head["ContentLength"]), b""
    length = int(response.get("ContentLength") or 0)
    total = str(response.get("ContentRange") or "").rpartition("/")[2]
    size = int(total) if total.isdigit() else length
    with contextlib.closing(without_redundant_checksum(response.pop("Body"))) as body:
        if length > chunk or (total.isdigit() and length > size):
            return response, size, b""  # a store that ignored the range: not read whole
        try:
            first = bytes(body.read())
        except S3_RETRYABLE_DOWNLOAD_ERRORS:
            first = b""
    if len(first) != length:
        first = b""  # cut off: the ranges fetch it again, with their retries
    return response, size, first


@contextlib.contextmanager
def replacing_file(filename: str) -> Iterator[Any]:
    """A private temporary file beside ``filename`` that replaces it when the block ends
    without an error, and is removed when it does not: no partial file is ever seen."""
    directory = os.path.dirname(os.path.abspath(filename))
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=".s3cse-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            # Private while it is written; then the mode any new file gets (the umask's),
            # or the one of the file it replaces.
            try:
                mode = stat.S_IMODE(os.stat(filename).st_mode) & 0o777  # no setuid/setgid
            except FileNotFoundError:
                mode = 0o666 & ~_umask()
            os.fchmod(f.fileno(), mode)
        os.replace(temporary, filename)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _umask() -> int:
    """The process umask, read without changing it (os.umask would, for every thread)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o077  # unknown (no /proc): keep the file private


def ciphertext_chunks(
    store: ObjectStore,
    bucket: str,
    key: str,
    size: int,
    etag: str | None,
    extra: Mapping[str, Any],
    settings: TransferSettings,
    *,
    first: bytes = b"",
) -> Generator[memoryview | bytes, None, None]:
    """Yield the object's ciphertext in order, fetched by concurrent ranged GETs pinned
    to ``etag`` (each piece is valid until the next one is asked for); ``first``: its
    first bytes, already fetched."""
    s3 = store.s3
    get_args = _s3args.forward("ranged_get", extra)
    if etag:
        get_args["IfMatch"] = etag
    chunk = max(settings.multipart_chunksize, _MiB)
    if first:
        yield first
    ranges = [(start, min(start + chunk, size) - 1) for start in range(len(first), size, chunk)]
    if not ranges:
        return

    # Ranges are read into reused buffers: at most max_concurrency are being fetched and
    # one is being consumed, so the peak is fixed, with no 8 MiB allocation per range
    # (which fragments the heap across the fetching threads' malloc arenas).
    free_buffers: list[bytearray] = []
    buffers_lock = threading.Lock()

    def take_buffer() -> bytearray:
        with buffers_lock:
            if free_buffers:
                return free_buffers.pop()
        return bytearray(min(chunk, size))

    def give_back(buffer: bytearray) -> None:
        with buffers_lock:
            free_buffers.append(buffer)

    def fetch(first: int, last: int) -> tuple[bytearray | None, memoryview | bytes]:
        # botocore retries a request that fails before its response; a body cut off
        # mid-read is retried here, a bounded number of times, as s3transfer does.
        want = last - first + 1
        buffer: bytearray | None = None
        try:
            for attempt in range(_RANGE_ATTEMPTS):
                try:
                    response = s3.get_object(
                        Bucket=bucket, Key=key, Range=f"bytes={first}-{last}", **get_args
                    )
                    # The GCM tag covers every byte; a stored checksum is of the whole object
                    # and cannot check a range (stores that send it anyway would fail it).
                    with contextlib.closing(without_redundant_checksum(response["Body"])) as body:
                        if hasattr(body, "readinto") and response.get("ContentLength") == want:
                            if buffer is None:
                                buffer = take_buffer()
                            view = memoryview(buffer)[:want]
                            data: memoryview | bytes = view[: readinto_exactly(body, view)]
                        else:
                            data = body.read()
                except S3_RETRYABLE_DOWNLOAD_ERRORS:
                    if attempt + 1 == _RANGE_ATTEMPTS:
                        raise
                    log.debug("ranged read %s-%s of %s cut off; retrying", first, last, key)
                    continue
                if len(data) != want:
                    raise UnexpectedResponseError(
                        f"ranged read of bytes {first}-{last} returned {len(data)} bytes: the "
                        "object changed or the connection was cut"
                    )
                return buffer, data
            raise AssertionError("unreachable")
        except BaseException:
            if buffer is not None:
                give_back(buffer)
            raise

    with concurrent.futures.ThreadPoolExecutor(settings.max_concurrency) as pool:
        window: dict[
            int, concurrent.futures.Future[tuple[bytearray | None, memoryview | bytes]]
        ] = {}
        next_submit = 0
        try:
            for index in range(len(ranges)):
                while next_submit < len(ranges) and next_submit < index + settings.max_concurrency:
                    fetch_range = functools.partial(fetch, *ranges[next_submit])
                    window[next_submit] = pool.submit(contextvars.copy_context().run, fetch_range)
                    next_submit += 1
                buffer, data = window.pop(index).result()
                yield data  # the consumer is done with it when it asks for the next one
                del data
                if buffer is not None:
                    give_back(buffer)
        finally:
            for future in window.values():
                future.cancel()
