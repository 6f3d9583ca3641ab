"""asyncio: ``AsyncEncryptionClient`` over an aiobotocore S3 client (and KMS client).

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
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from ._body import split_lines
from ._bridge import LOOP, cooperate, run_awaitable
from ._s3args import botocore_adds_crc32
from .client import EncryptionClient
from .errors import ConfigurationError

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
    ``async for chunk in iter_chunks(n)``, ``async with``, ``await close()``."""

    def __init__(self, body: Any, runner: Callable[..., Awaitable[Any]]):
        self._body = body
        self._run = runner

    async def read(self, amt: int | None = None) -> bytes:
        data: bytes = await self._run(self._body.read, amt)
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
        await self._run(self._body.close)

    async def __aenter__(self) -> AsyncDecryptedBody:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


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

    def __repr__(self) -> str:
        return "Async" + repr(self._sync)

    @property
    def s3_client(self) -> Any:
        return self._aio

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn`` on a worker thread whose S3/KMS requests come back to this loop."""
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()
        context.run(LOOP.set, loop)
        return await loop.run_in_executor(
            self._threads, functools.partial(context.run, fn, *args, **kwargs)
        )

    async def close(self) -> None:
        self._threads.shutdown(wait=False)

    async def __aenter__(self) -> AsyncEncryptionClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def get_object(self, **kwargs: Any) -> dict[str, Any]:
        response = await self._run(self._sync.get_object, **kwargs)
        response["Body"] = AsyncDecryptedBody(response["Body"], self._run)
        return response

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        method = getattr(self._sync, name)  # raises UnsafeOperationError where the sync one does
        if not callable(method):
            return method

        @functools.wraps(method)
        async def call(*args: Any, **kwargs: Any) -> Any:
            return await self._run(method, *args, **kwargs)

        return call
