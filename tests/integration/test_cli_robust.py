"""The command line on real trees and real buckets, driven through the installed ``s3cse``
command: odd files, hostile key names, partial failures, signals, pipes and file modes."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import time

import pytest

import s3cse
from tests.integration.test_cli import S3CSE, run
from tests.stores import open_uploads

# The command line's own logic, driven as a user drives it; what the stores differ in is
# covered by the client, transfer and fsspec tests, which run on both.
pytestmark = pytest.mark.seaweedfs_only(
    "CLI behaviour; store differences are covered by the client tests"
)

MiB = 1024 * 1024


@pytest.fixture
def key(tmp_path, servers):
    path = tmp_path / "master.key"
    run("keygen", "aes", str(path), check_code=0)
    return str(path)


def _keyring(path: str) -> s3cse.AesKeyring:
    with open(path, "rb") as f:
        return s3cse.AesKeyring(f.read())


def test_a_recursive_upload_skips_what_it_cannot_send_and_goes_on(tmp_path, s3, bucket, key):
    tree = tmp_path / "tree"
    (tree / "real").mkdir(parents=True)
    (tree / "real" / "a.txt").write_bytes(b"a")
    (tree / "b.txt").write_bytes(b"b")
    (tree / "dangling").symlink_to(tmp_path / "nowhere")
    os.mkfifo(tree / "fifo")
    (tree / "linked").symlink_to(tree / "real", target_is_directory=True)  # followed
    (tree / "real" / "loop").symlink_to(tree, target_is_directory=True)  # a loop
    # Exit 2, as aws: the rest was sent, some files were skipped.
    done = run("cp", "-r", str(tree), f"s3://{bucket}/t/", "--aes-key", key, check_code=2)
    stderr = done.stderr.decode()
    assert "4 skipped" in stderr  # the loop is met by two paths
    assert "skipping" in stderr and "dangling symlink" in stderr
    assert "not a regular file" in stderr and "symlink loop" in stderr
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []))
    assert keys == ["t/b.txt", "t/linked/a.txt", "t/real/a.txt"]
    assert done.stdout.decode().count("upload: ") == 3  # status lines on stdout, as aws


def test_an_integrity_failure_among_several_files_exits_3(tmp_path, s3, bucket, key):
    for name in ("a", "b"):
        (tmp_path / name).write_bytes(name.encode() * 100)
        run("cp", str(tmp_path / name), f"s3://{bucket}/p/{name}", "--aes-key", key, check_code=0)
    stored = s3.get_object(Bucket=bucket, Key="p/b")
    body = bytearray(stored["Body"].read())
    body[3] ^= 1
    s3.put_object(Bucket=bucket, Key="p/b", Body=bytes(body), Metadata=stored["Metadata"])
    out = tmp_path / "out"
    done = run("cp", "-r", f"s3://{bucket}/p/", str(out), "--aes-key", key)
    assert done.returncode == 3, done.stderr
    assert (out / "a").read_bytes() == b"a" * 100 and not (out / "b").exists()
    assert b"1 of 2 files failed" in done.stderr
    assert run("cp", f"s3://{bucket}/p/b", str(out / "b"), "--aes-key", key).returncode == 3


def test_key_names_with_control_characters_are_escaped(tmp_path, s3, bucket, key):
    evil = "x\x1b[2J\x1b[31mred\rfake"
    s3cse.EncryptionClient(s3, keyring=_keyring(key)).put_object(Bucket=bucket, Key=evil, Body=b"e")
    for args in (
        ["ls", f"s3://{bucket}/"],
        ["cp", "-r", f"s3://{bucket}/", str(tmp_path / "out"), "--aes-key", key],
        ["cat", f"s3://{bucket}/{evil}-missing", "--aes-key", key],
    ):
        done = run(*args)
        shown = done.stdout + done.stderr
        assert b"\x1b" not in shown and b"\r" not in shown, args
        if args[0] != "cat":  # (S3's NoSuchKey message does not repeat the name)
            assert b"\\x1b[2J" in shown, args


def test_a_prefix_without_recursive_says_to_add_it(tmp_path, s3, bucket, key):
    (tmp_path / "f").write_bytes(b"f")
    run("cp", str(tmp_path / "f"), f"s3://{bucket}/dir/f", "--aes-key", key, check_code=0)
    done = run("cp", f"s3://{bucket}/dir", str(tmp_path / "x"), "--aes-key", key, check_code=2)
    assert b"add --recursive" in done.stderr
    done = run("cp", str(tmp_path), f"s3://{bucket}/y/", "--aes-key", key, check_code=2)
    assert b"add --recursive" in done.stderr


def test_cat_into_a_closed_pipe_exits_quietly(s3, bucket, key):
    s3cse.EncryptionClient(s3, keyring=_keyring(key)).put_object(
        Bucket=bucket, Key="big", Body=os.urandom(4 * MiB)
    )
    done = subprocess.run(
        f"'{S3CSE}' cat s3://{bucket}/big --aes-key '{key}' | head -c 10 >/dev/null;"
        ' echo "status ${PIPESTATUS[0]}" >&2',
        shell=True,
        executable="/bin/bash",
        capture_output=True,
        timeout=120,
    )
    lines = done.stderr.decode().strip().splitlines()
    assert lines == ["status 141"], lines  # no "[Errno 32] Broken pipe", no traceback


def test_downloads_honour_the_umask_and_keep_an_overwritten_files_mode(tmp_path, s3, bucket, key):
    (tmp_path / "f").write_bytes(b"mode")
    run("cp", str(tmp_path / "f"), f"s3://{bucket}/m", "--aes-key", key, check_code=0)
    new, existing = tmp_path / "new", tmp_path / "existing"
    existing.write_bytes(b"old")
    existing.chmod(0o640)
    umask = os.umask(0o027)
    try:
        run("cp", f"s3://{bucket}/m", str(new), "--aes-key", key, check_code=0)
        run("cp", f"s3://{bucket}/m", str(existing), "--aes-key", key, check_code=0)
    finally:
        os.umask(umask)
    assert stat.S_IMODE(new.stat().st_mode) == 0o640  # 0666 & ~027
    assert stat.S_IMODE(existing.stat().st_mode) == 0o640 and existing.read_bytes() == b"mode"


def _until(condition, what: str, seconds: float = 60) -> None:
    for _ in range(int(seconds / 0.05)):  # bounded
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"never saw {what}")


@pytest.mark.slow
def test_sigterm_cleans_up_like_ctrl_c(tmp_path, s3, bucket, key, servers):
    source = tmp_path / "big"
    source.write_bytes(os.urandom(256 * MiB))
    env = {**os.environ, **servers.environment}
    upload = subprocess.Popen(
        [S3CSE, "cp", str(source), f"s3://{bucket}/big", "--aes-key", key, "--no-progress"],
        env=env,
        stderr=subprocess.PIPE,
    )
    try:
        _until(lambda: open_uploads(s3, bucket), "the multipart upload start")
        upload.send_signal(signal.SIGTERM)
        _, stderr = upload.communicate(timeout=120)
    finally:
        upload.kill()
    assert upload.returncode == 143, stderr
    assert b"terminated" in stderr and b"Traceback" not in stderr
    assert open_uploads(s3, bucket) == []

    run("cp", str(source), f"s3://{bucket}/big", "--aes-key", key, check_code=0)
    out = tmp_path / "out"
    out.mkdir()
    download = subprocess.Popen(
        [S3CSE, "cp", f"s3://{bucket}/big", str(out / "big"), "--aes-key", key],
        env=env,
        stderr=subprocess.PIPE,
    )
    try:
        _until(lambda: any(out.iterdir()), "the partial download file")
        download.send_signal(signal.SIGTERM)
        _, stderr = download.communicate(timeout=120)
    finally:
        download.kill()
    assert download.returncode == 143, stderr
    assert list(out.iterdir()) == []  # no .s3cse-*.part of unverified plaintext


def test_a_recursive_copy_in_a_terminal_shows_one_bar_that_ends_cleanly(
    tmp_path, s3, bucket, key, servers
):
    """Driven in a pseudo-terminal, as a user sees it: one overall bar of files and bytes,
    names shown as they are (rich markup in a name is not interpreted), the cursor given
    back at the end."""
    import fcntl
    import pty
    import select
    import struct
    import termios

    tree = tmp_path / "tree"
    tree.mkdir()
    for i in range(3):
        (tree / f"f[red]{i}").write_bytes(os.urandom(3000))
    (tree / "big").write_bytes(os.urandom(3 * MiB))
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen(
        [S3CSE, "cp", "-r", str(tree), f"s3://{bucket}/pty/", "--aes-key", key],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env={**os.environ, **servers.environment},
        close_fds=True,
    )
    os.close(slave)
    shown = b""
    try:
        for _ in range(10_000):  # bounded
            ready, _, _ = select.select([master], [], [], 60)
            if not ready:
                break
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the other end closed
                break
            if not chunk:
                break
            shown += chunk
        assert proc.wait(60) == 0, shown[-2000:]
    finally:
        proc.kill()
        os.close(master)
    text = shown.decode(errors="replace")
    assert "4/4 files" in text and "Traceback" not in text
    assert text.count("upload: ") == 4 and "f[red]0" in text
    assert shown.rstrip(b"\r\n").endswith(b"\x1b[?25h")  # the display ended, cursor back
    assert len(_keys_under(s3, bucket, "pty/")) == 4


def _keys_under(s3, bucket, prefix):
    return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]
