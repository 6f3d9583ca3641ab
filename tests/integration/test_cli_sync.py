"""``s3cse sync`` in its three directions, driven through the installed command: what it
sends, what it leaves, what it deletes, and which requests it makes to decide."""

from __future__ import annotations

import os
import textwrap

import pytest

import s3cse
from tests.integration.test_cli import run
from tests.unit.legacy_objects import v1_aes_object

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


@pytest.fixture
def calls(tmp_path):
    """Run the command with every S3 and KMS request it makes recorded: (env, read).
    With S3CSE_TEST_WRITE_AFTER_LIST=bucket/key in the env, "another writer" stores that
    object right after the command's first listing."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        textwrap.dedent(
            """
            import os
            import botocore.client

            _make_api_call = botocore.client.BaseClient._make_api_call

            def _record(self, operation, params):
                with open(os.environ["S3CSE_TEST_CALLS"], "a") as f:
                    f.write(operation + "\\n")
                response = _make_api_call(self, operation, params)
                race = os.environ.pop("S3CSE_TEST_WRITE_AFTER_LIST", None)
                if race and operation == "ListObjectsV2":  # another writer, just then
                    bucket, key = race.split("/", 1)
                    _make_api_call(
                        self, "PutObject", {"Bucket": bucket, "Key": key, "Body": b"newer"}
                    )
                elif race:
                    os.environ["S3CSE_TEST_WRITE_AFTER_LIST"] = race
                return response

            botocore.client.BaseClient._make_api_call = _record
            """
        )
    )
    log = tmp_path / "calls.log"

    def read():
        made = log.read_text().split() if log.exists() else []
        log.unlink(missing_ok=True)
        return made

    env = {"PYTHONPATH": str(hook), "S3CSE_TEST_CALLS": str(log)}
    return env, read


def _lines(proc):
    return sorted(proc.stdout.decode().splitlines())


def _keys(s3, bucket, prefix=""):
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return sorted(o["Key"] for o in listed)


def _reader(s3, key):
    with open(key, "rb") as f:
        return s3cse.EncryptionClient(s3, keyring=s3cse.AesKeyring(f.read()))


def _tree(root, files):
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def _age(path, seconds):
    """Set back a file's modification time (as if written ``seconds`` ago)."""
    info = os.stat(path)
    os.utime(path, (info.st_atime, info.st_mtime - seconds))


def test_sync_up_sends_only_what_is_new_or_changed_and_deletes_what_is_gone(
    s3, bucket, key, tmp_path, calls
):
    env, made = calls
    src = tmp_path / "src"
    _tree(src, {"a.txt": b"a" * 10, "b.txt": b"b" * 20, "sub/c.txt": b"c", "skip.log": b"l"})
    for name in ("a.txt", "b.txt", "sub/c.txt", "skip.log"):
        _age(src / name, 3600)  # written well before the upload
    target = f"s3://{bucket}/up"
    common = ("--aes-key", key, "--instruction-file", "--no-progress")
    dry = run("sync", str(src), target, *common, "--dryrun", "--exclude", "*.log", check_code=0)
    assert _lines(dry) == [
        f"(dryrun) upload: {src}/{n} to {target}/{n}" for n in ("a.txt", "b.txt", "sub/c.txt")
    ]
    assert _keys(s3, bucket) == []
    first = run("sync", str(src), target, *common, "--exclude", "*.log", check_code=0)
    assert len(_lines(first)) == 3
    assert sorted(_keys(s3, bucket)) == sorted(
        [f"up/{n}" for n in ("a.txt", "b.txt", "sub/c.txt")]
        + [f"up/{n}.instruction" for n in ("a.txt", "b.txt", "sub/c.txt")]
    )
    # Unchanged: nothing is sent, and deciding so takes one listing, no HEAD, no GET.
    made()
    again = run("sync", str(src), target, *common, "--exclude", "*.log", env=env, check_code=0)
    assert again.stdout == b""
    assert set(made()) == {"ListObjectsV2"}
    # A changed size is sent; a same-sized file written after the upload is sent too.
    (src / "a.txt").write_bytes(b"A" * 11)
    (src / "b.txt").write_bytes(b"B" * 20)
    (src / "sub/c.txt").unlink()
    third = run("sync", str(src), target, *common, "--exclude", "*.log", "--delete", check_code=0)
    assert _lines(third) == [
        f"delete: {target}/sub/c.txt",
        f"upload: {src}/a.txt to {target}/a.txt",
        f"upload: {src}/b.txt to {target}/b.txt",
    ]
    assert "up/sub/c.txt.instruction" not in _keys(s3, bucket)  # gone with its object
    client = _reader(s3, key)
    assert client.get_object(Bucket=bucket, Key="up/b.txt")["Body"].read() == b"B" * 20
    # --size-only ignores a newer file of the same size.
    (src / "b.txt").write_bytes(b"X" * 20)
    assert run("sync", str(src), target, *common, "--exclude", "*.log", "--size-only").stdout == b""
    # An excluded name is neither sent nor deleted at the destination.
    s3.put_object(Bucket=bucket, Key="up/other.log", Body=b"not ours")
    run("sync", str(src), target, *common, "--exclude", "*.log", "--delete", check_code=0)
    assert "up/other.log" in _keys(s3, bucket)


def test_sync_down_sets_times_compares_as_aws_and_never_downloads_to_compare(
    s3, bucket, key, tmp_path, calls
):
    env, made = calls
    src = tmp_path / "src"
    _tree(src, {"a.bin": os.urandom(5000), "d/b.bin": os.urandom(7)})
    run("sync", str(src), f"s3://{bucket}/down", "--aes-key", key, check_code=0)
    dst = tmp_path / "dst"
    first = run("sync", f"s3://{bucket}/down", str(dst), "--aes-key", key, check_code=0)
    assert len(_lines(first)) == 2
    assert (dst / "a.bin").read_bytes() == (src / "a.bin").read_bytes()
    (listed,) = s3.list_objects_v2(Bucket=bucket, Prefix="down/a.bin")["Contents"]
    assert os.stat(dst / "a.bin").st_mtime == listed["LastModified"].timestamp()  # as aws
    made()
    assert run("sync", f"s3://{bucket}/down", str(dst), "--aes-key", key, env=env).stdout == b""
    assert set(made()) == {"ListObjectsV2"}
    # aws's rule: a same-sized local file that is newer than the object is downloaded
    # again; one that is older is left unless --exact-timestamps.
    (dst / "a.bin").write_bytes(b"z" * 5000)
    newer = run("sync", f"s3://{bucket}/down", str(dst), "--aes-key", key, check_code=0)
    assert _lines(newer) == [f"download: s3://{bucket}/down/a.bin to {dst}/a.bin"]
    assert (dst / "a.bin").read_bytes() == (src / "a.bin").read_bytes()
    (dst / "a.bin").write_bytes(b"y" * 5000)
    _age(dst / "a.bin", 7200)
    assert run("sync", f"s3://{bucket}/down", str(dst), "--aes-key", key).stdout == b""
    exact = run("sync", f"s3://{bucket}/down", str(dst), "--aes-key", key, "--exact-timestamps")
    assert _lines(exact) == [f"download: s3://{bucket}/down/a.bin to {dst}/a.bin"]
    assert (dst / "a.bin").read_bytes() == (src / "a.bin").read_bytes()
    # --delete removes local files the prefix does not have.
    (dst / "stray.txt").write_bytes(b"s")
    gone = run("sync", f"s3://{bucket}/down", str(dst), "--aes-key", key, "--delete")
    assert _lines(gone) == [f"delete: {dst}/stray.txt"]
    assert not (dst / "stray.txt").exists()


def test_sync_across_buckets_re_encrypts_and_settles_listed_sizes_with_a_head(
    s3, bucket, key, tmp_path, calls, kms_key_arn
):
    env, made = calls
    # A V1 CBC object's listed size says nothing of its plaintext size (padding): the
    # estimate is settled with a HEAD, never a GET; then it is in sync.
    with open(key, "rb") as f:
        body, metadata = v1_aes_object(f.read(), b"w" * 100)
    s3.put_object(Bucket=bucket, Key="v1/old.bin", Body=body, Metadata=metadata)
    local = tmp_path / "local"
    _tree(local, {"old.bin": b"w" * 100})
    _age(local / "old.bin", 3600)
    made()
    up = run("sync", str(local), f"s3://{bucket}/v1", "--aes-key", key, env=env, check_code=0)
    assert up.stdout == b""
    assert sorted(set(made())) == ["HeadObject", "ListObjectsV2"]
    # An object at the destination that is not encrypted is replaced by its encrypted
    # form, whatever its size says.
    s3.put_object(Bucket=bucket, Key="v1/plain.txt", Body=b"p" * 16)
    _tree(local, {"plain.txt": b"p" * 16})
    _age(local / "plain.txt", 3600)
    fixed = run("sync", str(local), f"s3://{bucket}/v1", "--aes-key", key, check_code=0)
    assert _lines(fixed) == [f"upload: {local}/plain.txt to s3://{bucket}/v1/plain.txt"]
    assert s3.get_object(Bucket=bucket, Key="v1/plain.txt")["Body"].read() != b"p" * 16
    # s3 -> s3 under another key; a second run copies nothing.
    source, target = f"s3://{bucket}/v1", f"s3://{bucket}/kms"
    read = ("--aes-key", key, "--legacy-wrapping", "--legacy-unauthenticated")
    read += ("--commitment-policy", "REQUIRE_ENCRYPT_ALLOW_DECRYPT")
    first = run("sync", source, target, *read, "--to-kms-key-id", kms_key_arn, check_code=0)
    assert len(_lines(first)) == 2
    assert run("sync", source, target, *read, "--to-kms-key-id", kms_key_arn).stdout == b""
    s3.delete_object(Bucket=bucket, Key="v1/plain.txt")
    gone = run("sync", source, target, *read, "--to-kms-key-id", kms_key_arn, "--delete")
    assert _lines(gone) == [f"delete: {target}/plain.txt"]
    # An empty or mistyped source never empties the destination.
    refused = run("sync", f"s3://{bucket}/typo", target, *read, "--delete", check_code=2)
    assert b"holds nothing" in refused.stderr
    assert _keys(s3, bucket, "kms/") == ["kms/old.bin"]


@pytest.mark.seaweedfs_only("rclone's serve s3 ignores If-Match on DELETE (S3 honours it)")
def test_a_move_or_delete_never_removes_an_object_another_writer_replaced(
    s3, bucket, key, tmp_path, calls
):
    env, _ = calls
    src = tmp_path / "src"
    _tree(src, {"a.txt": b"a", "b.txt": b"b"})
    run("sync", str(src), f"s3://{bucket}/m", "--aes-key", key, check_code=0)
    race = {**env, "S3CSE_TEST_WRITE_AFTER_LIST": f"{bucket}/m/b.txt"}
    moved = run(
        "mv",
        f"s3://{bucket}/m",
        str(tmp_path / "out"),
        "--recursive",
        "--aes-key",
        key,
        "--allow-unencrypted",
        env=race,
    )
    assert moved.returncode == 1, moved.stderr
    assert b"changed after it was read" in moved.stderr and b"so it was kept" in moved.stderr
    assert _keys(s3, bucket, "m/") == ["m/b.txt"]  # the newer object stays
    assert s3.get_object(Bucket=bucket, Key="m/b.txt")["Body"].read() == b"newer"
    assert (tmp_path / "out/a.txt").read_bytes() == b"a"
    # sync --delete lists, then another writer stores at a name it meant to delete.
    (src / "b.txt").unlink()
    run("sync", str(src), f"s3://{bucket}/m", "--aes-key", key, check_code=0)
    s3.put_object(Bucket=bucket, Key="m/c.txt", Body=b"old")
    race = {**env, "S3CSE_TEST_WRITE_AFTER_LIST": f"{bucket}/m/c.txt"}
    kept = run("sync", str(src), f"s3://{bucket}/m", "--aes-key", key, "--delete", env=race)
    assert kept.returncode == 1 and b"changed after sync listed it" in kept.stderr
    assert s3.get_object(Bucket=bucket, Key="m/c.txt")["Body"].read() == b"newer"


def test_sync_down_never_writes_or_deletes_through_a_link_or_outside_its_folder(
    s3, bucket, key, tmp_path
):
    outside = tmp_path / "outside"
    _tree(outside, {"precious": b"keep me"})
    src = tmp_path / "src"
    _tree(src, {"a": b"a", "ext/precious": b"planted", "v2/file": b"v"})
    run("sync", str(src), f"s3://{bucket}/l", "--aes-key", key, check_code=0)
    dst = tmp_path / "dst"
    _tree(dst, {"v2/file": b"v", ".s3cse-abc.part": b"partial"})
    (dst / "ext").symlink_to(outside)  # a link out of the folder
    (dst / "latest").symlink_to(dst / "v2")  # and one inside it
    done = run("sync", f"s3://{bucket}/l", str(dst), "--aes-key", key, "--delete")
    assert done.returncode == 2, done.stderr  # as aws: something was skipped
    assert b"skipping s3://" in done.stderr and b"would write outside" in done.stderr
    assert (outside / "precious").read_bytes() == b"keep me"
    assert (dst / "v2/file").read_bytes() == b"v" and (dst / "a").read_bytes() == b"a"
    assert (dst / ".s3cse-abc.part").exists()  # never listed, never deleted
    assert (dst / "latest").is_symlink()


def test_sync_up_skips_names_s3_keeps_and_deletes_nothing_after_an_unreadable_source(
    s3, bucket, key, tmp_path
):
    src = tmp_path / "src"
    volume = tmp_path / "volume"
    _tree(src, {"doc": b"hello", ".s3cse-x.part": b"partial"})
    _tree(volume, {"p1": b"photo"})
    (src / "vol").symlink_to(volume)
    target = f"s3://{bucket}/u"
    common = ("--aes-key", key, "--instruction-file")
    run("sync", str(src), target, *common, check_code=0)
    assert _keys(s3, bucket) == sorted(
        ["u/doc", "u/doc.instruction", "u/vol/p1", "u/vol/p1.instruction"]
    )
    (src / "doc.instruction").write_bytes(b"not an instruction file")
    planted = run("sync", str(src), target, *common)
    assert planted.returncode == 2 and b"doc.instruction" in planted.stderr
    assert _reader(s3, key).get_object(Bucket=bucket, Key="u/doc")["Body"].read() == b"hello"
    (src / "doc.instruction").unlink()
    # The volume goes away: its link dangles. What could not be read is not gone.
    volume.rename(tmp_path / "unmounted")
    kept = run("sync", str(src), target, *common, "--delete")
    assert kept.returncode == 2 and b"--delete deleted nothing" in kept.stderr
    assert "u/vol/p1" in _keys(s3, bucket)


def test_sync_refuses_nested_prefixes_and_clears_a_file_in_the_way_of_a_folder(
    s3, bucket, key, tmp_path
):
    for source, target in (("n/sub", "n"), ("n", "n/sub/"), ("n/", "n")):
        refused = run("sync", f"s3://{bucket}/{source}", f"s3://{bucket}/{target}", "--delete")
        assert refused.returncode == 2 and b"inside the other" in refused.stderr
    src = tmp_path / "src"
    _tree(src, {"x/y": b"y"})
    run("sync", str(src), f"s3://{bucket}/n", "--aes-key", key, check_code=0)
    dst = tmp_path / "dst"
    _tree(dst, {"x": b"a file where the folder goes"})
    done = run("sync", f"s3://{bucket}/n", str(dst), "--aes-key", key, "--delete")
    assert done.returncode == 0, done.stderr
    assert (dst / "x/y").read_bytes() == b"y"
    # A planted plaintext object too small to be encrypted is never taken as in sync.
    s3.put_object(Bucket=bucket, Key="n/x/y", Body=b"")
    (src / "x/y").write_bytes(b"")
    _age(src / "x/y", 3600)  # older than the object: only its size can tell
    empty = tmp_path / "empty"  # (an empty object has no first byte to GET: a HEAD does)
    run(
        "cp",
        f"s3://{bucket}/n/x/y",
        str(empty),
        "--aes-key",
        key,
        "--allow-unencrypted",
        check_code=0,
    )
    assert empty.read_bytes() == b""
    fixed = run("sync", str(src), f"s3://{bucket}/n", "--aes-key", key, check_code=0)
    assert fixed.stdout.decode().startswith("upload:")
    assert len(s3.get_object(Bucket=bucket, Key="n/x/y")["Body"].read()) == 16
