"""``keygen``, the local servers and ``demo``: getting started."""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from .. import _keyfiles as keyfiles
from ..client import EncryptionClient
from ..core.metadata import (
    metadata_name_meaning,
)
from ..errors import (
    KeyringError,
)
from ..local import LOCAL_KMS_ALIAS
from ._app import (
    EXIT_CODES_HELP,
    EXIT_FAILURE,
    CliError,
    _run,
    main,
)
from .progress import printable

# ---- keygen


@main.group(epilog=EXIT_CODES_HELP)
def keygen() -> None:
    """Make master keys."""


@keygen.command("aes", epilog=EXIT_CODES_HELP)
@click.argument("file", type=click.Path(dir_okay=False))
def keygen_aes(file: str) -> None:
    """Write a new 256-bit AES key (32 random bytes) to FILE, mode 0600."""
    if os.path.exists(file):
        raise click.UsageError(f"{file} exists; refusing to overwrite a key")
    keyfiles.write_aes_key(file)
    click.echo(f"wrote AES-256 key to {file} (mode 0600)", err=True)


@keygen.command("rsa", epilog=EXIT_CODES_HELP)
@click.argument("private", type=click.Path(dir_okay=False))
@click.option(
    "--public",
    "public",
    required=True,
    type=click.Path(dir_okay=False),
    help="Where to write the public key.",
)
@click.option("--bits", default=3072, show_default=True, type=click.IntRange(2048, 16384))
def keygen_rsa(private: str, public: str, bits: int) -> None:
    """Write a new RSA key pair: PRIVATE (PKCS#8 PEM, mode 0600) and --public PEM."""
    for path in (private, public):
        if os.path.exists(path):
            raise click.UsageError(f"{path} exists; refusing to overwrite a key")
    keyfiles.write_rsa_key_pair(private, public, bits)
    click.echo(
        f"wrote RSA-{bits} private key to {private} (mode 0600), public key to {public}", err=True
    )


# ---- local servers


@main.group(epilog=EXIT_CODES_HELP)
def local() -> None:
    """The embedded local default: S3 (SeaweedFS) and KMS (moto) on 127.0.0.1."""


@local.command("start")
def local_start() -> None:
    """Start the local S3 and KMS in the background (data under $S3CSE_HOME)."""
    from .. import local as servers

    try:
        srv, started = servers.start_background()
    except (RuntimeError, TimeoutError, OSError) as exc:
        click.echo(printable(f"s3cse: error: the local servers did not start: {exc}"), err=True)
        sys.exit(EXIT_FAILURE)
    click.echo(
        ("started" if started else "already running")
        + f": S3 {srv.s3.endpoint}, KMS {srv.kms.endpoint}",
        err=True,
    )
    click.echo(
        'point s3cse, boto3 and the aws CLI at them with: eval "$(s3cse local env)"', err=True
    )


@local.command("stop")
def local_stop() -> None:
    """Stop the local servers."""
    from .. import local as servers

    click.echo("stopped" if servers.stop_background() else "not running", err=True)


@local.command("status")
def local_status() -> None:
    """Say whether the local servers run, and where. Exit 1 if they do not."""
    from .. import local as servers

    srv = servers.running_servers()
    if srv is None:
        click.echo("not running (start with: s3cse local start)")
        sys.exit(EXIT_FAILURE)
    click.echo(
        f"running: S3 {srv.s3.endpoint} (pid {srv.s3.pid}), KMS {srv.kms.endpoint} (pid {srv.kms.pid}), data in {srv.s3.directory}"
    )


@local.command("env")
def local_env() -> None:
    """Print shell exports that point s3cse, boto3 and the aws CLI at the local servers."""
    from .. import local as servers

    srv = servers.running_servers()
    if srv is None:
        click.echo(
            "s3cse: the local servers are not running; start them with: s3cse local start", err=True
        )
        sys.exit(EXIT_FAILURE)
    for name, value in srv.environment.items():
        click.echo(f"export {name}={value}")


# ---- demo


@main.command(epilog=EXIT_CODES_HELP)
@click.option("--keep-running", is_flag=True, help="Leave the local servers running afterwards.")
@click.option("--size", default=3 * 1024 * 1024, show_default=True, help="Bytes of sample data.")
def demo(keep_running: bool, size: int) -> None:
    """The main job end to end on local servers: key, encrypt + upload, look at the
    stored ciphertext, read back + verify, rotate the key, read again."""
    from .. import local as servers

    def step(text: str) -> None:
        click.echo(click.style("==> ", fg="cyan", bold=True) + text)

    def action() -> None:
        step("starting the local S3 (SeaweedFS) and KMS (moto) on 127.0.0.1 ...")
        srv, started = servers.start_background()
        try:
            _demo_steps(srv, size, step)
        finally:
            if started and not keep_running:
                servers.stop_background()
                step("stopped the local servers (use --keep-running to keep them)")

    _run(False, action)


def _demo_steps(srv: Any, size: int, step: Callable[[str], None]) -> None:
    s3, kms = srv.s3_client(), srv.kms_client()
    bucket = "s3cse-demo"
    with contextlib.suppress(
        s3.exceptions.BucketAlreadyOwnedByYou, s3.exceptions.BucketAlreadyExists
    ):
        s3.create_bucket(Bucket=bucket)
    try:
        with tempfile.TemporaryDirectory(prefix="s3cse-demo-") as tmp:
            _demo_in(Path(tmp), s3, kms, bucket, srv, size, step)
    finally:  # leave nothing behind in the local store
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                s3.delete_object(Bucket=bucket, Key=item["Key"])
        s3.delete_bucket(Bucket=bucket)
        step(f"removed the demo bucket s3://{bucket}")


def _demo_in(
    work: Path, s3: Any, kms: Any, bucket: str, srv: Any, size: int, step: Callable[[str], None]
) -> None:
    from ..core.keyrings import AesKeyring, KmsKeyring

    key_file = work / "master.key"
    keyfiles.write_aes_key(key_file)
    step(f"made a 256-bit AES master key: {key_file} (mode {oct(key_file.stat().st_mode & 0o777)})")
    sample = work / "patients.csv"
    with open(sample, "w") as f:
        f.write("id,name,diagnosis\n")
        i = 0
        while f.tell() < size:
            f.write(f"{i},patient-{i:07d},confidential finding #{i * 7919 % 1000003}\n")
            i += 1
        f.truncate(size)  # exactly the size asked for
    digest = hashlib.sha256(sample.read_bytes()).hexdigest()
    step(f"wrote a sample file: {sample} ({sample.stat().st_size} bytes, sha256 {digest[:16]}...)")
    aes = AesKeyring(keyfiles.read_aes_key(key_file), {"kid": "demo-aes"})
    client = EncryptionClient(s3, keyring=aes)
    started = time.monotonic()
    client.upload_file(
        str(sample), bucket, "records/patients.csv", ExtraArgs={"Metadata": {"dept": "cardiology"}}
    )
    step(
        f"encrypted and uploaded it to s3://{bucket}/records/patients.csv in {time.monotonic() - started:.2f} s"
    )
    stored = s3.get_object(Bucket=bucket, Key="records/patients.csv")
    head = stored["Body"].read(48)
    stored["Body"].close()
    step("what the store holds (read with plain boto3, no key):")
    click.echo(f"      first bytes: {head.hex()}")
    click.echo(f"      readable?    {'no, ciphertext' if b'patient' not in head else 'YES (bug!)'}")
    for name, value in sorted(stored["Metadata"].items()):
        meaning = metadata_name_meaning(name) or "your own metadata, stored as given"
        click.echo(f"      x-amz-meta-{name}: {value[:60]}")
        click.echo(f"          {meaning}")
    back = client.get_object(Bucket=bucket, Key="records/patients.csv")["Body"].read()
    ok = hashlib.sha256(back).hexdigest() == digest
    step(f"read it back through s3cse: {len(back)} bytes, sha256 {'matches' if ok else 'DIFFERS'}")
    if not ok:
        raise CliError("the demo read back different bytes")
    kms_ring = KmsKeyring(srv.kms_key_id or LOCAL_KMS_ALIAS, kms_client=kms)
    etag_before = s3.head_object(Bucket=bucket, Key="records/patients.csv")["ETag"]
    client.reencrypt(bucket, "records/patients.csv", kms_ring)
    after = s3.head_object(Bucket=bucket, Key="records/patients.csv")
    unchanged = "unchanged (same ETag)" if after["ETag"] == etag_before else "CHANGED"
    step(
        f"rotated its data key to the KMS key {srv.kms_key_id} "
        f"(x-amz-w is now {after['Metadata'].get('x-amz-w')}); content {unchanged}"
    )
    reader = EncryptionClient(s3, keyring=kms_ring)
    rotated = reader.get_object(Bucket=bucket, Key="records/patients.csv")["Body"].read()
    if hashlib.sha256(rotated).hexdigest() != digest:
        raise CliError("the demo read back different bytes after rotation")
    try:
        client.get_object(Bucket=bucket, Key="records/patients.csv")
        old_key = "STILL opens it (bug!)"
    except KeyringError as exc:
        old_key = f"is refused ({type(exc).__name__})"
    step(f"read it with the KMS key: sha256 matches; the old AES key {old_key}")
    step("done: encrypted client-side, stored as ciphertext, verified, rotated.")
