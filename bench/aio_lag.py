"""Event-loop lag while one object moves through asyncio, in a fresh process; prints one JSON line.

Run by bench/run.py (``--aio-lag``), not by hand. A ticker sleeps 5 ms at a time on
the loop and records how late each wake-up is, while the object goes up
(``upload_file``), is read (``get_object`` + 1 MiB chunks) and comes down
(``download_file``). ``--impl s3cse`` does that with AsyncEncryptionClient (KMS
keyring); ``--impl aiobotocore`` moves the same bytes with plain aiobotocore the way
a careful user would: 8 MiB parts and ranges, 10 at a time (boto3's TransferConfig
defaults, which upload_file and download_file use), file reads and writes on a thread.
``--payload signed`` keeps botocore's SigV4 SHA-256 of every request body (what it
does over plain HTTP by default, on the loop); ``unsigned`` turns it off, as over
HTTPS where a checksum covers the body.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import time
from typing import Any

MiB = 1024 * 1024
TICK = 0.005
PART = 8 * MiB
CONCURRENCY = 10


async def tick_until(stop: asyncio.Event, lags: list[float]) -> None:
    """Sleep TICK at a time until ``stop``, appending how late each wake-up was (seconds)."""
    while not stop.is_set():
        started = time.perf_counter()
        await asyncio.sleep(TICK)
        lags.append(time.perf_counter() - started - TICK)


async def move_with_s3cse(s3: Any, kms: Any, args: argparse.Namespace, timed: Any) -> None:
    import s3cse
    from s3cse.aio import AsyncEncryptionClient

    async with AsyncEncryptionClient(s3, keyring=s3cse.KmsKeyring(args.kms_key, kms_client=kms)) as client:
        await client.put_object(Bucket=args.bucket, Key=f"{args.key}-warm", Body=os.urandom(2 * MiB))  # first-call set-up
        async with timed():
            await client.upload_file(args.src, args.bucket, args.key)
            response = await client.get_object(Bucket=args.bucket, Key=args.key)
            async with response["Body"] as body:
                async for _chunk in body.iter_chunks(MiB):
                    pass
            await client.download_file(args.bucket, args.key, args.dst)


async def move_with_aiobotocore(s3: Any, args: argparse.Namespace, timed: Any) -> None:
    size = os.path.getsize(args.src)
    slots = asyncio.Semaphore(CONCURRENCY)
    await s3.put_object(Bucket=args.bucket, Key=f"{args.key}-warm", Body=os.urandom(2 * MiB))  # first-call set-up
    src = os.open(args.src, os.O_RDONLY)
    dst = os.open(args.dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        async with timed():
            upload_id = (await s3.create_multipart_upload(Bucket=args.bucket, Key=args.key))["UploadId"]

            async def upload_part(number: int, offset: int) -> dict[str, Any]:
                async with slots:
                    data = await asyncio.to_thread(os.pread, src, PART, offset)
                    response = await s3.upload_part(Bucket=args.bucket, Key=args.key, UploadId=upload_id,
                                                    PartNumber=number, Body=data)
                    return {"PartNumber": number, "ETag": response["ETag"]}

            parts = await asyncio.gather(*(upload_part(i + 1, offset) for i, offset in enumerate(range(0, size, PART))))
            await s3.complete_multipart_upload(Bucket=args.bucket, Key=args.key, UploadId=upload_id,
                                               MultipartUpload={"Parts": list(parts)})
            response = await s3.get_object(Bucket=args.bucket, Key=args.key)
            async with response["Body"] as body:
                while await body.read(MiB):
                    pass

            async def download_range(offset: int) -> None:
                async with slots:
                    response = await s3.get_object(Bucket=args.bucket, Key=args.key,
                                                   Range=f"bytes={offset}-{offset + PART - 1}")
                    async with response["Body"] as body:
                        data = await body.read()
                    await asyncio.to_thread(os.pwrite, dst, data, offset)

            await asyncio.gather(*(download_range(offset) for offset in range(0, size, PART)))
    finally:
        os.close(src)
        os.close(dst)


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    from aiobotocore.session import get_session
    from botocore.config import Config

    from s3cse.local import ACCESS_KEY, REGION, SECRET_KEY

    lags: list[float] = []
    elapsed: list[float] = []

    @contextlib.asynccontextmanager
    async def timed() -> Any:
        """The ticker runs for exactly the moves inside this block."""
        stop = asyncio.Event()
        ticker = asyncio.create_task(tick_until(stop, lags))
        started = time.perf_counter()
        try:
            yield
        finally:
            elapsed.append(time.perf_counter() - started)
            stop.set()
            await ticker

    session = get_session()
    creds = {"region_name": REGION, "aws_access_key_id": ACCESS_KEY, "aws_secret_access_key": SECRET_KEY}
    s3_config = {"addressing_style": "path", "payload_signing_enabled": args.payload == "signed"}
    async with (
        session.create_client("s3", endpoint_url=args.s3, config=Config(s3=s3_config), **creds) as s3,
        session.create_client("kms", endpoint_url=args.kms, **creds) as kms,
    ):
        if args.impl == "s3cse":
            await move_with_s3cse(s3, kms, args, timed)
        else:
            await move_with_aiobotocore(s3, args, timed)
    if os.path.getsize(args.dst) != os.path.getsize(args.src):
        raise SystemExit(f"downloaded {os.path.getsize(args.dst)} bytes, expected {os.path.getsize(args.src)}")
    os.unlink(args.dst)
    return summarize(lags, elapsed[0])


def summarize(lags: list[float], seconds: float) -> dict[str, Any]:
    """The ticker's p50, p99 and worst lag (ms), how often it ran, over how long."""
    ordered = sorted(lags)
    return {
        "ticks": len(ordered),
        "seconds": seconds,
        "p50_ms": ordered[len(ordered) // 2] * 1000,
        "p99_ms": ordered[int(len(ordered) * 0.99)] * 1000,
        "worst_ms": ordered[-1] * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--impl", choices=("s3cse", "aiobotocore"), required=True)
    parser.add_argument("--payload", choices=("signed", "unsigned"), required=True)
    for name in ("s3", "kms", "kms_key", "bucket", "key", "src", "dst"):
        parser.add_argument(f"--{name.replace('_', '-')}", required=True)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(measure(args))))


if __name__ == "__main__":
    main()
