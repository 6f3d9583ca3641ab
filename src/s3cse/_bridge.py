"""Bridging blocking shell code to an asyncio event loop (used by s3cse.aio).

A worker thread started by the async client carries the loop in a context variable;
a call into an aiobotocore client from that thread returns an awaitable, which
:func:`run_awaitable` runs on the loop and waits for.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
from collections.abc import Awaitable
from typing import Any, TypeVar

from .errors import ConfigurationError

T = TypeVar("T")

LOOP: contextvars.ContextVar[asyncio.AbstractEventLoop | None] = contextvars.ContextVar(
    "s3cse_loop", default=None
)


async def _as_coroutine(awaitable: Awaitable[T]) -> T:
    return await awaitable


def run_awaitable(awaitable: Awaitable[T]) -> T:
    """Run ``awaitable`` on the async client's event loop and wait for its result."""
    loop = LOOP.get()
    if loop is None:
        if inspect.iscoroutine(awaitable):
            awaitable.close()
        raise ConfigurationError(
            "an asyncio client (aiobotocore) was used from synchronous code; use it through "
            "s3cse.aio.AsyncEncryptionClient, or give the keyring a boto3 client"
        )
    return asyncio.run_coroutine_threadsafe(_as_coroutine(awaitable), loop).result()


def resolve(result: Any) -> Any:
    """``result``, or its value if it is awaitable (an aiobotocore call)."""
    return run_awaitable(result) if inspect.isawaitable(result) else result
