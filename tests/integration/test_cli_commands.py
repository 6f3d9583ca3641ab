"""The commands people reach for first in `aws s3` (mb, rb, ls, rm, mv, --dryrun, the
upload options, --workers), driven through the installed ``s3cse`` command."""

from __future__ import annotations

import json
import os

import pytest

import s3cse
from tests.integration.test_cli import run
from tests.stores import lower_keys

# The command line's own logic, driven as a user drives it; what the stores differ in is
# covered by the client, transfer and fsspec tests, which run on both.
pytestmark = pytest.mark.seaweedfs_only(
    "CLI behaviour; store differences are covered by the client tests"
)


@pytest.fixture
def key(tmp_path, servers):
    path = tmp_path / "master.key"
    run("keygen", "aes", str(path), check_code=0)
    return str(path)


def _keys(s3, bucket, prefix=""):
    return sorted(
        o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    )


def _reader(key):
    with open(key, "rb") as f:
        return s3cse.AesKeyring(f.read())


def test_mb_ls_buckets_and_rb_force(s3, key, tmp_path):
    name = f"cli-mb-{os.getpid()}"
    done = run("mb", f"s3://{name}", check_code=0)
    assert done.stdout.decode().strip() == f"make_bucket: {name}"
    assert name in run("ls", check_code=0).stdout.decode()
    (tmp_path / "f").write_bytes(b"f")
    run(
        "cp",
        str(tmp_path / "f"),
        f"s3://{name}/f",
        "--aes-key",
        key,
        "--instruction-file",
        check_code=0,
    )
    refused = run("rb", f"s3://{name}", check_code=1)  # not empty
    assert b"--force" in refused.stderr
    done = run("rb", f"s3://{name}", "--force", check_code=0)
    assert done.stdout.decode().splitlines() == [f"delete: s3://{name}/f", f"remove_bucket: {name}"]
    assert name not in run("ls").stdout.decode()


def test_ls_relative_names_human_sizes_summary_and_empty(s3, bucket, key, tmp_path):
    (tmp_path / "f").write_bytes(b"x" * 2048)
    for name in ("dir/a.bin", "dir/sub/b.bin"):
        run("cp", str(tmp_path / "f"), f"s3://{bucket}/{name}", "--aes-key", key, check_code=0)
    lines = run("ls", f"s3://{bucket}/dir/", check_code=0).stdout.decode().splitlines()
    assert lines[0].split() == ["PRE", "sub/"]
    assert lines[1].split()[-1] == "a.bin" and " 2048 " in lines[1]  # plaintext size
    listing = run(
        "ls", f"s3://{bucket}/dir/", "--recursive", "--human-readable", "--summarize", check_code=0
    ).stdout.decode()
    assert "dir/sub/b.bin" in listing and "2.0 KiB" in listing
    assert "Total Objects: 2" in listing and "Total Size: 4.0 KiB" in listing
    assert run("ls", f"s3://{bucket}/nothing-here/").returncode == 1  # as aws


def test_rm_takes_instruction_files_along_and_dryrun_deletes_nothing(s3, bucket, key, tmp_path):
    (tmp_path / "f").write_bytes(b"f")
    for name in ("p/a", "p/b", "p/keep.log", "q"):
        run(
            "cp",
            str(tmp_path / "f"),
            f"s3://{bucket}/{name}",
            "--aes-key",
            key,
            "--instruction-file",
            check_code=0,
        )
    s3.put_object(Bucket=bucket, Key="p/stray.instruction", Body=b"{}")  # its object is gone
    dry = run("rm", f"s3://{bucket}/p/", "--recursive", "--dryrun", check_code=0).stdout.decode()
    assert "(dryrun) delete: s3://" in dry and len(_keys(s3, bucket, "p/")) == 7
    done = run("rm", f"s3://{bucket}/q", check_code=0)
    assert done.stdout.decode().strip() == f"delete: s3://{bucket}/q"
    assert _keys(s3, bucket, "q") == []
    run("rm", f"s3://{bucket}/p/", "--recursive", "--exclude", "*.log", check_code=0)
    assert _keys(s3, bucket, "p/") == ["p/keep.log", "p/keep.log.instruction"]


def test_mv_in_all_three_directions(s3, bucket, key, tmp_path, kms_key_arn):
    local = tmp_path / "f"
    local.write_bytes(b"moving")
    done = run("mv", str(local), f"s3://{bucket}/m/f", "--aes-key", key, check_code=0)
    assert done.stdout.decode().startswith("move: ") and not local.exists()
    done = run(
        "mv", f"s3://{bucket}/m/f", f"s3://{bucket}/m/g", "--aes-key", key,
        "--to-kms-key-id", kms_key_arn, check_code=0,
    )  # fmt: skip
    assert _keys(s3, bucket, "m/") == ["m/g"]
    back = tmp_path / "back"
    run("mv", f"s3://{bucket}/m/g", str(back), "--kms-key-id", kms_key_arn, check_code=0)
    assert back.read_bytes() == b"moving" and _keys(s3, bucket, "m/") == []


def test_cp_dryrun_changes_nothing(s3, bucket, key, tmp_path):
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "a").write_bytes(b"a")
    done = run(
        "cp", "-r", str(tree), f"s3://{bucket}/d/", "--aes-key", key, "--dryrun", check_code=0
    )
    assert done.stdout.decode().startswith("(dryrun) upload: ")
    assert _keys(s3, bucket, "d/") == []


def test_upload_options_pass_through(s3, bucket, key, tmp_path):
    (tmp_path / "f").write_bytes(b"options")
    run(
        "cp", str(tmp_path / "f"), f"s3://{bucket}/o", "--aes-key", key,
        "--content-type", "text/csv", "--metadata", "dept=cardiology,owner=ana",
        check_code=0,
    )  # fmt: skip
    head = s3.head_object(Bucket=bucket, Key="o")
    assert head["ContentType"] == "text/csv"
    metadata = lower_keys(head["Metadata"])
    assert metadata["dept"] == "cardiology" and metadata["owner"] == "ana"
    got = s3cse.EncryptionClient(s3, keyring=_reader(key)).get_object(Bucket=bucket, Key="o")
    assert got["Body"].read() == b"options"
    run(
        "cp", str(tmp_path / "f"), f"s3://{bucket}/j", "--aes-key", key,
        "--metadata", json.dumps({"k": "v"}), check_code=0,
    )  # fmt: skip
    assert lower_keys(s3.head_object(Bucket=bucket, Key="j")["Metadata"])["k"] == "v"


@pytest.mark.seaweedfs_only("rclone's serve s3 ignores SSE-C keys (it stores plain bytes)")
def test_sse_c_on_top_of_client_side_encryption(s3, bucket, key, tmp_path):
    (tmp_path / "f").write_bytes(b"double")
    sse = tmp_path / "sse.key"
    sse.write_bytes(os.urandom(32))
    common = ["--aes-key", key, "--sse-c", "AES256", "--sse-c-key", f"fileb://{sse}"]
    run("cp", str(tmp_path / "f"), f"s3://{bucket}/c", *common, check_code=0)
    assert run("cp", f"s3://{bucket}/c", str(tmp_path / "x"), "--aes-key", key).returncode != 0
    run("cp", f"s3://{bucket}/c", str(tmp_path / "back"), *common, check_code=0)
    assert (tmp_path / "back").read_bytes() == b"double"


def test_recursive_copies_run_on_several_workers(s3, bucket, key, tmp_path):
    tree = tmp_path / "many"
    tree.mkdir()
    for i in range(60):
        (tree / f"f{i:03d}").write_bytes(os.urandom(1024))
    run(
        "cp",
        "-r",
        str(tree),
        f"s3://{bucket}/many/",
        "--aes-key",
        key,
        "--workers",
        "8",
        check_code=0,
    )
    assert len(_keys(s3, bucket, "many/")) == 60
    out = tmp_path / "out"
    done = run("cp", "-r", f"s3://{bucket}/many/", str(out), "--aes-key", key, check_code=0)
    assert done.stdout.decode().count("download: ") == 60
    assert all((out / p.name).read_bytes() == p.read_bytes() for p in tree.iterdir())


def test_kms_endpoint_url_option(servers, bucket, kms_key_arn, tmp_path):
    (tmp_path / "f").write_bytes(b"k")
    # nothing listens there (and one attempt: botocore would retry a refused connection)
    env = {"AWS_ENDPOINT_URL_KMS": "http://127.0.0.1:9", "AWS_MAX_ATTEMPTS": "1"}
    assert (
        run(
            "cp", str(tmp_path / "f"), f"s3://{bucket}/k", "--kms-key-id", kms_key_arn, env=env
        ).returncode
        == 1
    )
    run(
        "cp", str(tmp_path / "f"), f"s3://{bucket}/k", "--kms-key-id", kms_key_arn,
        "--kms-endpoint-url", servers.kms.endpoint, env=env, check_code=0,
    )  # fmt: skip


def test_mv_onto_itself_is_refused_and_loses_nothing(s3, bucket, key, tmp_path):
    (tmp_path / "f").write_bytes(b"only copy")
    run("cp", str(tmp_path / "f"), f"s3://{bucket}/self/k", "--aes-key", key, check_code=0)
    for args in (
        [f"s3://{bucket}/self/k", f"s3://{bucket}/self/k"],
        [f"s3://{bucket}/self/k", f"s3://{bucket}/self/"],
        [f"s3://{bucket}/self/", f"s3://{bucket}/self", "--recursive"],
    ):
        done = run("mv", *args, "--aes-key", key, check_code=2)
        assert b"onto itself" in done.stderr
    got = s3cse.EncryptionClient(s3, keyring=_reader(key)).get_object(Bucket=bucket, Key="self/k")
    assert got["Body"].read() == b"only copy"


def test_a_recursive_download_writes_each_object_to_its_own_name_or_fails(
    s3, bucket, key, tmp_path
):
    """An object whose file name is a folder there fails (it is not put inside it, where
    another object of that name would land too), and mv then keeps it."""
    client = s3cse.EncryptionClient(s3, keyring=_reader(key))
    client.put_object(Bucket=bucket, Key="c/x", Body=b"file x")
    client.put_object(Bucket=bucket, Key="c/y", Body=b"file y")
    out = tmp_path / "out"
    (out / "x").mkdir(parents=True)
    done = run("mv", "-r", f"s3://{bucket}/c/", str(out), "--aes-key", key)
    assert done.returncode == 1 and b"1 of 2 files failed" in done.stderr
    assert b"is a folder" in done.stderr
    assert list((out / "x").iterdir()) == [] and (out / "y").read_bytes() == b"file y"
    assert _keys(s3, bucket, "c/") == ["c/x"]  # not deleted: it was not moved


def test_s3_to_s3_copies_keep_content_type_and_user_metadata(s3, bucket, key, tmp_path):
    (tmp_path / "f").write_bytes(b"kept")
    run(
        "cp", str(tmp_path / "f"), f"s3://{bucket}/a", "--aes-key", key,
        "--content-type", "text/plain", "--metadata", "owner=ana", check_code=0,
    )  # fmt: skip
    run("mv", f"s3://{bucket}/a", f"s3://{bucket}/b", "--aes-key", key, check_code=0)
    head = s3.head_object(Bucket=bucket, Key="b")
    assert head["ContentType"] == "text/plain" and lower_keys(head["Metadata"])["owner"] == "ana"


def test_a_recursive_mv_moves_files_not_what_links_point_to(s3, bucket, key, tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"not mine to delete")
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "mine.txt").write_bytes(b"mine")
    (tree / "link.txt").symlink_to(outside)
    done = run("mv", "-r", str(tree), f"s3://{bucket}/mv/", "--aes-key", key, check_code=2)
    assert b"a symlink" in done.stderr
    assert outside.read_bytes() == b"not mine to delete" and not (tree / "mine.txt").exists()
    assert _keys(s3, bucket, "mv/") == ["mv/mine.txt"]


def test_a_recursive_copy_into_a_closed_pipe_exits_quietly(s3, bucket, key, tmp_path):
    import subprocess

    from tests.integration.test_cli import S3CSE

    tree = tmp_path / "many"
    tree.mkdir()
    for i in range(40):
        (tree / f"f{i:02d}").write_bytes(b"x")
    done = subprocess.run(
        f"'{S3CSE}' cp -r '{tree}' s3://{bucket}/pipe/ --aes-key '{key}' | head -1 >/dev/null;"
        ' echo "status ${PIPESTATUS[0]}" >&2',
        shell=True,
        executable="/bin/bash",
        capture_output=True,
        timeout=300,
    )
    lines = done.stderr.decode().strip().splitlines()
    assert lines[-1] in ("status 141", "status 0"), lines  # 0: all lines fitted the pipe
    assert not any("Errno" in line or "failed" in line for line in lines), lines


def test_a_corrupt_local_kms_state_is_reported_and_kept(tmp_path):
    home = tmp_path / "home"
    state = home / "local" / "kms" / "keys.json"
    state.parent.mkdir(parents=True)
    state.write_text('{"keys": [{"id": "x"}]}')
    done = run("local", "start", env={"S3CSE_HOME": str(home)})
    try:
        assert done.returncode == 1
        assert str(state).encode() in done.stderr and b"Traceback" not in done.stderr
        assert state.read_text() == '{"keys": [{"id": "x"}]}'  # the only copy: untouched
    finally:
        run("local", "stop", env={"S3CSE_HOME": str(home)})


def test_messages_name_command_line_options_not_python_parameters(s3, bucket, key, tmp_path):
    s3.put_object(Bucket=bucket, Key="plain.txt", Body=b"not encrypted")
    refused = run("cat", f"s3://{bucket}/plain.txt", "--aes-key", key, check_code=1)
    assert b"--allow-unencrypted" in refused.stderr
    assert b"allow_unencrypted_reads" not in refused.stderr
    done = run(
        "cat", f"s3://{bucket}/plain.txt", "--aes-key", key, "--allow-unencrypted", check_code=0
    )
    assert done.stdout == b"not encrypted"
    # a private key given where a public one is asked for: the file and the right option
    private = tmp_path / "p.pem"
    run(
        "keygen",
        "rsa",
        str(private),
        "--public",
        str(tmp_path / "pub.pem"),
        "--bits",
        "2048",
        check_code=0,
    )
    (tmp_path / "f").write_bytes(b"x")
    wrong = run(
        "cp",
        str(tmp_path / "f"),
        f"s3://{bucket}/r",
        "--rsa-public-key",
        str(private),
        check_code=2,
    )
    assert str(private).encode() in wrong.stderr and b"--rsa-private-key" in wrong.stderr
    assert b"public_key" not in wrong.stderr
    # a key of the wrong type: "one key option per key", no class names' grammar slips
    run("cp", str(tmp_path / "f"), f"s3://{bucket}/a", "--aes-key", key, check_code=0)
    other = run("cat", f"s3://{bucket}/a", "--rsa-private-key", str(private), check_code=1)
    assert b"one key option per key" in other.stderr and b"MultiKeyring" not in other.stderr
    assert b"a RsaKeyring" not in other.stderr


def test_help_of_a_read_only_command_lists_no_encrypt_only_options():
    text = run("cat", "--help", check_code=0).stdout.decode()
    assert "--rsa-public-key" not in text and "--instruction-file" not in text
    assert "--rsa-private-key" in text and "Exit codes" in text
    for command in ("cp", "mv", "rm", "ls", "mb", "rb", "rotate", "inspect", "cat"):
        shown = run(command, "--help", check_code=0).stdout.decode()
        assert "Exit codes" in shown, command
    assert "require_encrypt" not in run("cp", "--help", check_code=0).stdout.decode()
