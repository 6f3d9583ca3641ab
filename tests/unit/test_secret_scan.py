"""The suite-wide secret scan itself must be able to fail."""

from __future__ import annotations

import base64

import pytest

import s3cse
from tests import secret_scan


@pytest.mark.slow
def test_scan_finds_a_planted_leak():
    secret = bytes(range(32))
    saved = (set(secret_scan.SECRETS), list(secret_scan.ERRORS), list(secret_scan.LOG_LINES))
    try:
        # The scanner on a small set of its own: the suite's whole record, when this runs
        # late, costs seconds per scan and tests nothing more.
        secret_scan.SECRETS.clear()
        secret_scan.ERRORS.clear()
        secret_scan.LOG_LINES[:] = ["s3cse DEBUG an innocent line"]
        secret_scan.SECRETS.add(b"\x01" * 32)
        secret_scan.SECRETS.add(secret)
        secret_scan.ERRORS.append(s3cse.S3CSEError(f"oops {base64.b64encode(secret).decode()}"))
        assert secret_scan.scan()
        secret_scan.ERRORS.clear()  # (making the error recorded it too)
        secret_scan.LOG_LINES.append(f"s3cse DEBUG key={secret.hex()}")
        assert secret_scan.scan()
        secret_scan.LOG_LINES.pop()
        assert not secret_scan.scan()
    finally:
        secret_scan.SECRETS.clear()
        secret_scan.SECRETS.update(saved[0])
        secret_scan.ERRORS[:] = saved[1]
        secret_scan.LOG_LINES[:] = saved[2]


def test_keys_seen_by_ciphers_are_recorded():
    keyring = s3cse.AesKeyring(b"\x77" * 32)
    obj = s3cse.encrypt(b"x", keyring)
    assert b"\x77" * 32 in secret_scan.SECRETS
    s3cse.decrypt(obj.ciphertext, obj.metadata, keyring)
    assert len(secret_scan.SECRETS) > 2


def test_a_run_of_one_character_is_not_a_leak_of_a_repeated_byte_key():
    """Hypothesis builds metadata values like '"' * 1398, which an error quotes; a test
    key b'"' * 32 is not leaked by that (its hex or base64 would be)."""
    key = b'"' * 32
    saved = (set(secret_scan.SECRETS), list(secret_scan.ERRORS), list(secret_scan.LOG_LINES))
    try:
        secret_scan.SECRETS.clear()
        secret_scan.ERRORS.clear()
        secret_scan.SECRETS.add(key)
        secret_scan.LOG_LINES[:] = ["unknown V3 content algorithm '" + '"' * 60 + "'"]
        assert not secret_scan.scan()
        secret_scan.LOG_LINES.append(f"key={key.hex()}")
        assert secret_scan.scan()
    finally:
        secret_scan.SECRETS.clear()
        secret_scan.SECRETS.update(saved[0])
        secret_scan.ERRORS[:] = saved[1]
        secret_scan.LOG_LINES[:] = saved[2]
