"""Bridging blocking shell code to an asyncio event loop (used by s3cse.aio).

Each call of the async client runs the blocking shell logic on worker threads, under a
:class:`Call` carried in a context variable (so the threads a transfer starts see it
too). A call into an aiobotocore client from those threads returns an awaitable, which
:func:`run_awaitable` runs on the call's loop and waits for.

A :class:`Call` can be cancelled (its awaiting task was): requests in flight are
cancelled on the loop, and the next request or :func:`cooperate` point raises
:class:`CallCancelled`, which unwinds the shell logic through its cleanup. Cleanup
that must still reach S3 (aborting a multipart upload, closing a body) runs inside
:func:`cleanup`. A worker never waits for a loop that has stopped: it raises
:class:`~s3cse.errors.EventLoopStoppedError` instead, so no thread outlives the loop
(the interpreter joins worker threads at exit).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import inspect
import threading
import time
from collections.abc import Awaitable, Iterator
from typing import Any, TypeVar

from .errors import ConfigurationError, EventLoopStoppedError

T = TypeVar("T")

#: How often a worker waiting on the loop checks that the loop still runs.
_LOOP_CHECK_EVERY = 0.1


class CallCancelled(BaseException):
    """The async call this work belongs to was cancelled: stop, clean up, and go.

    A BaseException, like :class:`asyncio.CancelledError`, so that ``except Exception``
    in the shell (retries, best-effort steps) lets it through."""


class Call:
    """One call of the async client: its event loop, and whether it was cancelled."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self._cancelled = False
        self._lock = threading.Lock()
        self._in_flight: set[concurrent.futures.Future[Any]] = set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def cancel(self) -> None:
        """Cancel the requests in flight; later requests (but cleanup) raise CallCancelled."""
        with self._lock:
            self._cancelled = True
            in_flight = list(self._in_flight)
        for future in in_flight:
            future.cancel()

    def loop_stopped(self) -> bool:
        return self.loop.is_closed() or not self.loop.is_running()

    def _track(self, future: concurrent.futures.Future[Any]) -> bool:
        """Record ``future`` as in flight (cancelled by :meth:`cancel`); False if the call
        was cancelled already. Cleanup requests are never recorded: no cancel stops them."""
        if _CLEANING.get():
            return True
        with self._lock:
            if self._cancelled:
                return False
            self._in_flight.add(future)
            return True

    def _done(self, future: concurrent.futures.Future[Any]) -> None:
        with self._lock:
            self._in_flight.discard(future)


CALL: contextvars.ContextVar[Call | None] = contextvars.ContextVar("s3cse_call", default=None)
_CLEANING: contextvars.ContextVar[bool] = contextvars.ContextVar("s3cse_cleaning", default=False)


def in_async_call() -> bool:
    """Whether this thread works for an async client call."""
    return CALL.get() is not None


@contextlib.contextmanager
def cleanup() -> Iterator[None]:
    """Requests made in this block are sent even if the call was cancelled (aborting what
    the call started must still reach S3); they are not cancelled by a later cancel."""
    token = _CLEANING.set(True)
    try:
        yield
    finally:
        _CLEANING.reset(token)


def _stopped_error() -> EventLoopStoppedError:
    return EventLoopStoppedError(
        "the event loop this async call was started on is no longer running (the loop was "
        "stopped or closed while the call was neither awaited to its end nor cancelled), so "
        "its S3/KMS request cannot be sent; await or cancel s3cse's async calls before the "
        "loop ends"
    )


def _discard(awaitable: Awaitable[Any]) -> None:
    """Close a coroutine that never started (no 'never awaited' warning; no code runs)."""
    if inspect.iscoroutine(awaitable) and inspect.getcoroutinestate(awaitable) == "CORO_CREATED":
        awaitable.close()


async def _as_coroutine(awaitable: Awaitable[T]) -> T:
    return await awaitable


def run_awaitable(awaitable: Awaitable[T]) -> T:
    """Run ``awaitable`` on the async call's event loop and wait for its result."""
    call = CALL.get()
    if call is None:
        _discard(awaitable)
        raise ConfigurationError(
            "an asyncio client (aiobotocore) was used from synchronous code; use it through "
            "s3cse.aio.AsyncEncryptionClient, or give the keyring a boto3 client"
        )
    coroutine = _as_coroutine(awaitable)
    if call.loop_stopped():
        coroutine.close()
        _discard(awaitable)
        raise _stopped_error()
    future: concurrent.futures.Future[T] = concurrent.futures.Future()
    if not call._track(future):
        coroutine.close()
        _discard(awaitable)
        raise CallCancelled()
    try:
        try:
            scheduled = asyncio.run_coroutine_threadsafe(coroutine, call.loop)
        except RuntimeError:  # closed in between
            coroutine.close()
            _discard(awaitable)
            raise _stopped_error() from None
        # The call's cancel() cancels ``future``; pass that on to the loop's task.
        future.add_done_callback(
            lambda f: scheduled.cancel() if f.cancelled() and not call.loop.is_closed() else None
        )
        while True:
            # Wait without result(timeout=): on Python 3.11+ its TimeoutError is the one an
            # awaitable raises (aiobotocore's read timeout), which would read as "not yet".
            concurrent.futures.wait([scheduled], timeout=_LOOP_CHECK_EVERY)
            if scheduled.done():
                try:
                    return scheduled.result()
                except concurrent.futures.CancelledError:
                    raise CallCancelled() from None
            if call.loop_stopped():
                if not call.loop.is_closed():
                    scheduled.cancel()
                # Never started: close it here (no code runs); else the loop owns it.
                if inspect.getcoroutinestate(coroutine) == "CORO_CREATED":
                    coroutine.close()
                    _discard(awaitable)
                raise _stopped_error()
    finally:
        call._done(future)


def resolve(result: Any) -> Any:
    """``result``, or its value if it is awaitable (an aiobotocore call)."""
    return run_awaitable(result) if inspect.isawaitable(result) else result


#: Longest stretch of crypto a worker thread runs before it hands the GIL to the loop.
_HAND_OVER_EVERY = 0.004
_last_hand_over = threading.local()


def cooperate() -> None:
    """Let the event loop run, if this worker thread has been busy for a while; stop here
    (raise :class:`CallCancelled`) if the call was cancelled, or
    :class:`~s3cse.errors.EventLoopStoppedError` if its loop has stopped.

    CPython's GIL does not guarantee the loop thread a turn: a worker that computes and
    makes short GIL-releasing calls in between (cipher set-up, small reads, lock hand-offs)
    takes the GIL straight back each time, and a waiting thread only asks for a forced
    switch after a whole switch interval *without any* switch, so the loop can wait for as
    long as the worker has work (seen: over 100 ms at the start of a large upload). Shell
    loops call this between chunks; on a loop's worker thread it blocks until the loop has
    run one callback (so the loop has had the GIL), at most once per ``_HAND_OVER_EVERY``
    seconds. Outside the async client it returns at once.
    """
    call = CALL.get()
    if call is None:
        return
    if call.cancelled and not _CLEANING.get():
        raise CallCancelled()
    now = time.perf_counter()
    if now - getattr(_last_hand_over, "at", 0.0) < _HAND_OVER_EVERY:
        return
    if call.loop_stopped():
        raise _stopped_error()
    ran = threading.Event()
    try:
        call.loop.call_soon_threadsafe(ran.set)
    except RuntimeError:  # closed in between
        raise _stopped_error() from None
    ran.wait(1.0)
    _last_hand_over.at = time.perf_counter()
