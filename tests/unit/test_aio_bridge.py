"""The async shell's plumbing, without servers: hand-over to the loop, checksums off it,
cancellation, and never waiting for a loop that has stopped."""

from __future__ import annotations

import asyncio
import base64
import contextvars
import gc
import threading
import time
import warnings
import zlib

import pytest
from botocore.config import Config

from s3cse import _bridge
from s3cse.aio import _SyncS3
from s3cse.errors import EventLoopStoppedError


def test_cooperate_without_a_loop_returns_at_once(monkeypatch):
    def no_waiting(*args, **kwargs):
        raise AssertionError("cooperate() waited without a loop")

    monkeypatch.setattr(_bridge.threading, "Event", no_waiting)  # what a hand-over waits on
    for _ in range(1000):
        _bridge.cooperate()


def test_cooperate_lets_the_loop_run_a_callback():
    ran_on_loop: list[str] = []

    async def main():
        loop = asyncio.get_running_loop()
        original = loop.call_soon_threadsafe

        def spy(callback, *args):
            if getattr(callback, "__qualname__", "") == "Event.set":  # cooperate's hand-over
                ran_on_loop.append(threading.current_thread().name)
            return original(callback, *args)

        loop.call_soon_threadsafe = spy  # type: ignore[method-assign]

        def worker():
            _bridge.CALL.set(_bridge.Call(loop))
            _bridge._last_hand_over.at = 0.0
            _bridge.cooperate()  # busy long enough: hands over
            _bridge.cooperate()  # right after a hand-over: does not
            time.sleep(_bridge._HAND_OVER_EVERY * 2)
            _bridge.cooperate()  # hands over again

        await loop.run_in_executor(None, contextvars.copy_context().run, worker)

    asyncio.run(main())
    assert len(ran_on_loop) == 2


def test_cooperate_with_a_closed_loop_raises_instead_of_blocking(monkeypatch):
    loop = asyncio.new_event_loop()
    loop.close()
    waits = []

    class Event(threading.Event):
        def wait(self, timeout=None):
            waits.append(timeout)
            return super().wait(0)

    monkeypatch.setattr(_bridge.threading, "Event", Event)

    def worker():
        _bridge.CALL.set(_bridge.Call(loop))
        _bridge._last_hand_over.at = 0.0
        _bridge.cooperate()

    with pytest.raises(EventLoopStoppedError, match="no longer running"):
        contextvars.copy_context().run(worker)
    assert waits == []  # nothing to yield to: no wait for a callback that never runs


def _in_worker(fn):
    """Run ``fn`` on a new thread; (its result or exception). The join is bounded: a
    worker that waited for a stopped loop would hang the interpreter at exit."""
    outcome: list = []

    def run():
        try:
            outcome.append(("ok", fn()))
        except BaseException as exc:
            outcome.append(("raised", exc))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(30)
    assert not thread.is_alive(), "the worker still waits for a loop that stopped"
    return outcome[0]


async def _forever():
    await asyncio.Event().wait()


def _never_awaited_warnings(fn):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fn()
        gc.collect()
    return result, [w for w in caught if "never awaited" in str(w.message)]


@pytest.mark.parametrize("state", ["closed", "never run again"])
def test_a_request_for_a_loop_that_is_not_running_raises_and_leaves_no_coroutine(state):
    loop = asyncio.new_event_loop()
    if state == "closed":
        loop.close()

    def worker():
        _bridge.CALL.set(_bridge.Call(loop))
        return _bridge.run_awaitable(_forever())

    (kind, result), warned = _never_awaited_warnings(
        lambda: _in_worker(lambda: contextvars.copy_context().run(worker))
    )
    assert kind == "raised" and isinstance(result, EventLoopStoppedError), result
    assert "await or cancel" in str(result)
    assert warned == []
    loop.close()


def test_a_worker_waiting_on_a_loop_that_then_stops_raises():
    """As after run_until_complete() returns with the call's task still pending: the loop
    exists but never runs again. The worker must not wait for it forever."""
    loop = asyncio.new_event_loop()
    started = threading.Event()

    async def request():
        started.set()
        await asyncio.Event().wait()  # a response that never comes

    def worker():
        _bridge.CALL.set(_bridge.Call(loop))
        return _bridge.run_awaitable(request())

    outcome: list = []
    thread = threading.Thread(
        target=lambda: outcome.append(_in_worker(lambda: contextvars.copy_context().run(worker)))
    )

    async def until_started():
        thread.start()
        for _ in range(3000):  # bounded: 30 s
            if started.is_set():
                return
            await asyncio.sleep(0.01)
        raise AssertionError("the request never ran on the loop")

    loop.run_until_complete(until_started())  # the request runs, then the loop stops
    thread.join(60)
    assert not thread.is_alive()
    kind, result = outcome[0]
    assert kind == "raised" and isinstance(result, EventLoopStoppedError), result
    loop.close()


def test_cancel_stops_the_request_in_flight_and_later_ones_but_not_cleanup():
    async def main():
        loop = asyncio.get_running_loop()
        call = _bridge.Call(loop)
        in_flight = asyncio.Event()
        cancelled_on_loop = []

        async def request():
            in_flight.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled_on_loop.append(True)
                raise

        async def cleanup_request():
            return "aborted"

        def worker():
            _bridge.CALL.set(call)
            outcome = []
            try:
                _bridge.run_awaitable(request())
            except _bridge.CallCancelled:
                outcome.append("cancelled")
            try:
                _bridge.run_awaitable(request())
            except _bridge.CallCancelled:
                outcome.append("refused")
            try:
                _bridge.cooperate()
            except _bridge.CallCancelled:
                outcome.append("stopped")
            with _bridge.cleanup():
                outcome.append(_bridge.run_awaitable(cleanup_request()))
                _bridge.cooperate()  # cleanup is not stopped either
            return outcome

        work = loop.run_in_executor(None, contextvars.copy_context().run, worker)
        await in_flight.wait()
        call.cancel()
        outcome = await work
        return outcome, cancelled_on_loop

    outcome, cancelled_on_loop = asyncio.run(main())
    assert outcome == ["cancelled", "refused", "stopped", "aborted"]
    assert cancelled_on_loop == [True]  # the request was cancelled on the loop, not left behind


class _RecordingS3:
    """Stands in for an aiobotocore client: records what the async shell sends."""

    def __init__(self, config: Config):
        self.meta = type("Meta", (), {"config": config})()
        self.exceptions = None
        self.calls: list[dict] = []

    def upload_part(self, **kwargs):
        self.calls.append(kwargs)
        return {"ETag": '"x"'}


def test_crc32_of_a_large_body_is_computed_on_the_worker():
    recorder = _RecordingS3(Config())
    body = bytes(range(256)) * 8192  # 2 MiB
    _SyncS3(recorder).upload_part(Bucket="b", Key="k", UploadId="u", PartNumber=1, Body=body)
    expected = base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()
    assert recorder.calls[0]["ChecksumCRC32"] == expected


def test_a_requested_checksum_or_a_small_body_is_left_to_botocore():
    recorder = _RecordingS3(Config())
    body = b"\0" * (2 * 1024 * 1024)
    sync = _SyncS3(recorder)
    sync.upload_part(Body=body, ChecksumAlgorithm="SHA256")
    sync.upload_part(Body=body, ChecksumSHA256="abc=")
    sync.upload_part(Body=b"small")
    assert all("ChecksumCRC32" not in call for call in recorder.calls)
    when_required = _RecordingS3(Config(request_checksum_calculation="when_required"))
    _SyncS3(when_required).upload_part(Body=body)
    assert "ChecksumCRC32" not in when_required.calls[0]


class _Stream:
    """A file-like body that hands out short reads, like a socket or a pipe."""

    def __init__(self, data: bytes):
        self._data = memoryview(data)

    def read(self, amt: int = -1) -> bytes:
        amt = min(amt if amt >= 0 else len(self._data), 100_000)
        piece, self._data = bytes(self._data[:amt]), self._data[amt:]
        return piece


def test_a_stream_body_is_read_on_the_worker_small_into_bytes_large_into_a_spool():
    recorder = _RecordingS3(Config())
    recorder.put_object = recorder.upload_part  # type: ignore[attr-defined]
    sync = _SyncS3(recorder)
    small, large = bytes(range(256)) * 4096, bytes(range(256)) * 50_000  # 1 MiB, 12.2 MiB
    sync.put_object(Bucket="b", Key="small", Body=_Stream(small))
    seen: list[bytes] = []
    original = recorder.upload_part

    def reading(**kwargs):
        seen.append(kwargs["Body"].read())  # what aiobotocore would send, read while open
        return original(**kwargs)

    recorder.put_object = reading  # type: ignore[attr-defined]
    sync.put_object(Bucket="b", Key="large", Body=_Stream(large))
    first, second = recorder.calls
    assert first["Body"] == small and isinstance(first["Body"], bytes)
    assert seen == [large]
    assert (
        second["ChecksumCRC32"] == base64.b64encode(zlib.crc32(large).to_bytes(4, "big")).decode()
    )
    assert second["Body"].closed  # the spool is gone once the request is done


def test_a_request_that_raises_timeout_error_fails_instead_of_spinning():
    """aiobotocore's read timeout is an asyncio.TimeoutError, which on Python 3.11+ is the
    TimeoutError that concurrent.futures' result(timeout=) raises: it must not read as
    "no result yet"."""

    async def main():
        loop = asyncio.get_running_loop()

        async def read_that_times_out():
            raise asyncio.TimeoutError("Read timeout on endpoint URL")

        def worker():
            _bridge.CALL.set(_bridge.Call(loop))
            return _bridge.run_awaitable(read_that_times_out())

        outcome = await loop.run_in_executor(
            None, _in_worker, lambda: contextvars.copy_context().run(worker)
        )
        return outcome

    kind, result = asyncio.run(main())
    assert kind == "raised" and isinstance(result, TimeoutError)
    assert "Read timeout" in str(result)


def test_a_cleanup_request_is_not_cut_off_by_a_cancel_that_arrives_during_it():
    async def main():
        loop = asyncio.get_running_loop()
        call = _bridge.Call(loop)
        started, release = asyncio.Event(), asyncio.Event()

        async def abort_request():
            started.set()
            await release.wait()
            return "aborted"

        def worker():
            _bridge.CALL.set(call)
            with _bridge.cleanup():
                return _bridge.run_awaitable(abort_request())

        work = loop.run_in_executor(None, contextvars.copy_context().run, worker)
        await started.wait()
        call.cancel()  # e.g. the caller's timeout, while the abort is on its way
        await asyncio.sleep(0)
        release.set()
        return await work

    assert asyncio.run(main()) == "aborted"


class _ScriptedBody:
    """A blocking body whose reads each wait for the test to let them through."""

    def __init__(self, data: bytes):
        self._data = data
        self.entered = threading.Semaphore(0)
        self.proceed = threading.Semaphore(0)
        self.closed = False

    def read(self, amt=None):
        self.entered.release()
        assert self.proceed.acquire(timeout=30), "the test never let the read through"
        amt = len(self._data) if amt is None or amt < 0 else amt
        piece, self._data = self._data[:amt], self._data[amt:]
        return piece

    def close(self):
        self.closed = True


def test_reads_cancelled_after_their_bytes_were_read_keep_them_in_order():
    from s3cse.aio import AsyncDecryptedBody, AsyncEncryptionClient

    class _Client:  # what AsyncEncryptionClient needs of an aiobotocore client here
        exceptions = None
        meta = type("Meta", (), {"config": Config()})()

        def put_object(self, **kwargs): ...

        def get_object(self, **kwargs): ...

    async def main():
        loop = asyncio.get_running_loop()
        client = AsyncEncryptionClient(_Client(), keyring=_bridge_keyring())
        scripted = _ScriptedBody(b"0123456789abcdef")
        body = AsyncDecryptedBody(scripted, client, "b", "k")
        for amt in (4, 8):  # the second read asks for more than the 4 bytes kept
            read = asyncio.ensure_future(body.read(amt))
            assert await loop.run_in_executor(None, scripted.entered.acquire, True, 30)
            read.cancel()
            await asyncio.sleep(0)
            scripted.proceed.release()  # the worker finishes after the cancel
            with pytest.raises(asyncio.CancelledError):
                await read
        rest = body.read()
        scripted.proceed.release()
        data = await rest
        await client.close()
        return data

    assert asyncio.run(main()) == b"0123456789abcdef"


def _bridge_keyring():
    import s3cse

    return s3cse.AesKeyring(b"\x11" * 32)
