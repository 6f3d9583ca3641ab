"""Writing one encrypted object: the encrypting request body, ciphertext spooling for
bodies of unknown length, PutObject, and the one multipart driver (used by the client's
multipart API, by transfers and by the fsspec writer)."""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import io
import logging
import tempfile
import threading
import zlib
from collections.abc import Iterator, Mapping
from typing import Any

from . import _s3args
from ._body import ReadOnlyStream, readinto_exactly
from ._bridge import cleanup, in_async_call
from ._objects import ObjectStore, PreparedUpload
from .core.ciphers import TAG_LENGTH
from .core.envelope import ObjectEncryptor
from .errors import ConfigurationError, MultipartSequenceError, SourceChangedError, located

__all__ = ["EncryptingReader", "MultipartUpload", "plaintext_source", "put_object"]

log = logging.getLogger(__name__)

_CHUNK = 1024 * 1024
_SPOOL_IN_MEMORY = 8 * 1024 * 1024


def plaintext_source(body: Any) -> tuple[Any, int | None]:
    """Return (readable file object, remaining length or None when unknown)."""
    if body is None:
        body = b""
    if isinstance(body, str):
        body = body.encode("utf-8")
    if isinstance(body, bytes | bytearray | memoryview):
        return io.BytesIO(body), len(body)
    if not hasattr(body, "read"):
        raise ConfigurationError(
            f"Body must be bytes, str or a readable file object, not {type(body).__name__}"
        )
    try:
        if body.seekable():
            start = body.tell()
            end = body.seek(0, io.SEEK_END)
            body.seek(start)
            return body, end - start
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both
        pass
    return body, None


class EncryptingReader(ReadOnlyStream):
    """A file-like body for botocore: plaintext in, ``ciphertext || tag`` out.

    botocore may rewind the body (retries, checksum and signature passes); a rewind
    replays the same plaintext from the source through the same key and IV, which
    yields identical ciphertext. The encryptor checks that (see
    :meth:`ObjectEncryptor.rewind`): every pass cuts the source into the same whole
    chunks, and a chunk that changed is refused before it is encrypted.

    While botocore hashes or sends one chunk, a helper thread reads and encrypts the
    next (file reads release the GIL, as do botocore's SHA-256 and socket writes): two
    chunk buffers take turns.
    """

    def __init__(self, source: Any, length: int, encryptor: ObjectEncryptor):
        super().__init__()
        self._source = source
        self._start = source.tell()
        self._length = length
        self._encryptor = encryptor
        self._in = bytearray(min(_CHUNK, length))
        self._out = [bytearray(_CHUNK + 32), bytearray(_CHUNK + 32)]
        self._pending = memoryview(b"")
        self._consumed = 0  # plaintext bytes taken from the source
        self._position = 0  # ciphertext bytes handed out
        self._tag_sent = False
        self._chunk = 0
        self._crc = 0  # CRC32 of this pass's ciphertext so far
        self._checksum: int | None = None  # CRC32 of the whole body, once a pass completed
        # Read ahead only where a thread can help: bodies of several chunks, and not on
        # an async client's worker (which reads the body in one go, pacing the loop).
        # In-memory sources gain nothing from a thread (and close() of an fsspec file,
        # which stores its buffer, must start none).
        self._ahead = (
            length > 2 * _CHUNK and not in_async_call() and not isinstance(source, io.BytesIO)
        )
        self._helper: concurrent.futures.ThreadPoolExecutor | None = None
        self._next: concurrent.futures.Future[memoryview | None] | None = None

    def __len__(self) -> int:
        return self._length + TAG_LENGTH

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        target = {io.SEEK_SET: offset, io.SEEK_CUR: self._position + offset}.get(
            whence, len(self) + offset
        )
        if target == self._position:
            return target
        if target != 0:
            raise io.UnsupportedOperation("an encrypting body can only be rewound to its start")
        self._rewind()
        return 0

    def close(self) -> None:
        # Called by put_object on the caller's thread once the request is done (never from
        # a finalizer): the helper has at most one chunk to finish.
        self._stop_helper()
        super().close()

    def _stop_helper(self) -> None:
        """Wait for the chunk being prepared (its result is dropped) and end the thread."""
        if self._next is not None:
            with contextlib.suppress(BaseException):
                self._next.result()
            self._next = None
        if self._helper is not None:
            self._helper.shutdown(wait=True)
            self._helper = None

    def _rewind(self) -> None:
        self._stop_helper()
        self._source.seek(self._start)
        self._encryptor.rewind()
        self._chunk = self._crc = 0
        self._pending = memoryview(b"")
        self._consumed = self._position = 0
        self._tag_sent = False

    def checksum_crc32(self) -> int:
        """The CRC32 of the whole body; runs one pass for it unless a pass already completed."""
        if self._checksum is None:
            self._rewind()
            while self._produce() is not None:
                pass
            self._rewind()
        assert self._checksum is not None
        return self._checksum

    def _produce(self) -> memoryview | None:
        """The next chunk of ciphertext (the tag last); None at the end."""
        if self._consumed < self._length:
            # Whole chunks, so every pass cuts the plaintext at the same places.
            want = memoryview(self._in)[: min(_CHUNK, self._length - self._consumed)]
            got = readinto_exactly(self._source, want)
            if got != len(want):
                raise SourceChangedError(
                    f"the upload source ended after {self._consumed + got} of {self._length} "
                    "bytes; it was changed or truncated while being read"
                )
            out = self._out[self._chunk % 2]
            chunk = memoryview(out)[: self._encryptor.update_into(want, out)]
            self._chunk += 1
            self._consumed += got
        elif not self._tag_sent:
            self._tag_sent = True
            chunk = memoryview(self._encryptor.finalize())
        else:
            return None
        if self._checksum is None:
            self._crc = zlib.crc32(chunk, self._crc)
            if self._tag_sent:
                self._checksum = self._crc
        return chunk

    def _fill(self) -> bool:
        """Make the next chunk ``self._pending``; False at the end of the body."""
        if self._next is not None:
            future, self._next = self._next, None
            chunk = future.result()
        else:
            chunk = self._produce()
        if chunk is None:
            self._stop_helper()
            return False
        self._pending = chunk
        if self._ahead and not self._tag_sent:
            if self._helper is None:
                self._helper = concurrent.futures.ThreadPoolExecutor(
                    1, thread_name_prefix="s3cse-encrypt"
                )
            self._next = self._helper.submit(self._produce)
        return True

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            size = len(self) - self._position
        parts = []
        while size > 0:
            if not len(self._pending) and not self._fill():
                break
            piece = self._pending[:size]
            parts.append(bytes(piece))
            self._pending = self._pending[len(piece) :]
            size -= len(piece)
        data = b"".join(parts)
        self._position += len(data)
        return data


@contextlib.contextmanager
def _spooled_ciphertext(source: Any, encryptor: ObjectEncryptor) -> Iterator[tuple[Any, int]]:
    """Encrypt a body of unknown length into a spool of *ciphertext* (memory, then disk)."""
    out = bytearray(_CHUNK + 32)
    with tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY) as spool:
        total = 0
        while data := source.read(_CHUNK):
            total += len(data)
            spool.write(memoryview(out)[: encryptor.update_into(data, out)])
        spool.write(encryptor.finalize())
        spool.seek(0)
        yield spool, total + TAG_LENGTH


def _read_exactly(source: Any, length: int) -> bytes:
    """``length`` bytes of ``source``; fewer means it changed while being read."""
    parts, got = [], 0
    while got < length:
        piece = source.read(length - got)
        if not piece:
            raise SourceChangedError(
                f"the upload source ended after {got} of {length} bytes; it was changed "
                "or truncated while being read"
            )
        parts.append(bytes(piece))
        got += len(piece)
    return b"".join(parts)


def put_object(store: ObjectStore, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Encrypt ``Body`` and store it with PutObject (and its instruction file, if any)."""
    args = dict(kwargs)
    bucket, key = args.get("Bucket"), args.get("Key")
    raw_body = args.pop("Body", b"")
    in_memory = raw_body is None or isinstance(raw_body, bytes | bytearray | str)
    with located(bucket, key):
        source, length = plaintext_source(raw_body)
    prepared = store.begin_upload(bucket, key, args, length)  # type: ignore[arg-type]
    encryptor, request = prepared.encryptor, prepared.request
    request.update(prepared.condition)
    s3 = store.s3
    with located(bucket, key):  # the source changed or ended while being read
        if length is not None and length <= _CHUNK:
            # Small bodies (a file too): encrypt once; botocore may read the body several
            # times (checksum, payload signature, send), and bytes cost nothing to reread.
            # Bytes also spare the round trip of `Expect: 100-continue`, which botocore
            # sends with every file-like body: a tree of small files uploads faster.
            if in_memory:
                view = source.getbuffer()
                request["Body"] = encryptor.update(view) + encryptor.finalize()
                view.release()
            else:
                plaintext = _read_exactly(source, length)
                request["Body"] = encryptor.update(plaintext) + encryptor.finalize()
            request["ContentLength"] = length + TAG_LENGTH
            response = s3.put_object(**request)
        elif length is not None:
            reader = EncryptingReader(source, length, encryptor)
            try:
                if (
                    not in_async_call()  # the async client reads the body once, with its CRC32
                    and _s3args.checksum_is_a_separate_pass(s3)
                    and _s3args.botocore_adds_crc32(s3, request)
                ):
                    # botocore would read (and so encrypt) the body once just for its CRC32;
                    # computed here, that pass also records what its later passes replay.
                    crc = reader.checksum_crc32()
                    request["ChecksumCRC32"] = base64.b64encode(crc.to_bytes(4, "big")).decode()
                request["Body"] = reader
                request["ContentLength"] = length + TAG_LENGTH
                response = s3.put_object(**request)
            finally:
                reader.close()  # ends its read-ahead thread
        else:
            with _spooled_ciphertext(source, encryptor) as (spool, size):
                request["Body"] = spool
                request["ContentLength"] = size
                response = s3.put_object(**request)
    if prepared.instruction is not None:
        store.complete_with_instruction_file(
            bucket,  # type: ignore[arg-type]
            key,  # type: ignore[arg-type]
            prepared.instruction,
            request,
            str(response.get("ETag") or "") or None,
        )
    return dict(response)


class MultipartUpload:
    """One encrypted multipart upload, from CreateMultipartUpload to Complete or Abort.

    Parts are encrypted in order through one GCM stream (:meth:`encrypt_part`; the part
    just encrypted can be had again, identical, for a resend) and may be sent from any
    thread (:meth:`send_part`). Every request carries the caller's access arguments.
    """

    def __init__(self, store: ObjectStore, prepared: PreparedUpload, upload_id: str):
        self.store = store
        self.bucket: str = prepared.request["Bucket"]
        self.key: str = prepared.request["Key"]
        self.upload_id = upload_id
        self.instruction = prepared.instruction
        self.request = prepared.request
        self.condition = prepared.condition
        self._multipart = prepared.encryptor.multipart()
        self._lock = threading.Lock()
        #: CompleteMultipartUpload's response, once S3 assembled the object.
        self.completed: dict[str, Any] | None = None

    @classmethod
    def create(
        cls,
        store: ObjectStore,
        bucket: str,
        key: str,
        args: Mapping[str, Any],
        length: int | None = None,
    ) -> tuple[MultipartUpload, dict[str, Any]]:
        """Begin the encryption and create the upload: (upload, CreateMultipartUpload response)."""
        prepared = store.begin_upload(bucket, key, args, length)
        response: dict[str, Any] = dict(store.s3.create_multipart_upload(**prepared.request))
        log.debug("multipart upload %s of s3://%s/%s started", response["UploadId"], bucket, key)
        return cls(store, prepared, response["UploadId"]), response

    @property
    def finished(self) -> bool:
        """Whether the last part (the one with the tag) has been encrypted."""
        return self._multipart.finished

    def encrypt_part(self, number: int, plaintext: Any, *, last: bool) -> bytearray:
        """The ciphertext of part ``number`` (with the tag when ``last``)."""
        with self._lock, located(self.bucket, self.key):
            return self._multipart.encrypt_part(number, plaintext, last=last)

    def part_request(self, number: int) -> dict[str, Any]:
        """The UploadPart arguments for part ``number``, less its body."""
        return {
            "Bucket": self.bucket,
            "Key": self.key,
            "UploadId": self.upload_id,
            "PartNumber": number,
            **_s3args.forward("upload_part", self.request),
        }

    def send_part(self, number: int, ciphertext: Any) -> dict[str, Any]:
        """Upload one encrypted part; returns its entry for CompleteMultipartUpload."""
        response = self.store.s3.upload_part(Body=ciphertext, **self.part_request(number))
        entry = {"PartNumber": number, "ETag": response["ETag"]}
        for name in ("ChecksumCRC32", "ChecksumCRC32C", "ChecksumSHA1", "ChecksumSHA256"):
            if response.get(name):
                entry[name] = response[name]
        return entry

    def complete(
        self, parts: list[dict[str, Any]], args: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Complete the upload (refused before the last part was encrypted), then write
        the instruction file if the upload uses one. ``args`` are the caller's own
        CompleteMultipartUpload arguments, when it gave them."""
        if not self.finished:
            raise MultipartSequenceError(
                "the last part (upload_part(..., IsLastPart=True)) was never uploaded, so the "
                "object would have no authentication tag; upload it or abort the upload"
            ).at(self.bucket, self.key)
        retry = self.completed is not None
        if self.completed is None:  # a retry after a failed instruction file skips this
            if args is None:
                args = {
                    "Bucket": self.bucket,
                    "Key": self.key,
                    "UploadId": self.upload_id,
                    "MultipartUpload": {"Parts": sorted(parts, key=lambda p: p["PartNumber"])},
                    **_s3args.forward("complete_multipart_upload", self.request),
                    **self.condition,
                }
            # Not cut off by an async cancel: S3 may assemble the object either way, and
            # only a finished request says which (then an abort would find no upload).
            with cleanup():
                self.completed = dict(self.store.s3.complete_multipart_upload(**args))
        if self.instruction is not None:
            self.store.complete_with_instruction_file(
                self.bucket,
                self.key,
                self.instruction,
                self.request,
                str(self.completed.get("ETag") or "") or None,
                retry=retry,
            )
        return self.completed

    def abort(self) -> dict[str, Any]:
        """Abort the upload, with the caller's access arguments (also when the async call
        doing the upload was cancelled: aborting is its cleanup)."""
        with cleanup():
            return dict(
                self.store.s3.abort_multipart_upload(
                    Bucket=self.bucket,
                    Key=self.key,
                    UploadId=self.upload_id,
                    **_s3args.forward("abort_multipart_upload", self.request),
                )
            )
