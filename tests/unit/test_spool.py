"""The ciphertext spool: reserved up front, trimmed to what was written, closed off-thread."""

from __future__ import annotations

import errno
import os
import time

import pytest

import s3cse
from s3cse import _spool


def test_the_spool_reserves_the_length_and_trims_to_what_was_written():
    spool = _spool.ciphertext_spool(3 * 1024 * 1024)
    try:
        assert os.fstat(spool.fileno()).st_size == 3 * 1024 * 1024
        spool.write(b"a" * 1_500_000)
        _spool.trim(spool)
        assert os.fstat(spool.fileno()).st_size == 1_500_000
        assert spool.tell() == 0
        pieces = [bytes(p) for p in _spool.spool_chunks(spool, size=1 << 20)]
        assert [len(p) for p in pieces] == [1 << 20, 1_500_000 - (1 << 20)]
        assert b"".join(pieces) == b"a" * 1_500_000
    finally:
        spool.close()


def test_an_empty_object_needs_no_reservation():
    with _spool.ciphertext_spool(0) as spool:
        assert os.fstat(spool.fileno()).st_size == 0


def test_more_than_the_free_space_is_refused_before_anything_is_allocated(tmp_path, monkeypatch):
    monkeypatch.setattr(_spool.tempfile, "tempdir", str(tmp_path))
    free = os.statvfs(tmp_path).f_bavail * os.statvfs(tmp_path).f_frsize
    with pytest.raises(s3cse.SpoolSpaceError) as info:
        _spool.ciphertext_spool(free + 1024**4)
    message = str(info.value)
    assert str(tmp_path) in message and "TMPDIR" in message
    assert "enable_delayed_authentication=True" in message
    assert isinstance(info.value, OSError) and isinstance(info.value, s3cse.S3CSEError)


def test_a_file_system_out_of_space_while_reserving_gives_the_same_error(monkeypatch):
    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(_spool.os, "posix_fallocate", full)
    with pytest.raises(s3cse.SpoolSpaceError, match="no room for 4096 bytes"):
        _spool.ciphertext_spool(4096)


def test_a_file_system_that_cannot_preallocate_still_spools(monkeypatch):
    def unsupported(fd, offset, length):
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")

    monkeypatch.setattr(_spool.os, "posix_fallocate", unsupported)
    with _spool.ciphertext_spool(4096) as spool:
        spool.write(b"x" * 10)
        _spool.trim(spool)
        assert spool.read() == b"x" * 10


def test_release_closes_the_file_without_starting_a_thread():
    import threading

    spool = _spool.ciphertext_spool(1024)  # makes sure the closer runs
    before = threading.active_count()
    _spool.release(spool)
    assert threading.active_count() == before
    deadline = time.monotonic() + 10
    while not spool.closed and time.monotonic() < deadline:
        time.sleep(0.01)
    assert spool.closed


def test_a_body_whose_read_failed_never_reads_as_ended():
    from s3cse._body import DecryptedBody
    from s3cse.errors import IntegrityError, ReadInterruptedError

    def failing(error):
        yield b"first"
        raise error

    body = DecryptedBody(failing(IntegrityError("tag mismatch")), None)
    assert body.read(5) == b"first"
    for _ in range(2):  # not b"" (a clean end) on the read after the failure
        with pytest.raises(IntegrityError, match="tag mismatch"):
            body.read(5)
    body = DecryptedBody(failing(KeyboardInterrupt()), None)
    assert body.read(3) == b"fir"
    with pytest.raises(KeyboardInterrupt):
        body.read()
    with pytest.raises(ReadInterruptedError, match="after 3 bytes") as caught:
        body.read()
    assert caught.value.position == 3
