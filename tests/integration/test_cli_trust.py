"""The command line's data-safety promises, driven through the installed ``s3cse``
command: the key typed wins over the environment, the first key given encrypts, local
KMS keys and endpoints survive a restart, and the demo leaves nothing behind."""

from __future__ import annotations

import json

import boto3
import pytest

import s3cse
from tests.integration.test_cli import run


def _wrap_family(s3, bucket, key) -> str:
    """Which kind of master key wrapped the object's data key (read without a key)."""
    head = s3.head_object(Bucket=bucket, Key=key)
    metadata = {k.lower(): v for k, v in head["Metadata"].items()}
    return s3cse.parse_metadata(metadata).wrap_algorithm.key_family


@pytest.fixture
def keys(tmp_path, servers):
    aes = tmp_path / "master.key"
    run("keygen", "aes", str(aes), check_code=0)
    private, public = tmp_path / "rsa.pem", tmp_path / "rsa.pub.pem"
    run("keygen", "rsa", str(private), "--public", str(public), "--bits", "2048", check_code=0)
    return {"aes": str(aes), "rsa-private": str(private), "rsa-public": str(public)}


def test_a_key_on_the_command_line_wins_over_the_environment(
    tmp_path, s3, bucket, keys, kms_key_arn, servers
):
    source = tmp_path / "f"
    source.write_bytes(b"which key?")
    env = {**servers.environment, "S3CSE_KMS_KEY_ID": kms_key_arn}
    for option, family in (("--aes-key", "aes"), ("--rsa-public-key", "rsa")):
        value = keys["aes"] if family == "aes" else keys["rsa-public"]
        done = run("cp", str(source), f"s3://{bucket}/{family}", option, value, "-v", env=env)
        assert done.returncode == 0, done.stderr
        assert b"upload:" in done.stdout
        assert _wrap_family(s3, bucket, family) == family
        said = done.stderr.decode()
        assert f"encrypting with {'AES key file' if family == 'aes' else 'RSA public key'}" in said
    # with no key option, the environment's key encrypts, and -v says where it came from
    done = run("cp", str(source), f"s3://{bucket}/env", "-v", env=env, check_code=0)
    assert _wrap_family(s3, bucket, "env") == "kms"
    assert "from S3CSE_KMS_KEY_ID" in done.stderr.decode()


@pytest.mark.parametrize(
    "given, family",
    [
        (("rsa-public", "aes"), "rsa"),
        (("aes", "rsa-public"), "aes"),
        (("aes", "kms"), "aes"),
        (("kms", "aes"), "kms"),
    ],
)
def test_the_first_key_given_encrypts(tmp_path, s3, bucket, keys, kms_key_arn, given, family):
    source = tmp_path / "f"
    source.write_bytes(b"first given")
    flags = {
        "aes": ["--aes-key", keys["aes"]],
        "rsa-public": ["--rsa-public-key", keys["rsa-public"]],
        "kms": [f"--kms-key-id={kms_key_arn}"],
    }
    args = [flag for kind in given for flag in flags[kind]]
    run("cp", str(source), f"s3://{bucket}/first", *args, check_code=0)
    assert _wrap_family(s3, bucket, "first") == family


def _env_after_start(home) -> dict[str, str]:
    exports = run("local", "env", env={"S3CSE_HOME": str(home)}, check_code=0).stdout.decode()
    return dict(line[len("export ") :].split("=", 1) for line in exports.splitlines())


def test_local_kms_keys_and_endpoints_survive_a_restart(tmp_path):
    home = tmp_path / "home"
    env = {"S3CSE_HOME": str(home)}
    source = tmp_path / "f"
    source.write_bytes(b"written before the restart")
    try:
        run("local", "start", env=env, check_code=0)
        before = _env_after_start(home)
        client_env = {**env, **before}
        s3 = boto3.client(
            "s3",
            endpoint_url=before["AWS_ENDPOINT_URL_S3"],
            aws_access_key_id=before["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=before["AWS_SECRET_ACCESS_KEY"],
            region_name="us-east-1",
        )
        s3.create_bucket(Bucket="restart")
        run("cp", str(source), "s3://restart/f", env=client_env, check_code=0)  # the env's KMS key
        assert _wrap_family(s3, "restart", "f") == "kms"
        run("local", "stop", env=env, check_code=0)

        # stopped: the exported endpoint refuses, and the message says what to run
        refused = run("cat", "s3://restart/f", env=client_env)
        assert refused.returncode == 1
        assert b"s3cse local start" in refused.stderr and b"local env" in refused.stderr

        run("local", "start", env=env, check_code=0)
        assert _env_after_start(home) == before  # the same ports: the old exports still work
        out = run("cat", "s3://restart/f", env=client_env, check_code=0).stdout
        assert out == b"written before the restart"
        keys = json.loads((home / "local" / "kms" / "keys.json").read_text())
        assert len(keys["keys"]) == 1 and keys["keys"][0]["aliases"] == ["alias/s3cse-local"]
        assert (home / "local" / "kms" / "keys.json").stat().st_mode & 0o077 == 0
    finally:
        run("local", "stop", env=env)


def test_demo_writes_the_size_asked_for_explains_the_metadata_and_leaves_nothing(tmp_path):
    home = tmp_path / "home"
    env = {"S3CSE_HOME": str(home)}
    try:
        out = run("demo", "--size", "3145728", "--keep-running", env=env, check_code=0)
        text = out.stdout.decode()
        assert "(3145728 bytes," in text
        assert "the key commitment" in text and "your own metadata" in text
        assert "removed the demo bucket" in text
        servers = _env_after_start(home)
        s3 = boto3.client(
            "s3",
            endpoint_url=servers["AWS_ENDPOINT_URL_S3"],
            aws_access_key_id=servers["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=servers["AWS_SECRET_ACCESS_KEY"],
            region_name="us-east-1",
        )
        assert [b["Name"] for b in s3.list_buckets().get("Buckets", [])] == []
    finally:
        run("local", "stop", env=env)
