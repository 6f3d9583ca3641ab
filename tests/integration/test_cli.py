"""The s3cse command, driven for real (subprocesses) against the local servers."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.stores import open_uploads

# The command line's own logic, driven as a user drives it; what the stores differ in is
# covered by the client, transfer and fsspec tests, which run on both.
pytestmark = pytest.mark.seaweedfs_only(
    "CLI behaviour; store differences are covered by the client tests"
)

#: The installed command, as a user runs it (the console script beside this Python).
S3CSE = str(Path(sys.executable).parent / "s3cse")


def run(*args, input=None, env=None, check_code=None):
    proc = subprocess.run(
        [S3CSE, *args],
        input=input,
        capture_output=True,
        env={**os.environ, **(env or {})},
        timeout=300,
    )
    if check_code is not None:
        assert proc.returncode == check_code, (
            proc.returncode,
            proc.stdout[-2000:],
            proc.stderr.decode(errors="replace"),
        )
    return proc


@pytest.fixture
def aes_key_file(tmp_path, servers):
    path = tmp_path / "master.key"
    run("keygen", "aes", str(path), check_code=0)
    return path


def test_keygen(tmp_path, servers):
    aes = tmp_path / "k"
    run("keygen", "aes", str(aes), check_code=0)
    assert len(aes.read_bytes()) == 32 and stat.S_IMODE(aes.stat().st_mode) == 0o600
    refused = run("keygen", "aes", str(aes), check_code=2)
    assert b"refusing to overwrite" in refused.stderr
    priv, pub = tmp_path / "p.pem", tmp_path / "pub.pem"
    run("keygen", "rsa", str(priv), "--public", str(pub), "--bits", "2048", check_code=0)
    assert stat.S_IMODE(priv.stat().st_mode) == 0o600
    assert pub.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")


def test_cp_up_down_cat_and_pipes(tmp_path, s3, bucket, aes_key_file):
    src = tmp_path / "in.txt"
    src.write_bytes(b"hello encrypted world\n" * 1000)
    run("cp", str(src), f"s3://{bucket}/a/in.txt", "--aes-key", str(aes_key_file), check_code=0)
    assert b"hello" not in s3.get_object(Bucket=bucket, Key="a/in.txt")["Body"].read()
    out = tmp_path / "out.txt"
    run("cp", f"s3://{bucket}/a/in.txt", str(out), "--aes-key", str(aes_key_file), check_code=0)
    assert out.read_bytes() == src.read_bytes()
    cat = run("cat", f"s3://{bucket}/a/in.txt", "--aes-key", str(aes_key_file), check_code=0)
    assert cat.stdout == src.read_bytes()
    run(
        "cp",
        "-",
        f"s3://{bucket}/piped",
        "--aes-key",
        str(aes_key_file),
        input=b"from stdin",
        check_code=0,
    )
    down = run("cp", f"s3://{bucket}/piped", "-", "--aes-key", str(aes_key_file), check_code=0)
    assert down.stdout == b"from stdin"


def test_recursive_with_filters(tmp_path, s3, bucket, aes_key_file):
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    for name in ("a.csv", "b.log", "sub/c.csv", "sub/d.tmp"):
        (tree / name).write_text(name)
    run(
        "cp",
        str(tree),
        f"s3://{bucket}/t",
        "--recursive",
        "--exclude",
        "*",
        "--include",
        "*.csv",
        "--aes-key",
        str(aes_key_file),
        "--instruction-file",
        check_code=0,
    )
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"])
    assert keys == ["t/a.csv", "t/a.csv.instruction", "t/sub/c.csv", "t/sub/c.csv.instruction"]
    back = tmp_path / "back"
    run(
        "cp",
        f"s3://{bucket}/t/",
        str(back),
        "--recursive",
        "--aes-key",
        str(aes_key_file),
        check_code=0,
    )
    assert sorted(str(p.relative_to(back)) for p in back.rglob("*") if p.is_file()) == [
        "a.csv",
        "sub/c.csv",
    ]
    assert (back / "sub" / "c.csv").read_text() == "sub/c.csv"


def test_s3_to_s3_reencrypts_to_another_key(tmp_path, bucket, aes_key_file, kms_key_arn):
    run(
        "cp",
        "-",
        f"s3://{bucket}/src",
        "--aes-key",
        str(aes_key_file),
        input=b"move me",
        check_code=0,
    )
    run(
        "cp",
        f"s3://{bucket}/src",
        f"s3://{bucket}/dst",
        "--aes-key",
        str(aes_key_file),
        "--to-kms-key-id",
        kms_key_arn,
        check_code=0,
    )
    out = run("cat", f"s3://{bucket}/dst", "--kms-key-id", kms_key_arn, check_code=0)
    assert out.stdout == b"move me"


def test_exit_codes_and_messages(tmp_path, s3, bucket, aes_key_file):
    run(
        "cp",
        "-",
        f"s3://{bucket}/x",
        "--aes-key",
        str(aes_key_file),
        input=b"data" * 100,
        check_code=0,
    )
    stored = s3.get_object(Bucket=bucket, Key="x")
    body = bytearray(stored["Body"].read())
    body[3] ^= 1
    s3.put_object(Bucket=bucket, Key="x", Body=bytes(body), Metadata=stored["Metadata"])
    out = tmp_path / "x.out"
    tampered = run("cp", f"s3://{bucket}/x", str(out), "--aes-key", str(aes_key_file), check_code=3)
    assert f"s3://{bucket}/x".encode() in tampered.stderr and b"Traceback" not in tampered.stderr
    assert len(tampered.stderr.decode().strip().splitlines()) <= 2
    assert not out.exists() and list(tmp_path.glob(".s3cse-*")) == []
    missing = run("cat", f"s3://{bucket}/nope", "--aes-key", str(aes_key_file), check_code=1)
    assert b"does not exist" in missing.stderr
    run("cp", "only-one-arg", check_code=2)
    run("cp", "-", f"s3://{bucket}/y", input=b"x", check_code=2)  # no key given
    other = tmp_path / "other.key"
    run("keygen", "aes", str(other), check_code=0)
    wrong = run("cat", f"s3://{bucket}/x", "--aes-key", str(other), check_code=1)
    assert b"wrong key" in wrong.stderr
    debug = run("cat", f"s3://{bucket}/x", "--aes-key", str(other), "--debug")
    assert b"Traceback" in debug.stderr
    assert b"Exit codes" in run("--help", check_code=0).stdout


def test_key_file_checks(tmp_path, bucket, aes_key_file):
    loose = tmp_path / "loose.key"
    loose.write_bytes(aes_key_file.read_bytes())
    loose.chmod(0o644)
    warned = run("cp", "-", f"s3://{bucket}/w", "--aes-key", str(loose), input=b"x", check_code=0)
    assert b"readable by other users" in warned.stderr
    junk = tmp_path / "junk.key"
    junk.write_text("this is not a key at all")
    junk.chmod(0o600)
    bad = run("cp", "-", f"s3://{bucket}/w", "--aes-key", str(junk), input=b"x", check_code=2)
    assert b"is not an AES key" in bad.stderr
    b64 = tmp_path / "b64.key"
    import base64

    b64.write_bytes(base64.b64encode(aes_key_file.read_bytes()) + b"\n")
    b64.chmod(0o600)
    run("cp", "-", f"s3://{bucket}/w2", "--aes-key", str(b64), input=b"x", check_code=0)
    assert (
        run("cat", f"s3://{bucket}/w2", "--aes-key", str(aes_key_file), check_code=0).stdout == b"x"
    )


def test_rsa_public_key_uploads_private_key_reads(tmp_path, bucket):
    priv, pub = tmp_path / "p.pem", tmp_path / "pub.pem"
    run("keygen", "rsa", str(priv), "--public", str(pub), "--bits", "2048", check_code=0)
    run(
        "cp",
        "-",
        f"s3://{bucket}/r",
        "--rsa-public-key",
        str(pub),
        input=b"for the key holder",
        check_code=0,
    )
    # cat only decrypts: it takes no encrypt-only option, and points to the one it needs
    refused = run("cat", f"s3://{bucket}/r", "--rsa-public-key", str(pub), check_code=2)
    assert b"--rsa-private-key" in refused.stderr
    assert (
        run("cat", f"s3://{bucket}/r", "--rsa-private-key", str(priv), check_code=0).stdout
        == b"for the key holder"
    )


def test_inspect_and_ls(tmp_path, s3, bucket, aes_key_file, kms_key_arn):
    run(
        "cp",
        "-",
        f"s3://{bucket}/enc",
        "--aes-key",
        str(aes_key_file),
        "--matdesc",
        '{"kid":"k1"}',
        input=b"12345",
        check_code=0,
    )
    run(
        "cp",
        "-",
        f"s3://{bucket}/kms",
        "--kms-key-id",
        kms_key_arn,
        "--context",
        '{"app":"x"}',
        "--instruction-file",
        input=b"k",
        check_code=0,
    )
    s3.put_object(Bucket=bucket, Key="plain", Body=b"abc")
    info = json.loads(run("inspect", f"s3://{bucket}/enc", "--json", check_code=0).stdout)
    assert info["format"] == "V3" and info["wrap_algorithm"] == "AES/GCM"
    assert info["material_description"] == {"kid": "k1"} and info["plaintext_size"] == 5
    assert info["key_commitment_present"] is True and info["metadata_location"] == "object"
    kms_info = json.loads(run("inspect", f"s3://{bucket}/kms", "--json", check_code=0).stdout)
    assert (
        kms_info["encryption_context"] == {"app": "x"}
        and kms_info["metadata_location"] == "instruction file"
    )
    listing = run("ls", f"s3://{bucket}/", check_code=0).stdout.decode()
    lines = {line.split()[-1]: line for line in listing.splitlines()}
    assert (
        "V3 AES/GCM" in lines["enc"] and "plain" in lines["plain"] and "kms+context" in lines["kms"]
    )
    assert "kms.instruction" not in lines
    assert b"ciphertext size" in run("inspect", f"s3://{bucket}/enc", check_code=0).stdout


def test_rotate_prefix(tmp_path, bucket, aes_key_file, kms_key_arn):
    for i in range(5):
        run(
            "cp",
            "-",
            f"s3://{bucket}/p/{i}",
            "--aes-key",
            str(aes_key_file),
            input=str(i).encode(),
            check_code=0,
        )
    rotate = ("rotate", f"s3://{bucket}/p/", "--aes-key", str(aes_key_file))
    dry = run(*rotate, "--to-kms-key-id", kms_key_arn, "--dryrun", check_code=0)
    *lines, summary = dry.stdout.decode().splitlines()
    assert sorted(lines) == [f"(dryrun) rotate: s3://{bucket}/p/{i}" for i in range(5)]
    assert summary.startswith("(dryrun) 5 would be re-encrypted")
    wrong = tmp_path / "wrong.key"
    wrong.write_bytes(b"\x07" * 32)
    wrong.chmod(0o600)
    refused = run(
        "rotate",
        f"s3://{bucket}/p/",
        "--aes-key",
        str(wrong),
        "--to-kms-key-id",
        kms_key_arn,
        "--dryrun",
    )
    assert refused.returncode == 1 and b"0 would be re-encrypted" in refused.stdout
    assert run("cat", f"s3://{bucket}/p/3", "--aes-key", str(aes_key_file)).stdout == b"3"
    out = run(*rotate, "--to-kms-key-id", kms_key_arn, check_code=0)
    assert b"5 re-encrypted" in out.stdout
    assert (
        run("cat", f"s3://{bucket}/p/3", "--kms-key-id", kms_key_arn, check_code=0).stdout == b"3"
    )
    again = run(
        "rotate",
        f"s3://{bucket}/p/",
        "--aes-key",
        str(aes_key_file),
        "--kms-key-id",
        kms_key_arn,
        "--to-kms-key-id",
        kms_key_arn,
        check_code=0,
    )
    assert b"5 already under the new key" in again.stdout


def test_local_servers_commands(tmp_path):
    env = {"S3CSE_HOME": str(tmp_path / "home")}
    assert run("local", "status", env=env).returncode == 1
    try:
        run("local", "start", env=env, check_code=0)
        status = run("local", "status", env=env, check_code=0)
        assert b"127.0.0.1" in status.stdout
        exports = run("local", "env", env=env, check_code=0).stdout.decode()
        values = dict(line[len("export ") :].split("=", 1) for line in exports.splitlines())
        assert values["AWS_ENDPOINT_URL_S3"].startswith("http://127.0.0.1:")
        client_env = {**env, **values}
        key = tmp_path / "k"
        run("keygen", "aes", str(key), check_code=0)
        import boto3

        boto3.client(
            "s3",
            endpoint_url=values["AWS_ENDPOINT_URL_S3"],
            aws_access_key_id=values["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=values["AWS_SECRET_ACCESS_KEY"],
            region_name="us-east-1",
        ).create_bucket(Bucket="local-cli")
        run(
            "cp",
            "-",
            "s3://local-cli/x",
            "--aes-key",
            str(key),
            input=b"via env",
            env=client_env,
            check_code=0,
        )
        assert (
            run(
                "cat", "s3://local-cli/x", "--aes-key", str(key), env=client_env, check_code=0
            ).stdout
            == b"via env"
        )
        assert (
            run(
                "cat",
                "s3://local-cli/x",
                "--kms-key-id",
                values["S3CSE_KMS_KEY_ID"],
                "--aes-key",
                str(key),
                env=client_env,
                check_code=0,
            ).stdout
            == b"via env"
        )
    finally:
        run("local", "stop", env=env)
    assert run("local", "status", env=env).returncode == 1


def test_demo(tmp_path):
    out = run("demo", "--size", "100000", env={"S3CSE_HOME": str(tmp_path / "home")}, check_code=0)
    text = out.stdout.decode()
    assert "sha256 matches" in text and "no, ciphertext" in text and "is refused" in text


def test_ctrl_c_aborts_the_multipart_upload(tmp_path, s3, bucket, aes_key_file):
    import signal
    import time

    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "s3cse",
            "cp",
            "-",
            f"s3://{bucket}/interrupted",
            "--aes-key",
            str(aes_key_file),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=os.environ.copy(),
    )
    block = os.urandom(1024 * 1024)
    deadline = time.monotonic() + 60
    while not open_uploads(s3, bucket) and time.monotonic() < deadline:
        proc.stdin.write(block)  # keep feeding until the multipart upload has started
        proc.stdin.flush()
    assert open_uploads(s3, bucket), "the upload never started"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert b"aborted" in err
    assert open_uploads(s3, bucket) == []
    assert "interrupted" not in [
        o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    ]


def test_reads_need_a_key_option_and_kms_discovery_is_only_ever_asked_for(s3, bucket, kms_key_arn):
    run("cp", "-", f"s3://{bucket}/k", "--kms-key-id", kms_key_arn, input=b"kms data", check_code=0)
    refused = run("cat", f"s3://{bucket}/k", check_code=2)  # no key: no implicit discovery
    assert b"--kms-discovery" in refused.stderr and b"--aes-key" in refused.stderr
    refused = run("cp", f"s3://{bucket}/k", "-", check_code=2)
    assert b"--kms-key-id" in refused.stderr
    account = kms_key_arn.split(":")[4]
    mine = run("cat", f"s3://{bucket}/k", "--kms-discovery-account", account, check_code=0)
    assert mine.stdout == b"kms data"
    stranger = run(
        "cat", f"s3://{bucket}/k", "--kms-discovery-account", "999999999999", check_code=1
    )
    assert b"999999999999" in stranger.stderr or b"account" in stranger.stderr
    assert run("cat", f"s3://{bucket}/k", "--kms-discovery", check_code=0).stdout == b"kms data"
    refused = run("cp", "-", f"s3://{bucket}/w", "--kms-discovery", input=b"x", check_code=2)
    assert b"only reads" in refused.stderr


def test_rotate_verify_refuses_a_tampered_object_and_reports_it(s3, bucket, tmp_path, aes_key_file):
    new_key = tmp_path / "new.key"
    run("keygen", "aes", str(new_key), check_code=0)
    for name in ("good", "bad"):
        run(
            "cp",
            "-",
            f"s3://{bucket}/r/{name}",
            "--aes-key",
            str(aes_key_file),
            input=b"data " * 100,
            check_code=0,
        )
    stored = s3.get_object(Bucket=bucket, Key="r/bad")
    body = bytearray(stored["Body"].read())
    body[-1] ^= 1
    s3.put_object(Bucket=bucket, Key="r/bad", Body=bytes(body), Metadata=stored["Metadata"])
    out = run(
        "rotate",
        f"s3://{bucket}/r/",
        "--aes-key",
        str(aes_key_file),
        "--to-aes-key",
        str(new_key),
        "--verify",
        check_code=1,
    )
    assert b"1 re-encrypted" in out.stdout and b"1 authenticated first" in out.stdout
    assert b"r/bad" in out.stderr and out.stderr.count(f"s3://{bucket}/r/bad".encode()) == 1
    assert (
        run("cat", f"s3://{bucket}/r/good", "--aes-key", str(new_key), check_code=0).stdout
        == b"data " * 100
    )
