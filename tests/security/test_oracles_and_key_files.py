"""Bleichenbacher: RSA PKCS#1 v1.5 unwrap failures look the same whatever went wrong;
key files are private."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

import s3cse
from tests.unit import legacy_objects as lo

ALLOW = "REQUIRE_ENCRYPT_ALLOW_DECRYPT"


@pytest.fixture(scope="module")
def keys():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048), rsa.generate_private_key(
        public_exponent=65537, key_size=2048
    )


def outcome(ciphertext, meta, keyring, config):
    try:
        s3cse.decrypt(ciphertext, meta, keyring, config)
    except s3cse.S3CSEError as exc:
        return type(exc), exc.message
    return None


def test_pkcs1_v15_failures_are_indistinguishable_with_legacy_wrapping_on(keys):
    right, wrong = keys
    config = s3cse.CryptoConfig(
        commitment_policy=ALLOW,
        enable_legacy_wrapping=True,
        enable_legacy_unauthenticated_modes=True,
    )
    ct, meta = lo.v1_rsa_object(right.public_key(), b"secret")
    bad_padding = dict(meta, **{"x-amz-key": lo.b64(b"\x00\x02" + b"\x00" * 254)})
    too_short = dict(meta, **{"x-amz-key": lo.b64(b"\x01" * 256)})
    outcomes = {
        outcome(ct, meta, s3cse.RsaKeyring(private_key=wrong), config),
        outcome(ct, bad_padding, s3cse.RsaKeyring(private_key=right), config),
        outcome(ct, too_short, s3cse.RsaKeyring(private_key=right), config),
    }
    assert len(outcomes) == 1 and None not in outcomes


def test_pkcs1_v15_objects_are_refused_before_any_rsa_operation_with_legacy_off(keys):
    right, wrong = keys
    config = s3cse.CryptoConfig(commitment_policy=ALLOW, enable_legacy_unauthenticated_modes=True)
    ct, meta = lo.v1_rsa_object(right.public_key(), b"secret")
    bad_padding = dict(meta, **{"x-amz-key": lo.b64(b"\x00\x02" + b"\x00" * 254)})
    outcomes = {
        outcome(ct, meta, s3cse.RsaKeyring(private_key=right), config),  # would succeed
        outcome(ct, meta, s3cse.RsaKeyring(private_key=wrong), config),
        outcome(ct, bad_padding, s3cse.RsaKeyring(private_key=right), config),
    }
    assert len(outcomes) == 1
    ((kind, message),) = outcomes
    assert kind is s3cse.LegacyAlgorithmDisabledError and "enable_legacy_wrapping" in message


@pytest.mark.slow
def test_world_readable_private_key_warns_and_keygen_writes_0600(tmp_path):
    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "s3cse", *args],
            capture_output=True,
            timeout=120,
            env={**os.environ, "AWS_MAX_ATTEMPTS": "1"},  # nothing listens: fail at once
        )

    priv, pub = tmp_path / "p.pem", tmp_path / "pub.pem"
    assert cli("keygen", "rsa", str(priv), "--public", str(pub), "--bits", "2048").returncode == 0
    assert stat.S_IMODE(priv.stat().st_mode) == 0o600
    os.chmod(priv, 0o644)
    out = cli(
        "cat",
        "s3://bucket-that-is-not-there/x",
        "--rsa-private-key",
        str(priv),
        "--endpoint-url",
        "http://127.0.0.1:9",
    )
    assert b"readable by other users" in out.stderr and b"chmod 600" in out.stderr


def test_a_pkcs1_v15_unwrap_that_yields_a_wrong_key_fails_like_a_rejected_unwrap(keys):
    """OpenSSL's implicit rejection answers bad padding with a random "key" of random
    length; when it is 16, 24 or 32 bytes, the CBC content fails next. That failure must
    look like the unwrap's own, or it tells conforming padding apart (about 1 in 80)."""
    from cryptography.hazmat.primitives.asymmetric import padding as asym

    right, _ = keys
    config = s3cse.CryptoConfig(
        commitment_policy=ALLOW,
        enable_legacy_wrapping=True,
        enable_legacy_unauthenticated_modes=True,
    )
    ct, meta = lo.v1_rsa_object(right.public_key(), b"secret")
    rejected = outcome(
        ct,
        dict(meta, **{"x-amz-key": lo.b64(b"\x01" * 256)}),
        s3cse.RsaKeyring(private_key=right),
        config,
    )
    for _ in range(50):  # a wrong 32-byte key gives bad CBC padding 255 times in 256
        wrong_key = right.public_key().encrypt(os.urandom(32), asym.PKCS1v15())
        found = outcome(
            ct,
            dict(meta, **{"x-amz-key": lo.b64(wrong_key)}),
            s3cse.RsaKeyring(private_key=right),
            config,
        )
        if found is not None:
            break
    assert found == rejected
    assert rejected[0] is s3cse.DataKeyUnwrapError
