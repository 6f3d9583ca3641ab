"""asyncio: ``AsyncEncryptionClient`` over an aiobotocore S3 client (and KMS client).

Cancellation and timeouts stop a call where it is: its requests in flight are
cancelled, what it started is cleaned up (a multipart upload aborted, a partial
download removed) on the loop, and only then does the ``CancelledError`` reach the
caller. Progress callbacks (``Callback``, ``progress``) are called on the event loop.

The async shell drives the very same shell logic as :class:`s3cse.EncryptionClient`
(and through it the sans-IO core): each call runs on a worker thread, and every S3 or
KMS request that logic makes is sent by aiobotocore *on the event loop*, bridged back
to the worker. So the loop never waits on crypto or on disk, formats and errors are
the sync client's to the byte, and no crypto or format code exists twice.

    async with session.create_client("s3") as s3, session.create_client("kms") as kms:
        client = AsyncEncryptionClient(s3, keyring=s3cse.KmsKeyring("alias/data", kms_client=kms))
        await client.put_object(Bucket="b", Key="k", Body=b"secret")
        response = await client.get_object(Bucket="b", Key="k")
        async with response["Body"] as body:
            data = await body.read()
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import contextvars
import functools
import inspect
import itertools
import tempfile
import zlib
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from ._body import split_lines
from ._bridge import CALL, Call, CallCancelled, cleanup, cooperate, run_awaitable
from ._s3args import botocore_adds_crc32
from .client import EncryptionClient
from .errors import ClientClosedError, ConfigurationError, ReadInterruptedError

__all__ = ["AsyncDecryptedBody", "AsyncEncryptionClient", "run_awaitable"]

T = TypeVar("T")


class _SyncBody:
    """A blocking view of an aiobotocore StreamingBody, for the worker thread."""

    def __init__(self, body: Any):
        self._body = body

    def read(self, amt: int | None = None) -> bytes:
        if amt is not None and amt >= 0:
            data: bytes = run_awaitable(self._body.read(amt))
            return data
        # All of it: piece by piece, joined here. aiohttp's read() would join the whole
        # body on the event loop (tens of ms for a multi-MiB range on a loaded machine).
        pieces = []
        while piece := run_awaitable(self._body.read(_READ_PIECE)):
            pieces.append(piece)
        return b"".join(pieces)

    def close(self) -> None:
        if CALL.get() is None:  # on the loop's thread (AsyncDecryptedBody.close)
            self._body.close()
            return
        with cleanup():  # also after a cancel: it releases the connection
            run_awaitable(_call(self._body.close))


async def _call(fn: Callable[[], Any]) -> Any:
    return fn()


class _SyncPaginator:
    def __init__(self, paginator: Any):
        self._paginator = paginator

    def paginate(self, **kwargs: Any) -> Any:
        pages = self._paginator.paginate(**kwargs).__aiter__()
        while True:
            try:
                yield run_awaitable(pages.__anext__())
            except StopAsyncIteration:
                return


#: In-memory bodies from this size on get their CRC32 computed on the worker.
_LARGE_BODY = 1024 * 1024
_READ_PIECE = 1024 * 1024
_SPOOL_ABOVE = 8 * 1024 * 1024  # stream bodies up to this size are read into memory
_CHECKSUMMED = frozenset({"put_object", "upload_part"})


def _read_off_loop(body: Any, cleanup: contextlib.ExitStack) -> tuple[Any, int | None]:
    """``body``'s bytes, read on this worker: as bytes when small, else in a temporary
    file (closed by ``cleanup``) that aiobotocore can reread cheaply, with its CRC32."""
    pieces: list[bytes] = []
    size = 0
    while size <= _SPOOL_ABOVE:
        piece = body.read(_READ_PIECE)
        if not piece:
            return b"".join(pieces), None
        pieces.append(piece)
        size += len(piece)
        cooperate()
    spool = cleanup.enter_context(tempfile.TemporaryFile())  # noqa: SIM115 - closed by cleanup
    crc = 0
    for piece in itertools.chain(pieces, iter(functools.partial(body.read, _READ_PIECE), b"")):
        spool.write(piece)
        crc = zlib.crc32(piece, crc)
        cooperate()
    spool.flush()
    spool.seek(0)
    return spool, crc


class _SyncS3:
    """What EncryptionClient sees: aiobotocore's S3 client, made blocking per call."""

    def __init__(self, client: Any):
        self._client = client
        self.exceptions = client.exceptions
        self.meta = client.meta

    def _checksum_here(self, kwargs: dict[str, Any], spooled: bool) -> bool:
        """Whether botocore would add a CRC32 of this large body by itself."""
        body = kwargs.get("Body")
        if not spooled and not (isinstance(body, bytes | bytearray) and len(body) >= _LARGE_BODY):
            return False
        return botocore_adds_crc32(self._client, kwargs)

    def get_paginator(self, name: str) -> _SyncPaginator:
        return _SyncPaginator(self._client.get_paginator(name))

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if not callable(attribute):
            return attribute

        @functools.wraps(attribute)
        def call(*args: Any, **kwargs: Any) -> Any:
            with contextlib.ExitStack() as cleanup:
                if name in _CHECKSUMMED:
                    body, crc = kwargs.get("Body"), None
                    if body is not None and not isinstance(body, bytes | bytearray | str):
                        # A stream (s3cse's encrypting reader): botocore would read it,
                        # encrypting, on the event loop, once per pass. Read it here.
                        kwargs["Body"], crc = _read_off_loop(body, cleanup)
                    if self._checksum_here(kwargs, spooled=crc is not None):
                        # botocore would compute this on the event loop; do it here.
                        crc = zlib.crc32(kwargs["Body"]) if crc is None else crc
                        kwargs["ChecksumCRC32"] = base64.b64encode(crc.to_bytes(4, "big")).decode()
                result = attribute(*args, **kwargs)
                if inspect.isawaitable(result):
                    result = run_awaitable(result)
            if isinstance(result, dict) and "Body" in result and hasattr(result["Body"], "read"):
                result = dict(result, Body=_SyncBody(result["Body"]))
            return result

        return call


class AsyncDecryptedBody:
    """The plaintext ``Body`` of :meth:`AsyncEncryptionClient.get_object`: ``await read(n)``,
    ``async for chunk in iter_chunks(n)``, ``async with``, ``await close()``.

    One read runs at a time. A read cancelled (or timed out) before its bytes arrived
    loses nothing: they are returned by the next read. One cancelled while they were
    arriving leaves the body closed, and the next read raises
    :class:`~s3cse.errors.ReadInterruptedError` with the position to resume from."""

    def __init__(self, body: Any, client: AsyncEncryptionClient, bucket: Any, key: Any):
        self._body = body
        self._client = client
        self._bucket, self._key = bucket, key
        self._lock = asyncio.Lock()
        self._pending = b""
        self._position = 0  # plaintext bytes returned so far
        self._interrupted: ReadInterruptedError | None = None

    def _read_on_worker(self, amt: int | None) -> bytes:
        try:
            data: bytes = self._body.read(amt)
        except CallCancelled:
            # Cut off mid-read: what was decrypted of this read is gone with it.
            with contextlib.suppress(Exception):
                self._body.close()
            raise
        return data

    def _settled(self, future: concurrent.futures.Future[bytes]) -> None:
        """After a cancelled read: keep its bytes, or remember that they are lost. (Any
        other failure the body itself remembers, and raises again on the next read.)"""
        if future.cancelled():  # never started: nothing was read
            return
        if future.exception() is None:
            self._pending += future.result()  # after what was pending: they follow it
        elif isinstance(future.exception(), CallCancelled):
            self._interrupted = ReadInterruptedError(
                f"a read of this body was cancelled while its bytes were arriving, after "
                f"{self._position} bytes of plaintext were returned: the rest cannot be "
                f"returned in order; call get_object again (Range='bytes={self._position}-' "
                "resumes)",
                position=self._position,
                bucket=self._bucket,
                key=self._key,
            )

    async def read(self, amt: int | None = None) -> bytes:
        async with self._lock:
            if self._interrupted is not None:
                raise self._interrupted
            if amt is not None and 0 <= amt <= len(self._pending):
                data, self._pending = self._pending[:amt], self._pending[amt:]
            else:
                want = None if amt is None or amt < 0 else amt - len(self._pending)
                more = await self._client._run(self._read_on_worker, want, settled=self._settled)
                data, self._pending = self._pending + more, b""
            self._position += len(data)
            return data

    async def iter_chunks(self, chunk_size: int = 1024 * 1024) -> AsyncIterator[bytes]:
        while True:
            chunk = await self.read(chunk_size)
            if not chunk:
                return
            yield chunk

    async def iter_lines(
        self, chunk_size: int = 1024 * 1024, keepends: bool = False
    ) -> AsyncIterator[bytes]:
        pending = b""
        async for chunk in self.iter_chunks(chunk_size):
            lines, pending = split_lines(pending, chunk, keepends)
            for line in lines:
                yield line
        if pending:
            yield pending.splitlines(keepends)[0]

    async def close(self) -> None:
        async with self._lock:
            self._pending = b""
            # Here, on the loop's thread: closing only drops buffers and the connection,
            # and works after the client was closed.
            self._body.close()

    async def __aenter__(self) -> AsyncDecryptedBody:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


#: Arguments that are progress callbacks, called on the event loop.
_CALLBACKS = ("Callback", "progress")


def _on_loop(loop: asyncio.AbstractEventLoop, callback: Callable[..., Any]) -> Callable[..., None]:
    def call(*args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody to tell
            loop.call_soon_threadsafe(callback, *args)

    return call


async def _settle(future: asyncio.Future[Any]) -> None:
    """Wait for ``future`` to finish, whatever it raises, even if cancelled meanwhile."""
    while not future.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait([future])


class AsyncEncryptionClient:
    """The asyncio twin of :class:`s3cse.EncryptionClient`: same constructor options,
    same methods (awaitable), same errors, same formats."""

    def __init__(
        self, s3_client: Any, keyring: Any = None, *, max_threads: int = 64, **options: Any
    ):
        if isinstance(s3_client, AsyncEncryptionClient | EncryptionClient):
            raise ConfigurationError(
                "an encryption client cannot wrap another one (objects would be encrypted "
                "twice); pass the plain aiobotocore S3 client"
            )
        self._aio = s3_client
        self._sync = EncryptionClient(_SyncS3(s3_client), keyring=keyring, **options)
        self._threads = concurrent.futures.ThreadPoolExecutor(
            max_threads, thread_name_prefix="s3cse-aio"
        )
        self._closed = False

    def __repr__(self) -> str:
        return "Async" + repr(self._sync)

    @property
    def s3_client(self) -> Any:
        return self._aio

    async def _run(
        self,
        fn: Callable[..., T],
        *args: Any,
        settled: Callable[[concurrent.futures.Future[T]], None] | None = None,
        **kwargs: Any,
    ) -> T:
        """Run ``fn`` on a worker thread whose S3/KMS requests come back to this loop.

        If the awaiting task is cancelled, the worker is cancelled too and waited for
        (its cleanup needs this loop) before the cancel goes on; ``settled`` then sees
        how it ended."""
        loop = asyncio.get_running_loop()
        call = Call(loop)
        context = contextvars.copy_context()
        context.run(CALL.set, call)
        try:
            if self._closed:
                raise RuntimeError("closed")
            submitted = self._threads.submit(functools.partial(context.run, fn, *args, **kwargs))
        except RuntimeError:  # closed, or the interpreter is shutting down
            raise ClientClosedError(
                "this AsyncEncryptionClient was closed (await client.close(), or the end of "
                "its async with block); make the call before closing it, or use a new client",
                bucket=kwargs.get("Bucket"),
                key=kwargs.get("Key"),
            ) from None
        future = asyncio.wrap_future(submitted, loop=loop)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            if submitted.cancel():  # not started: nothing to undo
                if settled is not None:
                    settled(submitted)
                raise
            call.cancel()
            await _settle(future)
            if not future.cancelled():
                future.exception()  # retrieved: how the worker ended is settled's to judge
            if settled is not None:
                settled(submitted)
            else:
                _drop_result(submitted)
            raise
        except CallCancelled:  # never let it reach the task (it is a BaseException)
            raise asyncio.CancelledError() from None

    async def close(self) -> None:
        """Refuse new calls and let the worker threads end when idle (never waits for them:
        calls in flight finish, or are cancelled by their callers)."""
        self._closed = True
        self._threads.shutdown(wait=False)

    async def __aenter__(self) -> AsyncEncryptionClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def get_object(self, **kwargs: Any) -> dict[str, Any]:
        response: dict[str, Any] = await self._run(self._sync.get_object, **kwargs)
        response["Body"] = AsyncDecryptedBody(
            response["Body"], self, kwargs.get("Bucket"), kwargs.get("Key")
        )
        return response

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        method = getattr(self._sync, name)  # raises UnsafeOperationError where the sync one does
        if not callable(method):
            return method
        try:
            signature: inspect.Signature | None = inspect.signature(method)
        except (TypeError, ValueError):
            signature = None
        takes_callbacks = signature is not None and any(
            p in signature.parameters for p in _CALLBACKS
        )

        @functools.wraps(method)
        async def call(*args: Any, **kwargs: Any) -> Any:
            if takes_callbacks and signature is not None:
                bound = signature.bind(*args, **kwargs)
                loop = asyncio.get_running_loop()
                for p in _CALLBACKS:
                    if callable(bound.arguments.get(p)):
                        bound.arguments[p] = _on_loop(loop, bound.arguments[p])
                args, kwargs = bound.args, bound.kwargs
            return await self._run(method, *args, **kwargs)

        return call


def _drop_result(done: concurrent.futures.Future[Any]) -> None:
    """A call that finished although its caller was cancelled: release what its result
    holds (a get_object body holds a connection or a spool) since nobody will."""
    if done.cancelled() or done.exception() is not None:
        return
    result = done.result()
    body = result.get("Body") if isinstance(result, dict) else None
    if body is not None and hasattr(body, "close"):
        with contextlib.suppress(Exception):
            body.close()
