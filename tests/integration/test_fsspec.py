"""The s3cse:// fsspec filesystem with real tools: pandas, pyarrow, Dask."""

from __future__ import annotations

import io
import os

import fsspec
import pytest

import s3cse
from s3cse.local import ACCESS_KEY, SECRET_KEY
from tests.stores import lower_keys, open_uploads

MiB = 1024 * 1024


@pytest.fixture
def key_file(tmp_path):
    path = tmp_path / "master.key"
    path.write_bytes(b"\x51" * 32)
    path.chmod(0o600)
    return str(path)


@pytest.fixture
def options(servers, key_file):
    return {
        "aes_key_file": key_file,
        "endpoint_url": servers.s3.endpoint,
        "key": ACCESS_KEY,
        "secret": SECRET_KEY,
    }


@pytest.fixture
def fs(options):
    return fsspec.filesystem("s3cse", skip_instance_cache=True, **options)


def test_protocol_is_registered_and_core_does_not_import_extras():
    import subprocess
    import sys

    assert "s3cse" in fsspec.available_protocols()
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import s3cse, sys; print(sorted(m for m in ('s3fs', 'fsspec', 'aiobotocore') if m in sys.modules))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "[]"


def test_open_write_read_seek_info_ls(fs, s3, bucket, key_file):
    data = os.urandom(20 * MiB + 7)
    with fs.open(f"{bucket}/dir/big.bin", "wb") as f:
        for i in range(0, len(data), 3 * MiB):
            f.write(data[i : i + 3 * MiB])
    stored = s3.get_object(Bucket=bucket, Key="dir/big.bin")["Body"].read()
    assert len(stored) == len(data) + 16 and stored[:64] != data[:64]
    reader = s3cse.EncryptionClient(s3, keyring=s3cse.AesKeyring(b"\x51" * 32))
    assert reader.get_object(Bucket=bucket, Key="dir/big.bin")["Body"].read() == data
    with fs.open(f"{bucket}/dir/big.bin", "rb") as f:
        assert f.read(10) == data[:10]
        f.seek(5 * MiB + 3)
        assert f.read(100) == data[5 * MiB + 3 : 5 * MiB + 103]
        f.seek(-5, io.SEEK_END)
        assert f.read() == data[-5:]
    assert fs.info(f"{bucket}/dir/big.bin")["size"] == len(data)
    fs.pipe_file(f"{bucket}/dir/small.txt", b"small")
    instr_fs = fsspec.filesystem(
        "s3cse",
        skip_instance_cache=True,
        instruction_file=True,
        aes_key_file=key_file,
        endpoint_url=fs.encryption.s3_client.meta.endpoint_url,
        key=ACCESS_KEY,
        secret=SECRET_KEY,
    )
    instr_fs.pipe_file(f"{bucket}/dir/instr.txt", b"with an instruction file")
    assert fs.cat_file(f"{bucket}/dir/instr.txt") == b"with an instruction file"
    assert fs.cat_file(f"{bucket}/dir/small.txt", start=1, end=3) == b"ma"
    names = sorted(p.rsplit("/", 1)[-1] for p in fs.ls(f"{bucket}/dir"))
    assert names == ["big.bin", "instr.txt", "small.txt"]
    assert sorted(p.rsplit("/", 1)[-1] for p in fs.find(f"{bucket}/dir")) == names
    assert sorted(p.rsplit("/", 1)[-1] for p in fs.glob(f"{bucket}/dir/*.txt")) == [
        "instr.txt",
        "small.txt",
    ]
    assert fs.info(f"{bucket}/dir/instr.txt")["size"] == len(b"with an instruction file")


def test_every_write_path_encrypts(fs, s3, bucket, tmp_path):
    local = tmp_path / "w.txt"
    local.write_bytes(b"plaintext that must not be stored")
    fs.put(str(local), f"{bucket}/w/put.txt")
    fs.pipe(f"{bucket}/w/pipe.txt", b"plaintext that must not be stored")
    fs.touch(f"{bucket}/w/touched")
    with fs.open(f"{bucket}/w/open.txt", "wb") as f:
        f.write(b"plaintext that must not be stored")
    fs.cp(f"{bucket}/w/put.txt", f"{bucket}/w/copy.txt")
    for key in ("put.txt", "pipe.txt", "open.txt", "copy.txt", "touched"):
        stored = s3.get_object(Bucket=bucket, Key=f"w/{key}")
        assert b"plaintext" not in stored["Body"].read()
        assert "x-amz-c" in lower_keys(stored["Metadata"]), key
    assert fs.cat(f"{bucket}/w/copy.txt") == b"plaintext that must not be stored"
    assert fs.cat(f"{bucket}/w/touched") == b""
    fs.get(f"{bucket}/w/pipe.txt", str(tmp_path / "got.txt"))
    assert (tmp_path / "got.txt").read_bytes() == b"plaintext that must not be stored"
    fs.rm(f"{bucket}/w/copy.txt")
    assert not fs.exists(f"{bucket}/w/copy.txt")
    with pytest.raises(s3cse.UnsafeOperationError):
        fs.merge(f"{bucket}/w/merged", [f"{bucket}/w/put.txt", f"{bucket}/w/pipe.txt"])
    with pytest.raises(s3cse.UnsafeOperationError):
        fs.setxattr(f"{bucket}/w/put.txt", owner="x")


def test_put_get_and_tampering(fs, s3, bucket, tmp_path):
    local = tmp_path / "in.bin"
    local.write_bytes(os.urandom(MiB + 1))
    fs.put(str(local), f"{bucket}/p.bin")
    fs.get(f"{bucket}/p.bin", str(tmp_path / "out.bin"))
    assert (tmp_path / "out.bin").read_bytes() == local.read_bytes()
    stored = s3.get_object(Bucket=bucket, Key="p.bin")
    body = bytearray(stored["Body"].read())
    body[100] ^= 1
    s3.put_object(Bucket=bucket, Key="p.bin", Body=bytes(body), Metadata=stored["Metadata"])
    with pytest.raises(s3cse.IntegrityError):
        fs.open(f"{bucket}/p.bin", "rb")


def test_pandas_csv_round_trip(options, bucket):
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(
        {
            "id": range(1000),
            "name": [f"patient-{i}" for i in range(1000)],
            "x": [i * 0.5 for i in range(1000)],
        }
    )
    frame.to_csv(f"s3cse://{bucket}/t.csv", index=False, storage_options=options)
    back = pd.read_csv(f"s3cse://{bucket}/t.csv", storage_options=options)
    pd.testing.assert_frame_equal(frame, back)


def test_pyarrow_parquet_round_trip(options, bucket):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    fs = fsspec.filesystem("s3cse", skip_instance_cache=True, **options)
    table = pa.table({"n": list(range(50_000)), "s": [str(i) for i in range(50_000)]})
    pq.write_table(table, f"{bucket}/t.parquet", filesystem=fs)
    assert pq.read_table(f"{bucket}/t.parquet", filesystem=fs).equals(table)
    pd = pytest.importorskip("pandas")
    frame = pd.read_parquet(f"s3cse://{bucket}/t.parquet", storage_options=options)
    assert len(frame) == 50_000


def test_dask_reads_several_partitions(options, bucket):
    dd = pytest.importorskip("dask.dataframe")
    pd = pytest.importorskip("pandas")
    for i in range(3):
        pd.DataFrame({"part": [i] * 100, "v": range(100)}).to_csv(
            f"s3cse://{bucket}/dask/p{i}.csv", index=False, storage_options=options
        )
    frame = dd.read_csv(f"s3cse://{bucket}/dask/p*.csv", storage_options=options)
    assert frame.npartitions == 3
    assert int(frame["v"].sum().compute()) == 3 * sum(range(100))


def test_failed_write_stores_nothing_and_rm_takes_instruction_files(
    fs, options, s3, bucket, key_file
):
    with pytest.raises(RuntimeError), fs.open(f"{bucket}/half.bin", "wb") as f:
        f.write(os.urandom(9 * MiB))
        raise RuntimeError("producer failed")
    assert not fs.exists(f"{bucket}/half.bin")
    assert open_uploads(s3, bucket) == []
    instr = fsspec.filesystem("s3cse", skip_instance_cache=True, instruction_file=True, **options)
    instr.pipe_file(f"{bucket}/r/a", b"x")
    instr.pipe_file(f"{bucket}/r/b", b"y")
    instr.rm(f"{bucket}/r", recursive=True)
    assert s3.list_objects_v2(Bucket=bucket, Prefix="r/").get("KeyCount", 0) == 0


def test_no_room_for_the_read_spool_is_a_clear_error(fs, s3, bucket, monkeypatch):
    from s3cse import _spool

    with fs.open(f"{bucket}/roomless.bin", "wb") as f:
        f.write(b"r" * (2 * MiB))
    monkeypatch.setattr(
        _spool.os, "fstatvfs", lambda fd: type("S", (), {"f_bavail": 16, "f_frsize": 4096})()
    )
    with pytest.raises(
        s3cse.SpoolSpaceError, match=f"s3://{bucket}/roomless.bin: no room for {2 * MiB + 16} bytes"
    ):
        fs.open(f"{bucket}/roomless.bin", "rb")
    monkeypatch.undo()
    with fs.open(f"{bucket}/roomless.bin", "rb") as f:
        assert f.read() == b"r" * (2 * MiB)


def test_opening_an_object_again_reuses_its_verified_spool_until_it_changes(
    fs, bucket, monkeypatch
):
    fs.pipe(f"{bucket}/twice", b"first version " * 1000)
    s3 = fs._store.s3
    gets = []
    real_get = s3.get_object

    def counting_get(**kwargs):
        gets.append(kwargs["Key"])
        return real_get(**kwargs)

    monkeypatch.setattr(s3, "get_object", counting_get)
    for _ in range(3):  # pyarrow opens a file twice: footer, then columns
        with fs.open(f"{bucket}/twice", "rb") as f:
            assert f.read(5) == b"first"
    assert gets == ["twice"]
    s3cse.EncryptionClient(s3, keyring=fs.encryption._store.cmm.keyring).put_object(
        Bucket=bucket, Key="twice", Body=b"second version"
    )  # written by another client: only the ETag tells
    with fs.open(f"{bucket}/twice", "rb") as f:
        assert f.read() == b"second version"
    assert gets == ["twice", "twice"]


def test_a_filesystem_that_keeps_no_spools_downloads_on_every_open(options, bucket, monkeypatch):
    fs = fsspec.filesystem("s3cse", skip_instance_cache=True, verified_cache_bytes=0, **options)
    fs.pipe(f"{bucket}/k", b"x" * 100)
    gets = []
    real_get = fs._store.s3.get_object
    monkeypatch.setattr(fs._store.s3, "get_object", lambda **kw: gets.append(kw) or real_get(**kw))
    for _ in range(2):
        assert fs.cat(f"{bucket}/k") == b"x" * 100
    assert len(gets) == 2


def test_read_file_seeks_like_an_io_file(fs, bucket):
    fs.pipe(f"{bucket}/s", b"0123456789")
    with fs.open(f"{bucket}/s", "rb") as f:
        assert f.seek(-3, io.SEEK_END) == 7 and f.read() == b"789"
        with pytest.raises(ValueError, match="negative seek"):
            f.seek(-1)
        with pytest.raises(ValueError, match="whence"):
            f.seek(0, 7)
        assert f.seek(20) == 20 and f.read() == b""
    with pytest.raises(ValueError):
        f.read()


def test_touch_without_truncate_never_empties_an_existing_object(fs, bucket):
    fs.pipe(f"{bucket}/t", b"keep me")
    with pytest.raises(ValueError, match="existent"):
        fs.touch(f"{bucket}/t", truncate=False)
    assert fs.cat(f"{bucket}/t") == b"keep me"
    fs.touch(f"{bucket}/new", truncate=False)
    assert fs.cat(f"{bucket}/new") == b""


def test_the_filesystem_needs_a_key_and_never_falls_back_to_kms_discovery(servers):
    with pytest.raises(s3cse.ConfigurationError, match="kms_discovery"):
        fsspec.filesystem(
            "s3cse",
            skip_instance_cache=True,
            endpoint_url=servers.s3.endpoint,
            key=ACCESS_KEY,
            secret=SECRET_KEY,
        )


def test_a_write_file_nobody_closed_stores_nothing(fs, bucket):
    import gc

    f = fs.open(f"{bucket}/abandoned", "wb")
    f.write(b"half of what was meant" * 1000)
    del f
    gc.collect()
    assert not fs.exists(f"{bucket}/abandoned")
