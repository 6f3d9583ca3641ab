"""The async client under timeouts and cancellation, as services use it: a cancelled call
stops, cleans up what it started before the cancel completes, and never loses bytes
silently. Compared with plain aiobotocore where it has a behaviour to match."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import threading

import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

import s3cse
from s3cse import aio as s3cse_aio
from s3cse.aio import AsyncEncryptionClient
from tests.integration.test_aio import aio_clients
from tests.stores import open_uploads

MiB = 1024 * 1024
_CONFIG = TransferConfig(
    multipart_threshold=8 * MiB, multipart_chunksize=8 * MiB, max_concurrency=2
)


def _exists(s3, bucket, key) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
            return False
        raise
    return True


async def _read_after_a_timeout(body, timeout: float) -> tuple[bytes, BaseException | None]:
    """Read with one timed-out read first, then the rest: (bytes read, error if any)."""
    got = bytearray()
    with contextlib.suppress(asyncio.TimeoutError):
        got += await asyncio.wait_for(body.read(2 * MiB), timeout)
    try:
        while chunk := await body.read(MiB):
            got += chunk
    except s3cse.ReadInterruptedError as exc:
        return bytes(got), exc
    return bytes(got), None


@pytest.mark.parametrize("delayed", [False, True], ids=["verified", "delayed"])
def test_a_timed_out_read_never_loses_bytes_silently(servers, bucket, aes_keyring, delayed):
    data = os.urandom(20 * MiB)

    async def main():
        s3_cm, _ = aio_clients(servers, kms=False)
        async with s3_cm as aio_s3:
            await aio_s3.put_object(Bucket=bucket, Key="plain", Body=data)
            options = {"enable_delayed_authentication": True} if delayed else {}
            client = AsyncEncryptionClient(aio_s3, keyring=aes_keyring, **options)
            await client.put_object(Bucket=bucket, Key="k", Body=data)
            for timeout in (0, 0.0005, 0.002, 0.01, 0.05):
                plain = (await aio_s3.get_object(Bucket=bucket, Key="plain"))["Body"]
                got, error = await _read_after_a_timeout(plain, timeout)
                plain.close()
                assert error is None and got == data  # what aiobotocore does
                body = (await client.get_object(Bucket=bucket, Key="k"))["Body"]
                got, error = await _read_after_a_timeout(body, timeout)
                await body.close()
                if error is None:
                    assert got == data, f"timeout {timeout}: {len(got)} of {len(data)} bytes"
                else:  # cut off mid-read: said so, with where the returned bytes end
                    assert error.position == len(got) and got == data[: len(got)]
                    assert f"Range='bytes={len(got)}-'" in str(error)
                    with pytest.raises(s3cse.ReadInterruptedError):
                        await body.read()

    asyncio.run(main())


class _Gate:
    """Wraps a body's blocking reader: each read waits (on its worker thread) until opened."""

    def __init__(self, body):
        self._body = body
        self.entered = threading.Event()
        self.open = threading.Event()

    def read(self, amt=None):
        self.entered.set()
        assert self.open.wait(30), "the test never opened the gate"
        return self._body.read(amt)

    def close(self):
        self._body.close()


def test_a_read_cancelled_before_its_bytes_are_handed_over_keeps_them(servers, bucket, aes_keyring):
    data = os.urandom(3 * MiB)

    async def main():
        s3_cm, _ = aio_clients(servers, kms=False)
        async with s3_cm as aio_s3:
            client = AsyncEncryptionClient(aio_s3, keyring=aes_keyring)
            await client.put_object(Bucket=bucket, Key="k", Body=data)
            body = (await client.get_object(Bucket=bucket, Key="k"))["Body"]
            gate = body._body = _Gate(body._body)
            read = asyncio.ensure_future(body.read(MiB))
            await asyncio.get_running_loop().run_in_executor(None, gate.entered.wait, 30)
            read.cancel()
            await asyncio.sleep(0)  # the cancel is delivered; the worker still holds the read
            gate.open.set()  # now the worker finishes its read of the first MiB
            with pytest.raises(asyncio.CancelledError):
                await read
            rest = b"".join([chunk async for chunk in body.iter_chunks(MiB)])
            await body.close()
            return rest

    assert asyncio.run(main()) == data  # the first MiB came with the next read


def test_a_read_cancelled_while_its_bytes_arrive_leaves_a_body_that_says_so(
    servers, bucket, aes_keyring, monkeypatch
):
    data = os.urandom(3 * MiB)
    stalled = threading.Event()
    original = s3cse_aio._SyncBody.read

    def stalling_read(self, amt=None):
        if stalled.is_set():
            return original(self, amt)
        stalled.set()

        async def network_that_never_answers():
            await asyncio.Event().wait()

        return s3cse_aio.run_awaitable(network_that_never_answers())

    async def main():
        s3_cm, _ = aio_clients(servers, kms=False)
        async with s3_cm as aio_s3:
            client = AsyncEncryptionClient(
                aio_s3, keyring=aes_keyring, enable_delayed_authentication=True
            )
            await client.put_object(Bucket=bucket, Key="k", Body=data)
            body = (await client.get_object(Bucket=bucket, Key="k"))["Body"]
            first = await body.read(1000)
            monkeypatch.setattr(s3cse_aio._SyncBody, "read", stalling_read)
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(body.read(2 * MiB), 0.5)
            assert stalled.is_set()
            with pytest.raises(s3cse.ReadInterruptedError, match="after 1000 bytes") as caught:
                await body.read()
            assert caught.value.position == 1000 and caught.value.key == "k"
            await body.close()  # closes without an error
            return first

    assert asyncio.run(main()) == data[:1000]


def test_reads_started_together_run_one_after_the_other(servers, bucket, aes_keyring):
    data = os.urandom(4 * MiB)

    async def main():
        s3_cm, _ = aio_clients(servers, kms=False)
        async with s3_cm as aio_s3:
            client = AsyncEncryptionClient(
                aio_s3, keyring=aes_keyring, enable_delayed_authentication=True
            )
            await client.put_object(Bucket=bucket, Key="k", Body=data)
            body = (await client.get_object(Bucket=bucket, Key="k"))["Body"]
            # Two reads and a close at once: no "generator already executing", in order.
            first, second = await asyncio.gather(body.read(MiB), body.read(MiB))
            rest = await body.read()
            await body.close()
            return first + second + rest

    assert asyncio.run(main()) == data


def _first_progress_then(cancel):
    """A progress callback that runs ``cancel`` once, after the first progress report;
    and the threads it was called on."""
    threads: list[str] = []
    reported: list[int] = []

    def callback(amount: int) -> None:
        threads.append(threading.current_thread().name)
        reported.append(amount)
        if len(reported) == 1:
            cancel()

    return callback, threads, reported


def test_cancelling_an_upload_stops_it_and_aborts_before_the_cancel_completes(
    servers, s3, bucket, aes_keyring, tmp_path
):
    source = tmp_path / "big"
    source.write_bytes(os.urandom(64 * MiB))

    async def main():
        s3_cm, _ = aio_clients(servers, kms=False)
        async with s3_cm as aio_s3:
            client = AsyncEncryptionClient(aio_s3, keyring=aes_keyring)
            task: asyncio.Task | None = None
            callback, threads, _ = _first_progress_then(lambda: task.cancel())
            task = asyncio.ensure_future(
                client.upload_file(str(source), bucket, "up", Callback=callback, Config=_CONFIG)
            )
            with pytest.raises(asyncio.CancelledError):
                await task
            # The cancel is complete: the work has stopped and what it started is undone.
            assert open_uploads(s3, bucket) == []
            assert not _exists(s3, bucket, "up")
            await asyncio.sleep(0.5)
            assert not _exists(s3, bucket, "up")  # and it does not appear later
            return threads

    threads = asyncio.run(main())
    assert set(threads) == {threading.main_thread().name}  # progress is reported on the loop


def test_cancelling_a_download_leaves_no_destination_file(
    servers, s3, bucket, aes_keyring, tmp_path
):
    data = os.urandom(48 * MiB)
    s3cse.EncryptionClient(s3, keyring=aes_keyring).upload_fileobj(
        io.BytesIO(data), bucket, "down", Config=_CONFIG
    )
    destination = tmp_path / "out" / "down.bin"
    destination.parent.mkdir()

    async def main():
        s3_cm, _ = aio_clients(servers, kms=False)
        async with s3_cm as aio_s3:
            client = AsyncEncryptionClient(aio_s3, keyring=aes_keyring)
            task: asyncio.Task | None = None
            callback, threads, _ = _first_progress_then(lambda: task.cancel())
            task = asyncio.ensure_future(
                client.download_file(
                    bucket, "down", str(destination), Callback=callback, Config=_CONFIG
                )
            )
            with pytest.raises(asyncio.CancelledError):
                await task
            assert list(destination.parent.iterdir()) == []  # no file, no temporary file
            await asyncio.sleep(0.5)
            assert list(destination.parent.iterdir()) == []
            # and the same client downloads it whole afterwards, reporting on the loop
            callback, threads, reported = _first_progress_then(lambda: None)
            await client.download_file(
                bucket, "down", str(destination), Callback=callback, Config=_CONFIG
            )
            return threads, sum(reported)

    threads, reported = asyncio.run(main())
    assert destination.read_bytes() == data and reported == len(data)
    assert set(threads) == {threading.main_thread().name}


def test_a_timed_out_put_object_of_a_large_stream_stores_nothing(
    servers, s3, bucket, aes_keyring, tmp_path
):
    source = tmp_path / "big"
    source.write_bytes(os.urandom(32 * MiB))

    async def main():
        s3_cm, _ = aio_clients(servers, kms=False)
        async with s3_cm as aio_s3:
            client = AsyncEncryptionClient(aio_s3, keyring=aes_keyring)
            with source.open("rb") as f:
                try:
                    await asyncio.wait_for(client.put_object(Bucket=bucket, Key="p", Body=f), 0.05)
                except asyncio.TimeoutError:
                    return False
            return True

    finished = asyncio.run(main())
    # One PUT: either it completed in time (then the object is whole) or nothing is stored.
    if finished:
        got = s3cse.EncryptionClient(s3, keyring=aes_keyring).get_object(Bucket=bucket, Key="p")
        assert got["Body"].read() == source.read_bytes()
    else:
        assert not _exists(s3, bucket, "p")


def test_a_closed_client_says_so(servers, aes_keyring):
    async def main():
        s3_cm, _ = aio_clients(servers, kms=False)
        async with s3_cm as aio_s3:
            async with AsyncEncryptionClient(aio_s3, keyring=aes_keyring) as client:
                pass
            with pytest.raises(s3cse.ClientClosedError, match="was closed"):
                await client.put_object(Bucket="b", Key="k", Body=b"x")
            with pytest.raises(s3cse.ClientClosedError):
                await client.get_object(Bucket="b", Key="k")

    asyncio.run(main())


def test_a_body_can_be_closed_after_its_client(servers, bucket, aes_keyring):
    async def main():
        s3_cm, _ = aio_clients(servers, kms=False)
        async with s3_cm as aio_s3:
            async with AsyncEncryptionClient(aio_s3, keyring=aes_keyring) as client:
                await client.put_object(Bucket=bucket, Key="k", Body=b"x" * 5000)
                body = (await client.get_object(Bucket=bucket, Key="k"))["Body"]
                assert await body.read(10) == b"x" * 10
            await body.close()

    asyncio.run(main())


def test_a_cancel_between_the_object_and_its_instruction_file_leaves_it_readable(
    servers, s3, bucket, aes_keyring, monkeypatch
):
    """The object is stored first; a cancel arriving before its instruction file (which
    holds the wrapped data key) is written must not leave the object keyless."""
    from s3cse import _bridge
    from s3cse._objects import ObjectStore

    original = ObjectStore.put_instruction_file
    cancelled = threading.Event()

    def cancel_first(self, *args, **kwargs):
        call = _bridge.CALL.get()
        call.loop.call_soon_threadsafe(lambda: TASK[0].cancel())
        for _ in range(300):  # bounded: until the cancel reached this call
            if call.cancelled:
                break
            cancelled.wait(0.01)
        assert call.cancelled
        return original(self, *args, **kwargs)

    TASK: list = []

    async def main():
        s3_cm, _ = aio_clients(servers, kms=False)
        async with s3_cm as aio_s3:
            client = AsyncEncryptionClient(aio_s3, keyring=aes_keyring)
            monkeypatch.setattr(ObjectStore, "put_instruction_file", cancel_first)
            TASK.append(
                asyncio.ensure_future(
                    client.put_object(
                        Bucket=bucket, Key="i", Body=b"keyed", InstructionFilePut=True
                    )
                )
            )
            with pytest.raises(asyncio.CancelledError):
                await TASK[0]

    asyncio.run(main())
    reader = s3cse.EncryptionClient(s3, keyring=aes_keyring)
    assert reader.get_object(Bucket=bucket, Key="i")["Body"].read() == b"keyed"
