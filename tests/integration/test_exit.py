"""Scripts that never close what they opened still exit: nothing in a close, a finalizer
or an exit path starts a thread or waits on one."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import s3cse

#: Generous: a healthy run takes about a second; a hang never ends.
_EXIT_TIMEOUT = 30

_PRELUDE = """
import boto3, s3cse
from botocore.config import Config
s3 = boto3.client("s3", config=Config(s3={"addressing_style": "path"}))
ring = s3cse.AesKeyring(b"\\x5a" * 32, {"kid": "aes-1"})
# buffer_size=1024: the 256 KiB object takes the spooled path of any large object.
client = s3cse.EncryptionClient(s3, keyring=ring, buffer_size=1024)
"""

_SCRIPTS = {
    "get_object read": """
body = client.get_object(Bucket=BUCKET, Key="big")["Body"]
data = body.read()
assert len(data) == SIZE
""",
    "get_object iter_chunks": """
body = client.get_object(Bucket=BUCKET, Key="big")["Body"]
total = sum(len(c) for c in body.iter_chunks(4096))
assert total == SIZE
""",
    "get_object partly read": """
body = client.get_object(Bucket=BUCKET, Key="big")["Body"]
assert len(body.read(1000)) == 1000
""",
    "get_object never read": """
response = client.get_object(Bucket=BUCKET, Key="big")
""",
    "download_fileobj": """
import io
sink = io.BytesIO()
client.download_fileobj(BUCKET, "big", sink)
assert len(sink.getvalue()) == SIZE
""",
    "fsspec open rb": """
import fsspec, os
fs = fsspec.filesystem("s3cse", aes_key_file=KEY_FILE, endpoint_url=os.environ["AWS_ENDPOINT_URL_S3"],
                       key=os.environ["AWS_ACCESS_KEY_ID"], secret=os.environ["AWS_SECRET_ACCESS_KEY"])
f = fs.open(f"{BUCKET}/big", "rb")
assert len(f.read(1000)) == 1000
""",
}


@pytest.mark.parametrize("case", sorted(_SCRIPTS))
def test_a_script_that_never_closes_what_it_opened_still_exits(
    case, servers, s3, bucket, aes_keyring, tmp_path
):
    size = 256 * 1024
    s3cse.EncryptionClient(s3, keyring=aes_keyring).put_object(
        Bucket=bucket, Key="big", Body=os.urandom(size)
    )
    key_file = tmp_path / "master.key"
    key_file.write_bytes(b"\x5a" * 32)
    key_file.chmod(0o600)
    script = (
        f"BUCKET, SIZE, KEY_FILE = {bucket!r}, {size}, {str(key_file)!r}\n"
        + textwrap.dedent(_PRELUDE)
        + textwrap.dedent(_SCRIPTS[case])
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", script],
            env={**os.environ, **servers.environment},
            capture_output=True,
            timeout=_EXIT_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{case}: the script did its work but the interpreter never exited")
    assert done.returncode == 0, done.stderr.decode()


_ASYNC_PRELUDE = """
import asyncio, os, tempfile
from aiobotocore.session import get_session
from s3cse.aio import AsyncEncryptionClient
from tests.stores import open_uploads

def aio_s3():
    return get_session().create_client("s3", config=Config(s3={"addressing_style": "path"}))

source = os.path.join(tempfile.mkdtemp(), "big")
with open(source, "wb") as f:
    f.write(os.urandom(64 * 1024 * 1024))

async def timed_out_upload():
    async with aio_s3() as aio:
        client = AsyncEncryptionClient(aio, keyring=ring)
        try:
            await asyncio.wait_for(client.upload_file(source, BUCKET, "up"), 0.4)
        except asyncio.TimeoutError:
            assert open_uploads(s3, BUCKET) == [], "the timed-out upload was left open"
"""

_ASYNC_SCRIPTS = {
    "wait_for(upload_file) under asyncio.run": """
asyncio.run(timed_out_upload())
""",
    "wait_for(upload_file) under run_until_complete, loop never closed": """
loop = asyncio.new_event_loop()
loop.run_until_complete(timed_out_upload())
""",
    "upload_file task abandoned, loop never closed": """
async def abandon():
    aio = await aio_s3().__aenter__()
    client = AsyncEncryptionClient(aio, keyring=ring)
    task = asyncio.ensure_future(client.upload_file(source, BUCKET, "abandoned"))
    await asyncio.wait([task], timeout=0.3)
    globals()["task"] = task

loop = asyncio.new_event_loop()
loop.run_until_complete(abandon())
""",
    "unclosed body over buffer_size": """
async def main():
    aio = await aio_s3().__aenter__()
    client = AsyncEncryptionClient(aio, keyring=ring, buffer_size=1024)
    response = await client.get_object(Bucket=BUCKET, Key="big")
    assert len(await response["Body"].read(1000)) == 1000
    globals()["response"] = response

asyncio.run(main())
""",
    "body left mid-read by a timeout": """
async def main():
    aio = await aio_s3().__aenter__()
    client = AsyncEncryptionClient(aio, keyring=ring, enable_delayed_authentication=True)
    response = await client.get_object(Bucket=BUCKET, Key="big")
    try:
        await asyncio.wait_for(response["Body"].read(), 0.0005)
    except asyncio.TimeoutError:
        pass
    globals()["response"] = response

asyncio.run(main())
""",
}


@pytest.mark.parametrize("case", sorted(_ASYNC_SCRIPTS))
def test_an_async_script_that_times_out_or_abandons_its_work_still_exits(
    case, servers, s3, bucket, aes_keyring
):
    s3cse.EncryptionClient(s3, keyring=aes_keyring).put_object(
        Bucket=bucket, Key="big", Body=os.urandom(256 * 1024)
    )
    script = (
        f"BUCKET = {bucket!r}\n"
        + textwrap.dedent(_PRELUDE)
        + textwrap.dedent(_ASYNC_PRELUDE)
        + textwrap.dedent(_ASYNC_SCRIPTS[case])
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", script],
            env={**os.environ, **servers.environment},
            cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
            capture_output=True,
            timeout=_EXIT_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{case}: the interpreter never exited")
    assert done.returncode == 0, done.stderr.decode()
