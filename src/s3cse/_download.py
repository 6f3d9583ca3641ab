"""Reading one encrypted object: the decrypt pumps, and the one place where ciphertext is
verified into a spool before any plaintext is released.

The ciphertext comes from a single GET (``get_object``) or from the transfer layer's
concurrent ranged GETs (``download_file``, the fsspec read file); what happens to it
is the same.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import os
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

from botocore.httpchecksum import StreamingChecksumBody
from botocore.response import StreamingBody

from ._body import DecryptedBody
from ._bridge import cooperate
from ._spool import ciphertext_spool, release, spool_chunks, trim
from .core.envelope import ObjectDecryptor
from .errors import located

__all__ = [
    "VerifiedCiphertext",
    "decrypt_to",
    "plaintext_body",
    "read_chunks",
    "verified_spool",
    "verify_into_spool",
    "without_redundant_checksum",
]

_CHUNK = 1024 * 1024
#: Ciphertext chunks waiting for the spool writer at most (bytes chunks only).
_WRITES_IN_FLIGHT = 4

Chunk = bytes | bytearray | memoryview


def without_redundant_checksum(body: Any) -> Any:
    """``body`` without botocore's CRC32 check of the whole response, for AES-GCM bodies
    and for ranges (a stored checksum is of the whole object).

    botocore validates a stored full-object checksum while the body is read (a CRC32
    pass over every byte, about a fifth of an authenticated get's time on loopback).
    The GCM tag already authenticates each of those bytes, so the CRC adds nothing;
    the content length is still checked. Other bodies are returned unchanged.
    """
    if type(body) is StreamingChecksumBody and hasattr(body, "_raw_stream"):
        length: Any = getattr(body, "_content_length", None)  # botocore keeps the header text
        return StreamingBody(body._raw_stream, length)
    return body


def read_chunks(stream: Any, expected: int | None = None) -> Iterator[bytes]:
    """``stream`` to its end in pieces of up to 1 MiB.

    With ``expected`` (the Content-Length), reads ask for no more than is left: a
    read of n bytes allocates n bytes in http.client, whatever arrives, which for
    small objects cost more than the decryption. A last 1-byte read finds the end
    (and lets botocore check the length)."""
    remaining = expected
    while True:
        if remaining is None or remaining < 0:
            size = _CHUNK
        elif remaining == 0:
            size = 1  # the end, or a body longer than announced (then full reads again)
        else:
            size = min(_CHUNK, remaining)
        chunk = stream.read(size)
        if not chunk:
            return
        if remaining is not None:
            remaining -= len(chunk)
        yield chunk


def decrypt_stream(
    chunks: Iterable[Chunk], decryptor: ObjectDecryptor, bucket: str, key: str
) -> Iterator[memoryview]:
    """Yield plaintext as it decrypts; verification happens at the end (finalize), and a
    failure then names ``s3://bucket/key`` (it surfaces from the body's ``read``)."""
    out = bytearray(_CHUNK + 48)
    with located(bucket, key):
        for chunk in chunks:
            if len(chunk) + 31 > len(out):
                out = bytearray(len(chunk) + 48)
            n = decryptor.update_into(chunk, out)
            if n:
                yield memoryview(out)[:n]
        last = decryptor.finalize()
    if last:
        yield memoryview(last)


def _decrypt_in_memory(body: Any, ciphertext_length: int, decryptor: ObjectDecryptor) -> memoryview:
    """Decrypt the whole object into one buffer and verify it before returning any of it."""
    plaintext = bytearray(ciphertext_length + 48)
    n = 0
    for chunk in read_chunks(body, ciphertext_length):
        if n + len(chunk) + 31 > len(plaintext):
            plaintext.extend(bytes(len(chunk) + 48))
        n += decryptor.update_into(chunk, memoryview(plaintext)[n:])
    last = decryptor.finalize()
    plaintext[n : n + len(last)] = last
    return memoryview(plaintext)[: n + len(last)]


def verify_into_spool(
    chunks: Iterable[Chunk], spool: IO[bytes], decryptor: ObjectDecryptor
) -> None:
    """Copy the ciphertext to ``spool`` while checking its tag; no plaintext is kept.

    Raises IntegrityError (from ``decryptor.finalize``) when the object is not intact.
    The disk writes run in a second thread (they release the GIL), overlapping the tag
    check and the fetching. A chunk that is not ``bytes`` may be a view of a buffer its
    producer reuses once the next chunk is asked for: its write is waited for first.
    """
    scratch = bytearray(_CHUNK + 48)
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="s3cse-spool") as writer:
        pending: collections.deque[concurrent.futures.Future[Any]] = collections.deque()
        try:
            for chunk in chunks:
                pending.append(writer.submit(spool.write, chunk))
                if len(chunk) + 31 > len(scratch):
                    scratch = bytearray(len(chunk) + 48)
                decryptor.update_into(chunk, scratch)
                cooperate()
                borrowed = not isinstance(chunk, bytes)
                while pending and (
                    borrowed or len(pending) > _WRITES_IN_FLIGHT or pending[0].done()
                ):
                    pending.popleft().result()
            while pending:
                pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
    decryptor.finalize()
    trim(spool)


def verified_spool(
    chunks: Iterable[Chunk], ciphertext_length: int, decryptor: ObjectDecryptor
) -> IO[bytes]:
    """A spool holding the object's ciphertext, its tag verified, rewound to byte 0."""
    spool = ciphertext_spool(ciphertext_length)
    try:
        verify_into_spool(chunks, spool, decryptor)
    except BaseException:
        spool.close()
        raise
    return spool


class VerifiedCiphertext:
    """An object's ciphertext in a local spool, its tag verified: random access to its
    plaintext, from any number of readers at once (positional reads, no shared offset)."""

    def __init__(self, spool: IO[bytes], decryptor: ObjectDecryptor, stored_length: int):
        if not decryptor.verified:
            raise ValueError("the decryptor has not verified this ciphertext")
        self._spool = spool
        self._decryptor = decryptor
        self.stored_length = stored_length
        self.size = decryptor.plaintext_length(stored_length) or 0

    def read(self, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes of plaintext from ``offset``."""
        size = max(0, min(size, self.size - offset))
        if not size:
            return b""
        ciphertext = os.pread(self._spool.fileno(), size, offset)
        return self._decryptor.decrypt_verified_range(ciphertext, offset)

    def release(self) -> None:
        release(self._spool)


def plaintext_body(
    body: Any,
    ciphertext_length: int | None,
    decryptor: ObjectDecryptor,
    bucket: str,
    key: str,
    *,
    delayed: bool,
    buffer_size: int,
) -> DecryptedBody:
    """The plaintext ``Body`` of a whole-object GET whose ciphertext stream is ``body``.

    Unless ``delayed``, nothing is released before the tag verified: in memory up to
    ``buffer_size`` bytes, else through a verified spool of the ciphertext. A response
    without a Content-Length (``ciphertext_length`` None) is spooled, never buffered
    without bound, and the body's ``content_length`` is what was actually received.
    """
    if decryptor.authenticated:
        body = without_redundant_checksum(body)
    if delayed:
        return DecryptedBody(
            decrypt_stream(read_chunks(body, ciphertext_length), decryptor, bucket, key),
            None if ciphertext_length is None else decryptor.plaintext_length(ciphertext_length),
            body.close,
        )
    with contextlib.closing(body):
        if (
            ciphertext_length is not None
            and ciphertext_length - decryptor.suite.tag_length <= buffer_size
        ):
            plaintext = _decrypt_in_memory(body, ciphertext_length, decryptor)
            return DecryptedBody(iter([plaintext]), len(plaintext))
        spool = verified_spool(read_chunks(body), ciphertext_length or 0, decryptor)
    received = os.fstat(spool.fileno()).st_size
    plaintext_length = decryptor.plaintext_length(received)
    return DecryptedBody(
        decrypt_stream(spool_chunks(spool), decryptor.fresh(), bucket, key),
        plaintext_length,
        lambda: release(spool),
    )


def decrypt_to(
    sink: Any,
    chunks: Iterable[Chunk],
    decryptor: ObjectDecryptor,
    callback: Callable[[int], Any] | None,
    *,
    size: int | None = None,
) -> None:
    """Decrypt into ``sink`` in 1 MiB slices through a ring of three buffers; a writer
    thread writes them out (file writes release the GIL), overlapping decryption and
    fetching. The tag is checked at the end: ``sink`` must be private until then.
    ``size``: the ciphertext's, when known; one slice or less is decrypted and written
    here, sparing a small file the writer thread and the ring."""
    if size is not None and size <= _CHUNK:
        for chunk in chunks:
            piece = decryptor.update(chunk)
            if piece:
                sink.write(piece)
                if callback is not None:
                    callback(len(piece))
        last = decryptor.finalize()
        if last:
            sink.write(last)
            if callback is not None:
                callback(len(last))
        return
    ring = [bytearray(_CHUNK + 64) for _ in range(3)]
    pending: collections.deque[concurrent.futures.Future[Any]] = collections.deque()
    turn = 0
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="s3cse-write") as writer:
        try:
            for chunk in chunks:
                view = memoryview(chunk)
                for offset in range(0, len(view), _CHUNK):
                    while len(pending) >= len(ring) - 1:  # the buffer about to be reused is free
                        pending.popleft().result()
                    out = ring[turn % len(ring)]
                    turn += 1
                    n = decryptor.update_into(view[offset : offset + _CHUNK], out)
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
