"""The plaintext ``Body`` returned by ``get_object`` (botocore's StreamingBody shape),
and the read helpers the shells share."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from typing import Any

from .errors import ReadInterruptedError

__all__ = ["DecryptedBody", "ReadOnlyStream", "readinto_exactly", "split_lines"]

_MiB = 1024 * 1024


def readinto_exactly(source: Any, view: memoryview) -> int:
    """Fill ``view`` from ``source`` (fewer bytes only at its end), at most 1 MiB per call:
    urllib3's readinto reads into a temporary bytes object of the requested size first.
    Sources without ``readinto`` are read with ``read``."""
    filled = 0
    readinto = getattr(source, "readinto", None)
    while filled < len(view):
        if readinto is not None:
            n = readinto(view[filled : filled + _MiB])
        else:
            data = source.read(min(_MiB, len(view) - filled))
            n = len(data)
            view[filled : filled + n] = data
        if not n:
            break
        filled += n
    return filled


class ReadOnlyStream(io.RawIOBase):
    """An unbuffered binary stream that implements ``read``; ``readinto`` copies from it."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(memoryview(buffer)))
        memoryview(buffer).cast("B")[: len(data)] = data
        return len(data)


def split_lines(pending: bytes, chunk: bytes, keepends: bool) -> tuple[list[bytes], bytes]:
    """The complete lines in ``pending + chunk``, and the unfinished rest."""
    lines = (pending + chunk).splitlines(True)
    return [line.splitlines(keepends)[0] for line in lines[:-1]], lines[-1]


class DecryptedBody(io.RawIOBase):
    """Plaintext as a readable stream: ``read(n)``, ``iter_chunks``, ``iter_lines``,
    ``with`` and ``close``, like botocore's ``StreamingBody``.

    ``chunks`` yields plaintext pieces; it is drained lazily, so memory stays at one
    piece. ``on_close`` releases the source (HTTP connection or spool file).

    Once a read failed (an integrity error, a cut connection, an interrupt), every later
    read fails too: the body never looks like it ended cleanly after a failure.
    """

    _DEFAULT_CHUNK_SIZE = 1024

    def __init__(
        self,
        chunks: Iterator[bytes | memoryview],
        content_length: int | None,
        on_close: Callable[[], Any] | None = None,
    ):
        super().__init__()
        self._chunks = chunks
        self._current: memoryview = memoryview(b"")
        self._content_length = content_length
        self._on_close = on_close
        self._amount_read = 0
        self._eof = False
        self._failure: BaseException | None = None

    def __repr__(self) -> str:
        return f"<DecryptedBody {self._content_length} bytes, {self._amount_read} read>"

    @property
    def content_length(self) -> int | None:
        """The plaintext length, when known before the end."""
        return self._content_length

    def readable(self) -> bool:
        return True

    def _next_piece(self) -> bool:
        while not self._eof:
            if self._failure is not None:
                raise self._failure
            try:
                piece = next(self._chunks)
            except StopIteration:
                self._eof = True
                return False
            except Exception as exc:
                self._failure = exc
                raise
            except BaseException as exc:  # interrupted (KeyboardInterrupt, a cancelled call)
                self._failure = ReadInterruptedError(
                    f"an earlier read of this body was interrupted ({type(exc).__name__}) "
                    f"after {self._amount_read} bytes: the rest cannot be returned in order",
                    position=self._amount_read,
                )
                raise
            if len(piece):
                self._current = memoryview(piece)
                return True
        return False

    def readinto(self, buffer: Any) -> int:
        target = memoryview(buffer).cast("B")
        if not len(self._current) and not self._next_piece():
            return 0
        n = min(len(target), len(self._current))
        target[:n] = self._current[:n]
        self._current = self._current[n:]
        self._amount_read += n
        return n

    def read(self, amt: int | None = None) -> bytes:
        """Read at most ``amt`` bytes (all that is left when None or negative)."""
        if self.closed:
            raise ValueError("read of closed DecryptedBody")
        if amt is None or amt < 0:
            parts = [bytes(self._current)]
            self._current = memoryview(b"")
            while self._next_piece():
                parts.append(bytes(self._current))
                self._current = memoryview(b"")
            data = b"".join(parts)
            self._amount_read += len(data)  # counted once returned: a failure loses them
            return data
        if len(self._current) >= amt:  # the common case: one copy
            data = bytes(self._current[:amt])
            self._current = self._current[amt:]
            self._amount_read += amt
            return data
        out = bytearray()
        while len(out) < amt:
            if not len(self._current) and not self._next_piece():
                break
            n = min(amt - len(out), len(self._current))
            out += self._current[:n]
            self._current = self._current[n:]
        self._amount_read += len(out)
        return bytes(out)

    def readall(self) -> bytes:
        return self.read()

    def iter_chunks(self, chunk_size: int = _DEFAULT_CHUNK_SIZE) -> Iterator[bytes]:
        """Yield plaintext in pieces of ``chunk_size`` bytes (the last may be shorter)."""
        while True:
            chunk = self.read(chunk_size)
            if not chunk:
                return
            yield chunk

    def iter_lines(
        self, chunk_size: int = _DEFAULT_CHUNK_SIZE, keepends: bool = False
    ) -> Iterator[bytes]:
        """Yield lines, as botocore's StreamingBody does."""
        pending = b""
        for chunk in self.iter_chunks(chunk_size):
            lines, pending = split_lines(pending, chunk, keepends)
            yield from lines
        if pending:
            yield pending.splitlines(keepends)[0]

    def __iter__(self) -> Iterator[bytes]:
        return self.iter_chunks(self._DEFAULT_CHUNK_SIZE)

    def __next__(self) -> bytes:
        chunk = self.read(self._DEFAULT_CHUNK_SIZE)
        if not chunk:
            raise StopIteration
        return chunk

    def tell(self) -> int:
        return self._amount_read

    def close(self) -> None:
        if not self.closed:
            self._current = memoryview(b"")
            close = getattr(self._chunks, "close", None)
            if close is not None:
                close()
            if self._on_close is not None:
                self._on_close()
        super().close()
