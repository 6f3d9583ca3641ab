"""Big objects: parallel multipart uploads and parallel ranged downloads, bounded memory.

Encryption is one GCM stream, so it runs sequentially in the calling thread, ahead
of the network; the parts it produces are uploaded by a pool of threads. At most
``max_concurrency`` encrypted parts exist at once, so memory is bounded by
``max_concurrency x multipart_chunksize`` whatever the object's size.

Downloads fetch ciphertext with concurrent ranged GETs (pinned to the object's ETag)
and feed it to the decryptor in order; at most ``max_concurrency`` ranges are held.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import contextvars
import functools
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from s3transfer.utils import S3_RETRYABLE_DOWNLOAD_ERRORS

from ._body import readinto_exactly
from ._bridge import cooperate
from ._spool import ciphertext_spool, close_in_background, spool_chunks, trim
from .core.envelope import ObjectDecryptor
from .core.suites import GCM_MAX_PLAINTEXT_LENGTH
from .errors import ConfigurationError, IntegrityError, PlaintextTooLargeError, S3CSEError

if TYPE_CHECKING:
    from .client import EncryptionClient

from .client import _plaintext_source

__all__ = ["TransferSettings", "download", "upload"]

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


def _read_exactly(source: Any, size: int) -> bytes:
    parts = []
    remaining = size
    while remaining:
        data = source.read(remaining)
        if not data:
            break
        parts.append(data)
        remaining -= len(data)
    return b"".join(parts) if len(parts) != 1 else parts[0]


def _plaintext_parts(
    source: Any, part_size: int, length: int | None
) -> Iterator[tuple[int, bytes | memoryview, bool]]:
    """Yield (part number, plaintext, is_last).

    With a known length, parts are read into one reused buffer (each is encrypted before
    the next is read); otherwise one part is read ahead to know which is the last.
    """
    if length is not None:
        count = max(1, -(-length // part_size))
        buffer = memoryview(bytearray(min(part_size, max(length, 1))))
        remaining = length
        for number in range(1, count + 1):
            want = min(part_size, remaining)
            got = readinto_exactly(source, buffer[:want])
            if got != want:
                raise IntegrityError(
                    f"the upload source ended {remaining - got} bytes early: it was truncated "
                    "while being read"
                )
            remaining -= got
            yield number, buffer[:got], number == count
        return
    current = _read_exactly(source, part_size)
    number = 1
    while True:
        following = _read_exactly(source, part_size) if len(current) == part_size else b""
        last = not following
        yield number, current, last
        if last:
            return
        current, number = following, number + 1


def upload(
    client: EncryptionClient,
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
    source, length = _plaintext_source(source)
    if length is not None and length > GCM_MAX_PLAINTEXT_LENGTH:
        raise PlaintextTooLargeError(
            f"the file is {length} bytes, over the AES-GCM limit of {GCM_MAX_PLAINTEXT_LENGTH} "
            "bytes (2^36 - 32) for one object; split it into several objects"
        ).at(bucket, key)
    if length is not None and length < settings.multipart_threshold:
        body = _ProgressReader(source, callback) if callback else source
        client.put_object(Bucket=bucket, Key=key, Body=body, **extra)
        return
    _multipart_upload(client, source, bucket, key, length, extra, callback, settings)


def _multipart_upload(
    client: EncryptionClient,
    source: Any,
    bucket: str,
    key: str,
    length: int | None,
    extra: dict[str, Any],
    callback: Callable[[int], Any] | None,
    settings: TransferSettings,
) -> None:
    encryptor, create_args, instruction = client._begin_upload(bucket, key, extra, length)
    s3 = client.s3_client
    upload_id = s3.create_multipart_upload(**create_args)["UploadId"]
    log.debug("multipart upload %s of s3://%s/%s started", upload_id, bucket, key)
    part_args = {
        k: create_args[k]
        for k in (
            "SSECustomerAlgorithm",
            "SSECustomerKey",
            "SSECustomerKeyMD5",
            "RequestPayer",
            "ExpectedBucketOwner",
            "ChecksumAlgorithm",
        )
        if k in create_args
    }
    multipart = encryptor.multipart()
    slots = threading.BoundedSemaphore(settings.max_concurrency)
    done_parts: list[dict[str, Any]] = []
    lock = threading.Lock()

    def send(number: int, ciphertext: bytes | bytearray, plaintext_size: int) -> None:
        try:
            response = s3.upload_part(
                Bucket=bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                Body=ciphertext,
                **part_args,
            )
            entry = {"PartNumber": number, "ETag": response["ETag"]}
            for name in ("ChecksumCRC32", "ChecksumCRC32C", "ChecksumSHA1", "ChecksumSHA256"):
                if response.get(name):
                    entry[name] = response[name]
            with lock:
                done_parts.append(entry)
            if callback is not None:
                callback(plaintext_size)
        finally:
            slots.release()

    try:
        with concurrent.futures.ThreadPoolExecutor(settings.max_concurrency) as pool:
            futures = []
            total = 0
            parts = _plaintext_parts(source, settings.part_size(length), length)
            while True:
                # A slot first: at most max_concurrency encrypted parts exist at once.
                slots.acquire()
                try:
                    number, plaintext, last = next(parts)
                except StopIteration:
                    slots.release()
                    break
                except BaseException:
                    slots.release()
                    raise
                total += len(plaintext)
                if total > GCM_MAX_PLAINTEXT_LENGTH:
                    slots.release()
                    raise PlaintextTooLargeError(
                        f"the stream exceeded the AES-GCM limit of {GCM_MAX_PLAINTEXT_LENGTH} "
                        "bytes for one object"
                    )
                # Into a fresh buffer (update_into is several times faster than update),
                # sized exactly so botocore sees a plain bytearray body.
                ciphertext = bytearray(len(plaintext) + 31)
                size = multipart.encrypt_part_into(number, plaintext, ciphertext, last=last)
                del ciphertext[size:]
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
        done_parts.sort(key=lambda p: p["PartNumber"])
        complete_args = {
            k: v
            for k, v in part_args.items()
            if k
            in (
                "RequestPayer",
                "ExpectedBucketOwner",
                "SSECustomerAlgorithm",
                "SSECustomerKey",
                "SSECustomerKeyMD5",
            )
        }
        s3.complete_multipart_upload(
            Bucket=bucket,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={"Parts": done_parts},
            **complete_args,
        )
    except BaseException:
        log.warning("multipart upload of s3://%s/%s failed; aborting %s", bucket, key, upload_id)
        with contextlib.suppress(Exception):
            s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        raise
    if instruction is not None:
        client._put_instruction_file(bucket, key, instruction, extra)


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
    client: EncryptionClient,
    bucket: str,
    key: str,
    sink: Any,
    *,
    extra_args: Mapping[str, Any] | None,
    callback: Callable[[int], Any] | None,
    config: Any,
    sink_is_private: bool,
) -> None:
    """Download, verify and decrypt ``bucket/key`` into the writable ``sink``.

    ``sink_is_private`` says that ``sink`` is a temporary file nobody reads before the
    transfer succeeded (download_file); then plaintext is written as it decrypts and
    verified at the end. Otherwise (and unless delayed authentication was chosen) the
    ciphertext is spooled and verified first, so ``sink`` sees only verified plaintext.
    """
    settings = TransferSettings(config)
    extra = dict(extra_args or {})
    context = extra.pop("EncryptionContext", None)
    head, decryptor = client._begin_download(bucket, key, extra, context)
    size = int(head["ContentLength"])
    etag = head.get("ETag")
    chunks = _ciphertext_chunks(client, bucket, key, size, etag, extra, settings)
    try:
        if sink_is_private or client._delayed:
            _decrypt_to(sink, chunks, decryptor, callback)
            return
        spool = ciphertext_spool(size)
        try:
            verifier = decryptor.fresh()
            scratch = bytearray(settings.part_size(None) + 64)
            for chunk in chunks:
                spool.write(chunk)
                if len(chunk) + 32 > len(scratch):
                    scratch = bytearray(len(chunk) + 64)
                verifier.update_into(chunk, scratch)
                cooperate()
            verifier.finalize()
            trim(spool)
            _decrypt_to(sink, spool_chunks(spool), decryptor, callback)
        finally:
            close_in_background(spool)
    except S3CSEError as exc:
        raise exc.at(bucket, key) from None


def _decrypt_to(
    sink: Any,
    chunks: Iterator[bytes | memoryview],
    decryptor: ObjectDecryptor,
    callback: Callable[[int], Any] | None,
) -> None:
    """Decrypt in 1 MiB slices into a ring of three buffers; a writer thread writes
    them out (file writes release the GIL), overlapping decryption and fetching."""
    ring = [bytearray(_MiB + 64) for _ in range(3)]
    pending: collections.deque[concurrent.futures.Future[Any]] = collections.deque()
    turn = 0
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="s3cse-write") as writer:
        try:
            for chunk in chunks:
                view = memoryview(chunk)
                for offset in range(0, len(view), _MiB):
                    while len(pending) >= len(ring) - 1:  # the buffer about to be reused is free
                        pending.popleft().result()
                    out = ring[turn % len(ring)]
                    turn += 1
                    n = decryptor.update_into(view[offset : offset + _MiB], out)
                    cooperate()
                    if n:
                        pending.append(writer.submit(sink.write, memoryview(out)[:n]))
                        if callback is not None:
                            callback(n)
            while pending:
                pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
    last = decryptor.finalize()
    if last:
        sink.write(last)
        if callback is not None:
            callback(len(last))


def _ciphertext_chunks(
    client: EncryptionClient,
    bucket: str,
    key: str,
    size: int,
    etag: str | None,
    extra: Mapping[str, Any],
    settings: TransferSettings,
) -> Iterator[memoryview | bytes]:
    """Yield the object's ciphertext in order, fetched by concurrent ranged GETs (each
    piece is valid until the next one is asked for)."""
    s3 = client.s3_client
    get_args = {
        k: v
        for k, v in extra.items()
        if k
        in (
            "VersionId",
            "SSECustomerAlgorithm",
            "SSECustomerKey",
            "SSECustomerKeyMD5",
            "RequestPayer",
            "ExpectedBucketOwner",
        )
    }
    if etag:
        get_args["IfMatch"] = etag
    chunk = max(settings.multipart_chunksize, _MiB)
    ranges = [(start, min(start + chunk, size) - 1) for start in range(0, size, chunk)]
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
                    with contextlib.closing(response["Body"]) as body:
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
                    raise IntegrityError(
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
