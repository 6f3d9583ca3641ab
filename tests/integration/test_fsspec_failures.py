"""The s3cse:// filesystem as data tools use it when things go wrong: exceptions inside
``with`` blocks of wrapped files (text mode, compression, ``fsspec.open``, pandas),
transactions, versioned paths, and sizes in listings. Compared with s3fs where it has a
behaviour s3cse matches (transactions, version ids). Where s3fs stores the partial
object of a failed wrapped write (s3fs 2026.9: all five wrappers here do), s3cse
stores nothing: a truncated encrypted object would carry a valid tag."""

from __future__ import annotations

import gzip
import os

import fsspec
import pytest

import s3cse
from s3cse.local import ACCESS_KEY, SECRET_KEY
from tests.stores import open_uploads

MiB = 1024 * 1024


@pytest.fixture
def key_file(tmp_path):
    path = tmp_path / "master.key"
    path.write_bytes(b"\x52" * 32)
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


class _ProducerFailed(Exception):
    pass


def _fail_inside(open_file, payload):
    with pytest.raises(_ProducerFailed), open_file() as f:
        f.write(payload)
        raise _ProducerFailed("the producer failed half-way")


# Each way a data tool wraps the raw file: the wrapper's __exit__ (or close) closes the
# raw file while the exception propagates. Small (one PUT) and large (multipart) writes.
_WRAPPERS = {
    "text mode": lambda fs, url, opts: (lambda: fs.open(url, "w"), "text"),
    "fsspec.open wb": lambda fs, url, opts: (
        lambda: fsspec.open(f"s3cse://{url}", "wb", **opts),
        "bytes",
    ),
    "fsspec.open text": lambda fs, url, opts: (
        lambda: fsspec.open(f"s3cse://{url}", "w", **opts),
        "text",
    ),
    "gzip": lambda fs, url, opts: (
        lambda: fsspec.open(f"s3cse://{url}", "wb", compression="gzip", **opts),
        "bytes",
    ),
    "raw wb": lambda fs, url, opts: (lambda: fs.open(url, "wb"), "bytes"),
}


@pytest.mark.parametrize("size", [1000, 9 * MiB], ids=["small", "multipart"])
@pytest.mark.parametrize("wrapper", sorted(_WRAPPERS))
def test_an_exception_inside_a_wrapped_write_stores_nothing(fs, options, s3, bucket, wrapper, size):
    url = f"{bucket}/failed/{wrapper.replace(' ', '-')}"
    opener, kind = _WRAPPERS[wrapper](fs, url, options)
    payload = os.urandom(size)
    _fail_inside(opener, payload.hex()[:size] if kind == "text" else payload)
    fs.invalidate_cache()
    assert not fs.exists(url)
    assert s3.list_objects_v2(Bucket=bucket, Prefix="failed/").get("KeyCount", 0) == 0
    assert open_uploads(s3, bucket) == []
    # and the same wrapper stores the whole object when its block ends cleanly
    with opener() as f:
        f.write(payload.hex()[:size] if kind == "text" else payload)
    stored = fs.cat_file(url)
    if wrapper == "gzip":
        stored = gzip.decompress(stored)
    assert stored == (payload.hex()[:size].encode() if kind == "text" else payload)


def test_a_file_written_inside_an_except_block_is_still_stored(fs, bucket):
    """The exception being handled where the file was opened is not one of its block."""
    try:
        raise KeyError("missing input")
    except KeyError:
        with fs.open(f"{bucket}/fallback.txt", "w") as f:
            f.write("fallback")
    assert fs.cat_file(f"{bucket}/fallback.txt") == b"fallback"


def test_pandas_to_csv_that_fails_half_way_stores_nothing(options, bucket, fs):
    pd = pytest.importorskip("pandas")

    class Poison:
        def __str__(self):
            raise _ProducerFailed("row 40000 cannot be written")

    values = list(range(50_000))
    frame = pd.DataFrame({"v": values, "w": [str(v) for v in values]})
    frame = frame.astype({"w": object})
    frame.loc[40_000, "w"] = Poison()
    url = f"s3cse://{bucket}/pandas/t.csv"
    with pytest.raises(_ProducerFailed):
        frame.to_csv(url, index=False, storage_options=options)
    assert not fs.exists(f"{bucket}/pandas/t.csv")
    frame.loc[40_000, "w"] = "fine"
    frame.to_csv(url, index=False, storage_options=options)
    assert len(pd.read_csv(url, storage_options=options)) == 50_000


def _s3fs(options):
    return fsspec.filesystem(
        "s3",
        skip_instance_cache=True,
        endpoint_url=options["endpoint_url"],
        key=ACCESS_KEY,
        secret=SECRET_KEY,
    )


def _transaction_outcomes(fs, bucket, prefix, size):
    """What a failed, then a successful, transaction of two files leaves on the store."""
    payloads = {f"{bucket}/{prefix}/{n}": os.urandom(size) for n in ("a", "b")}
    seen_inside = []
    with pytest.raises(_ProducerFailed), fs.transaction:
        for url, payload in payloads.items():
            with fs.open(url, "wb") as f:
                f.write(payload)
        fs.invalidate_cache()
        seen_inside.append(any(fs.exists(url) for url in payloads))
        raise _ProducerFailed("the job failed after writing both")
    fs.invalidate_cache()
    after_failure = any(fs.exists(url) for url in payloads)
    with fs.transaction:
        for url, payload in payloads.items():
            with fs.open(url, "wb") as f:
                f.write(payload)
        fs.invalidate_cache()
        seen_inside.append(any(fs.exists(url) for url in payloads))
    fs.invalidate_cache()
    whole = all(fs.cat_file(url) == payload for url, payload in payloads.items())
    return seen_inside, after_failure, whole


@pytest.mark.parametrize("size", [1000, 9 * MiB], ids=["small", "multipart"])
def test_a_transaction_stores_its_files_only_when_it_succeeds_as_s3fs_does(
    fs, options, s3, bucket, size
):
    ours = _transaction_outcomes(fs, bucket, "tx", size)
    assert ours == ([False, False], False, True)
    assert open_uploads(s3, bucket) == []
    assert _transaction_outcomes(_s3fs(options), bucket, "tx-s3fs", size) == ours


def test_pyarrow_parquet_written_in_a_transaction(fs, bucket):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pa.table({"v": list(range(10_000))})
    with pytest.raises(_ProducerFailed), fs.transaction:
        pq.write_table(table, f"{bucket}/pq/t.parquet", filesystem=fs)
        raise _ProducerFailed("a later step failed")
    fs.invalidate_cache()
    assert not fs.exists(f"{bucket}/pq/t.parquet")
    with fs.transaction:
        pq.write_table(table, f"{bucket}/pq/t.parquet", filesystem=fs)
    fs.invalidate_cache()
    assert pq.read_table(f"{bucket}/pq/t.parquet", filesystem=fs).equals(table)


def test_a_file_whose_block_failed_inside_a_committed_transaction_stays_unstored(fs, bucket):
    with fs.transaction:
        with pytest.raises(_ProducerFailed), fs.open(f"{bucket}/tx2/bad", "w") as f:
            f.write("half")
            raise _ProducerFailed("this one failed")
        with fs.open(f"{bucket}/tx2/good", "w") as f:
            f.write("whole")
    fs.invalidate_cache()
    assert fs.cat_file(f"{bucket}/tx2/good") == b"whole"
    assert not fs.exists(f"{bucket}/tx2/bad")


@pytest.fixture
def versioned(s3, bucket):
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    yield bucket
    versions = s3.list_object_versions(Bucket=bucket)
    for v in versions.get("Versions", []) + versions.get("DeleteMarkers", []):
        s3.delete_object(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"])
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})


@pytest.mark.seaweedfs_only("rclone's serve s3 keeps no object versions")
def test_version_ids_are_honoured_when_version_aware_and_refused_otherwise(
    options, s3, versioned, tmp_path
):
    bucket = versioned
    aware = fsspec.filesystem("s3cse", skip_instance_cache=True, version_aware=True, **options)
    aware.pipe_file(f"{bucket}/v/k", b"first version")
    first = aware.info(f"{bucket}/v/k")["VersionId"]
    aware.pipe_file(f"{bucket}/v/k", b"second, longer version")
    assert first and aware.info(f"{bucket}/v/k")["VersionId"] != first
    old = f"{bucket}/v/k?versionId={first}"
    with aware.open(old, "rb") as f:
        assert f.read() == b"first version"
    assert aware.cat_file(old) == b"first version"
    assert aware.info(old)["size"] == len(b"first version")
    assert aware.info(old)["VersionId"] == first
    assert aware.cat_file(f"{bucket}/v/k") == b"second, longer version"
    aware.get_file(old, str(tmp_path / "old"))
    assert (tmp_path / "old").read_bytes() == b"first version"
    aware.cp_file(old, f"{bucket}/v/restored")
    assert aware.cat_file(f"{bucket}/v/restored") == b"first version"
    with aware.open(f"{bucket}/v/k", "rb", version_id=first) as f:
        assert f.read() == b"first version"
    with pytest.raises(ValueError, match="cannot be written"):
        aware.open(old, "wb")

    # s3fs refuses a version id on a filesystem that is not version aware; so does s3cse,
    # also in the path (where s3fs drops it and reads the latest version instead)
    s3fs_plain = _s3fs(options)
    with pytest.raises(ValueError, match="version aware"):
        s3fs_plain.open(f"{bucket}/v/k", "rb", version_id=first)
    plain = fsspec.filesystem("s3cse", skip_instance_cache=True, **options)
    for call in (
        lambda: plain.open(old, "rb"),
        lambda: plain.cat_file(old),
        lambda: plain.info(old),
        lambda: plain.open(f"{bucket}/v/k", "rb", version_id=first),
    ):
        with pytest.raises(ValueError, match="version aware"):
            call()


def test_listings_report_plaintext_sizes_as_info_does(fs, options, s3, bucket):
    from tests.unit.legacy_objects import v1_aes_object

    fs.pipe_file(f"{bucket}/sizes/a.bin", b"x" * 100)
    instr = fsspec.filesystem("s3cse", skip_instance_cache=True, instruction_file=True, **options)
    instr.pipe_file(f"{bucket}/sizes/instr.bin", b"y" * 37)
    s3.put_object(Bucket=bucket, Key="sizes/plain.txt", Body=b"z" * 10)
    body, metadata = v1_aes_object(b"\x52" * 32, b"w" * 100)
    s3.put_object(Bucket=bucket, Key="sizes/v1.bin", Body=body, Metadata=metadata)
    body, metadata = v1_aes_object(b"\x52" * 32, b"u" * 100)
    del metadata["x-amz-unencrypted-content-length"]  # V1 CBC: the size is not known
    s3.put_object(Bucket=bucket, Key="sizes/v1-nolength.bin", Body=body, Metadata=metadata)
    s3.put_object(  # attacker-written: metadata that cannot be parsed
        Bucket=bucket, Key="sizes/bad.bin", Body=b"q" * 50, Metadata={"x-amz-key-v2": "!"}
    )
    expected = {"a.bin": 100, "instr.bin": 37, "plain.txt": 10, "v1.bin": 100}
    by_ls = {e["name"].rsplit("/", 1)[-1]: e for e in fs.ls(f"{bucket}/sizes", detail=True)}
    by_find = {k.rsplit("/", 1)[-1]: v for k, v in fs.find(f"{bucket}/sizes", detail=True).items()}
    for listing in (by_ls, by_find):
        listing = dict(listing)
        unknown = listing.pop("v1-nolength.bin")
        assert unknown["size"] == 112 and unknown["size_known"] is False  # stored (padded)
        assert {n: e["size"] for n, e in listing.items() if n != "bad.bin"} == expected
        assert listing["a.bin"]["encrypted"] and listing["a.bin"]["stored_size"] == 116
        assert "encrypted" not in listing["plain.txt"]
        assert listing["bad.bin"]["size"] == 50 and "size_error" in listing["bad.bin"]
    for name, size in expected.items():
        assert fs.info(f"{bucket}/sizes/{name}")["size"] == size
    assert fs.du(f"{bucket}/sizes", total=False)[f"{bucket}/sizes/a.bin"] == 100
    assert fs.du(f"{bucket}/sizes") == sum(expected.values()) + 112 + 50
    # a listing again (cached by ETag) needs no HEADs and says the same
    assert {e["name"]: e["size"] for e in fs.ls(f"{bucket}/sizes", detail=True)} == {
        e["name"]: e["size"] for e in by_ls.values()
    }
    reader = s3cse.EncryptionClient(s3, keyring=s3cse.AesKeyring(b"\x52" * 32))
    assert len(reader.get_object(Bucket=bucket, Key="sizes/a.bin")["Body"].read()) == 100
