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
