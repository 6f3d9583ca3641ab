"""Bridging blocking shell code to an asyncio event loop (used by s3cse.aio).

A worker thread started by the async client carries the loop in a context variable;
a call into an aiobotocore client from that thread returns an awaitable, which
:func:`run_awaitable` runs on the loop and waits for.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import threading
import time
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


#: Longest stretch of crypto a worker thread runs before it hands the GIL to the loop.
_HAND_OVER_EVERY = 0.004
_last_hand_over = threading.local()


def cooperate() -> None:
    """Let the event loop run, if this worker thread has been busy for a while.

    CPython's GIL does not guarantee the loop thread a turn: a worker that computes and
    makes short GIL-releasing calls in between (cipher set-up, small reads, lock hand-offs)
    takes the GIL straight back each time, and a waiting thread only asks for a forced
    switch after a whole switch interval *without any* switch, so the loop can wait for as
    long as the worker has work (seen: over 100 ms at the start of a large upload). Shell
    loops call this between chunks; on a loop's worker thread it blocks until the loop has
    run one callback (so the loop has had the GIL), at most once per ``_HAND_OVER_EVERY``
    seconds. Outside the async client it returns at once.
    """
    loop = LOOP.get()
    if loop is None:
        return
    now = time.perf_counter()
    if now - getattr(_last_hand_over, "at", 0.0) < _HAND_OVER_EVERY:
        return
    ran = threading.Event()
    try:
        loop.call_soon_threadsafe(ran.set)
    except RuntimeError:  # the loop is closed: nothing to yield to
        return
    ran.wait(1.0)
    _last_hand_over.at = time.perf_counter()
