"""Big objects: multipart API, parallel upload_file / download_file, aborts, no partial files."""

from __future__ import annotations

import hashlib
import io
import os

import pytest
from boto3.s3.transfer import TransferConfig

import s3cse
from tests.stores import lower_keys, open_uploads

MiB = 1024 * 1024
SMALL_PARTS = TransferConfig(
    multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB, max_concurrency=4
)


def write_file(path, size, seed=0):
    block = hashlib.sha256(str(seed).encode()).digest() * 2048  # 64 KiB pattern
    with open(path, "wb") as f:
        remaining = size
        while remaining:
            piece = block[: min(len(block), remaining)]
            f.write(piece)
            remaining -= len(piece)


def digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(MiB), b""):
            h.update(chunk)
    return h.hexdigest()


@pytest.mark.parametrize(
    "size",
    [0, 1, 5 * MiB, 5 * MiB + 1, 10 * MiB, 17 * MiB + 5],
    ids=["0B", "1B", "one-part", "part+1", "two-parts", "17MiB+5"],
)
def test_upload_download_file_sizes(s3, bucket, aes_keyring, tmp_path, size, request):
    client = s3cse.EncryptionClient(s3, keyring=aes_keyring)
    src, dst = tmp_path / "src", tmp_path / "dst"
    write_file(src, size, seed=size)
    progress = []
    client.upload_file(str(src), bucket, "big", Config=SMALL_PARTS, Callback=progress.append)
    assert sum(progress) == size
    head = s3.head_object(Bucket=bucket, Key="big")
    assert head["ContentLength"] == size + 16
    if size >= 5 * MiB and request.node.callspec.params["servers"] == "seaweedfs":
        assert "-" in head["ETag"]  # multipart (rclone gives those a plain MD5 ETag)
    seen = []
    client.download_file(bucket, "big", str(dst), Config=SMALL_PARTS, Callback=seen.append)
    assert sum(seen) == size
    assert digest(dst) == digest(src)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dst", "src"]


def test_a_few_hundred_mib_with_small_parts(s3, bucket, kms_keyring, tmp_path):
    client = s3cse.EncryptionClient(s3, keyring=kms_keyring)
    src, dst = tmp_path / "src", tmp_path / "dst"
    size = 200 * MiB + 3
    write_file(src, size, seed=7)
    client.upload_file(str(src), bucket, "huge", Config=SMALL_PARTS)
    client.download_file(bucket, "huge", str(dst), Config=SMALL_PARTS)
    assert digest(dst) == digest(src)
    out = io.BytesIO()
    client.download_fileobj(bucket, "huge", out, Config=SMALL_PARTS)
    assert hashlib.sha256(out.getvalue()).hexdigest() == digest(src)


def test_multipart_object_reads_with_get_object_and_instruction_file(
    s3, bucket, rsa_keyring, tmp_path
):
    client = s3cse.EncryptionClient(s3, keyring=rsa_keyring)
    src = tmp_path / "src"
    write_file(src, 11 * MiB, seed=3)
    client.upload_file(
        str(src),
        bucket,
        "mp",
        ExtraArgs={"InstructionFilePut": True, "Metadata": {"a": "b"}},
        Config=SMALL_PARTS,
    )
    assert lower_keys(s3.head_object(Bucket=bucket, Key="mp")["Metadata"])["a"] == "b"
    body = client.get_object(Bucket=bucket, Key="mp")["Body"].read()
    assert hashlib.sha256(body).hexdigest() == digest(src)


def test_failure_mid_upload_aborts_the_multipart_upload(s3, bucket, aes_keyring):
    class Failing(io.RawIOBase):
        def __init__(self):
            self.sent = 0

        def readable(self):
            return True

        def readinto(self, b):
            if self.sent > 12 * MiB:
                raise OSError("disk went away")
            n = len(b)
            b[:n] = bytes(n)
            self.sent += n
            return n

    client = s3cse.EncryptionClient(s3, keyring=aes_keyring)
    with pytest.raises(OSError, match="disk went away"):
        client.upload_fileobj(Failing(), bucket, "broken", Config=SMALL_PARTS)
    assert open_uploads(s3, bucket) == []
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0


def test_unknown_length_stream_goes_multipart(s3, bucket, aes_keyring):
    class Pipe(io.RawIOBase):
        def __init__(self, data):
            self._data = io.BytesIO(data)

        def readable(self):
            return True

        def readinto(self, b):
            chunk = self._data.read(min(len(b), 65536))
            b[: len(chunk)] = chunk
            return len(chunk)

    data = os.urandom(12 * MiB + 9)
    client = s3cse.EncryptionClient(s3, keyring=aes_keyring)
    client.upload_fileobj(Pipe(data), bucket, "pipe", Config=SMALL_PARTS)
    assert client.get_object(Bucket=bucket, Key="pipe")["Body"].read() == data


def test_tampered_multipart_download_leaves_no_file(s3, bucket, aes_keyring, tmp_path):
    client = s3cse.EncryptionClient(s3, keyring=aes_keyring)
    src = tmp_path / "src"
    write_file(src, 11 * MiB, seed=9)
    client.upload_file(str(src), bucket, "t", Config=SMALL_PARTS)
    stored = s3.get_object(Bucket=bucket, Key="t")
    ciphertext = bytearray(stored["Body"].read())
    ciphertext[6 * MiB] ^= 0x40
    s3.put_object(Bucket=bucket, Key="t", Body=bytes(ciphertext), Metadata=stored["Metadata"])
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(s3cse.IntegrityError, match=f"s3://{bucket}/t"):
        client.download_file(bucket, "t", str(out_dir / "t"), Config=SMALL_PARTS)
    assert list(out_dir.iterdir()) == []
    sink = io.BytesIO()
    with pytest.raises(s3cse.IntegrityError):
        client.download_fileobj(bucket, "t", sink, Config=SMALL_PARTS)
    assert sink.getvalue() == b""  # nothing unauthenticated reached the caller's file object


def test_multipart_api(s3, bucket, kms_keyring):
    client = s3cse.EncryptionClient(s3, keyring=kms_keyring)
    upload = client.create_multipart_upload(
        Bucket=bucket, Key="manual", EncryptionContext={"t": "1"}, Metadata={"u": "v"}
    )
    uid = upload["UploadId"]
    part1, part2 = os.urandom(5 * MiB), os.urandom(1234)
    with pytest.raises(s3cse.MultipartSequenceError, match="expected part 1"):
        client.upload_part(Bucket=bucket, Key="manual", UploadId=uid, PartNumber=2, Body=part2)
    r1 = client.upload_part(Bucket=bucket, Key="manual", UploadId=uid, PartNumber=1, Body=part1)
    again = client.upload_part(Bucket=bucket, Key="manual", UploadId=uid, PartNumber=1, Body=part1)
    assert again["ETag"] == r1["ETag"]  # a resent part carries the identical ciphertext
    with pytest.raises(s3cse.MultipartSequenceError, match="expected part 2, got part 1"):
        client.upload_part(
            Bucket=bucket, Key="manual", UploadId=uid, PartNumber=1, Body=part1[:-16]
        )
    with pytest.raises(s3cse.MultipartSequenceError, match="never uploaded"):
        client.complete_multipart_upload(
            Bucket=bucket,
            Key="manual",
            UploadId=uid,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": r1["ETag"]}]},
        )
    r2 = client.upload_part(
        Bucket=bucket, Key="manual", UploadId=uid, PartNumber=2, Body=part2, IsLastPart=True
    )
    client.complete_multipart_upload(
        Bucket=bucket,
        Key="manual",
        UploadId=uid,
        MultipartUpload={
            "Parts": [{"PartNumber": 1, "ETag": r1["ETag"]}, {"PartNumber": 2, "ETag": r2["ETag"]}]
        },
    )
    got = client.get_object(Bucket=bucket, Key="manual", EncryptionContext={"t": "1"})
    assert got["Body"].read() == part1 + part2
    other = client.create_multipart_upload(Bucket=bucket, Key="aborted")
    client.abort_multipart_upload(Bucket=bucket, Key="aborted", UploadId=other["UploadId"])
    assert open_uploads(s3, bucket) == []
    with pytest.raises(s3cse.MultipartSequenceError, match="multiple of 16"):
        up = client.create_multipart_upload(Bucket=bucket, Key="odd")
        try:
            client.upload_part(
                Bucket=bucket, Key="odd", UploadId=up["UploadId"], PartNumber=1, Body=b"x" * 17
            )
        finally:
            client.abort_multipart_upload(Bucket=bucket, Key="odd", UploadId=up["UploadId"])


def test_objects_over_the_gcm_limit_are_refused_before_upload(s3, bucket, aes_keyring, tmp_path):
    sparse = tmp_path / "huge.bin"
    with open(sparse, "wb") as f:
        f.truncate(2**36)  # a sparse file: 64 GiB that take no disk space
    client = s3cse.EncryptionClient(s3, keyring=aes_keyring)
    with pytest.raises(s3cse.PlaintextTooLargeError, match="2\\^36 - 32"):
        client.upload_file(str(sparse), bucket, "huge")
    with open(sparse, "rb") as f, pytest.raises(s3cse.PlaintextTooLargeError):
        client.put_object(Bucket=bucket, Key="huge", Body=f)
    assert open_uploads(s3, bucket) == []
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0
