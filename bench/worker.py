"""One benchmark measurement in a fresh process; prints one JSON line.

Run by bench/run.py, not by hand. Peak RSS is the process's (ru_maxrss), the
baseline is the RSS after imports and client set-up, before the first transfer.
The S3 operations (put, get, upload_file, download_file) run on a boto3 client, an
s3cse EncryptionClient or the official one; the Parquet operations (read_parquet,
read_parquet_column, to_parquet) run pandas + pyarrow on s3:// (plain s3fs) or on
s3cse:// (the s3cse fsspec filesystem, AES key file).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

MiB = 1024 * 1024
PARQUET_OPS = ("read_parquet", "read_parquet_column", "to_parquet")
READ_OPS = ("get", "download_file", "read_parquet", "read_parquet_column")
#: The column read_parquet_column reads: one float64 column, about 1/6 of the file.
PARQUET_COLUMN = "amount"


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def make_clients(args: argparse.Namespace) -> tuple[Any, Any]:
    import boto3
    from botocore.config import Config

    def s3_client() -> Any:
        return boto3.client(
            "s3", endpoint_url=args.s3, region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}, max_pool_connections=32),
        )

    kms = boto3.client("kms", endpoint_url=args.kms, region_name="us-east-1")
    plain = s3_client()
    if args.impl == "boto3":
        return plain, plain
    if args.impl == "official":
        from s3_encryption import S3EncryptionClient, S3EncryptionClientConfig
        from s3_encryption.materials.kms_keyring import KmsKeyring

        return S3EncryptionClient(s3_client(), S3EncryptionClientConfig(keyring=KmsKeyring(kms, args.kms_key))), plain
    import s3cse

    if args.keyring == "aes":
        keyring: Any = s3cse.AesKeyring(b"\x42" * 32)
    elif args.keyring == "rsa":
        with open(args.rsa_key, "rb") as f:
            keyring = s3cse.RsaKeyring(private_key=f.read())
    else:
        keyring = s3cse.KmsKeyring(args.kms_key, kms_client=kms)
    return s3cse.EncryptionClient(plain, keyring=keyring, enable_delayed_authentication=args.delayed), plain


def parquet_op(args: argparse.Namespace) -> Callable[[], None]:
    """One pandas + pyarrow operation on s3:// (s3fs) or s3cse://, ready to time."""
    import pandas as pd

    from s3cse.local import ACCESS_KEY, REGION, SECRET_KEY

    options: dict[str, Any] = {
        "endpoint_url": args.s3, "key": ACCESS_KEY, "secret": SECRET_KEY,
        "client_kwargs": {"region_name": REGION},
        # A new filesystem for every timed run: s3cse:// keeps verified ciphertext for
        # reopening an unchanged object, which would make repeat reads of one process free.
        "skip_instance_cache": True,
    }
    if args.impl == "s3cse":
        options["aes_key_file"] = args.aes_key_file
    url = f"{'s3cse' if args.impl == 's3cse' else 's3'}://{args.bucket}/{args.key}"
    if args.op == "to_parquet":
        frame = pd.read_parquet(args.src)  # untimed: the write starts from a DataFrame in memory

        def write() -> None:
            frame.to_parquet(url, compression=None, storage_options=options)

        return write
    columns = [PARQUET_COLUMN] if args.op == "read_parquet_column" else None

    def read() -> None:
        pd.read_parquet(url, columns=columns, storage_options=options)

    return read


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("impl", "op", "keyring", "s3", "kms", "kms_key", "rsa_key", "aes_key_file", "bucket", "key", "src", "dst"):
        parser.add_argument(f"--{name.replace('_', '-')}")
    parser.add_argument("--size", type=int)
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--delayed", action="store_true")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs first (0 or 1)")
    args = parser.parse_args()
    if args.op in PARQUET_OPS:
        operation = parquet_op(args)
    else:
        client, _plain = make_clients(args)
        operation = functools.partial(run_once, client, args)
    baseline = rss_mib()
    durations = []
    # Reads get one untimed run first, for every implementation alike. On the 2-core
    # VM the results come from, the first large file write of a fresh process (s3cse's
    # spool for an authenticated get) ran at about a third of the speed of the next
    # ones: +0.5 s for 256 MiB, whatever ran before; the timed repeats measure steady
    # state. (Writes are not warmed up: every put leaves its bytes on the server's disk
    # until SeaweedFS compacts, and the 1 GiB rows would run the disk full.)
    if args.warmup and args.op in READ_OPS:
        operation()
    for _ in range(args.repeat):
        # Start each timed repeat with no dirty page cache: otherwise whichever run
        # comes next pays for the kernel writing back the previous one's data (the
        # server's object files, a downloaded file), a full core on this machine.
        os.sync()
        started = time.perf_counter()
        operation()
        durations.append(time.perf_counter() - started)
    median = statistics.median(durations)
    total = args.size * args.count
    print(json.dumps({
        "seconds": durations,
        "mib_s": total / MiB / median if median else None,
        "objects_s": args.count / median if median else None,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "baseline_rss_mib": baseline,
    }))


def run_once(client: Any, args: argparse.Namespace) -> None:
    op = args.op
    if op == "put":
        if args.count > 1:
            body = os.urandom(args.size)
            for i in range(args.count):
                client.put_object(Bucket=args.bucket, Key=f"{args.key}/{i}", Body=body)
            return
        with open(args.src, "rb") as f:
            client.put_object(Bucket=args.bucket, Key=args.key, Body=f)
    elif op == "get":
        keys = [f"{args.key}/{i}" for i in range(args.count)] if args.count > 1 else [args.key]
        for key in keys:
            body = client.get_object(Bucket=args.bucket, Key=key)["Body"]
            while body.read(MiB):
                pass
            body.close()
    elif op == "upload_file":
        for i in range(args.count):
            client.upload_file(args.src, args.bucket, args.key if args.count == 1 else f"{args.key}/{i}")
    elif op == "download_file":
        for i in range(args.count):
            client.download_file(args.bucket, args.key if args.count == 1 else f"{args.key}/{i}", args.dst)
    else:
        sys.exit(f"unknown op {op}")


if __name__ == "__main__":
    main()
