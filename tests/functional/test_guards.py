"""The smaller holes: calls that would break the format, responses that do not fit,
transfers that forget a switch, state that outlives its use."""

from __future__ import annotations

import io
import threading

import pytest
from botocore.response import StreamingBody

import s3cse

from .helpers import BUCKET, KEY, keyring, plaintext_of
from .memory_s3 import MemoryS3

PLAINTEXT = plaintext_of(5000)


def test_appending_with_write_offset_bytes_is_refused(
    memory: MemoryS3, client: s3cse.EncryptionClient
) -> None:
    with pytest.raises(s3cse.UnsafeOperationError, match="WriteOffsetBytes"):
        client.put_object(Bucket=BUCKET, Key=KEY, Body=b"more", WriteOffsetBytes=10)
    assert not memory.calls


def test_rename_object_is_refused_because_the_instruction_file_stays_behind(
    client: s3cse.EncryptionClient,
) -> None:
    with pytest.raises(s3cse.UnsafeOperationError, match="instruction file"):
        client.rename_object  # noqa: B018


def test_downloads_follow_allow_unencrypted_reads_like_get_object(
    memory: MemoryS3, tmp_path
) -> None:
    memory.store(BUCKET, KEY, b"plain bytes")
    strict = s3cse.EncryptionClient(memory, keyring())
    lenient = s3cse.EncryptionClient(memory, keyring(), allow_unencrypted_reads=True)
    with pytest.raises(s3cse.NotEncryptedError, match="allow_unencrypted_reads=True"):
        strict.download_fileobj(BUCKET, KEY, io.BytesIO())
    with pytest.raises(s3cse.NotEncryptedError):
        strict.download_file(BUCKET, KEY, str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()
    sink = io.BytesIO()
    lenient.download_fileobj(BUCKET, KEY, sink)
    assert sink.getvalue() == b"plain bytes"
    lenient.download_file(BUCKET, KEY, str(tmp_path / "out"))
    assert (tmp_path / "out").read_bytes() == b"plain bytes"
    assert lenient.get_object(Bucket=BUCKET, Key=KEY)["Body"].read() == b"plain bytes"


def test_a_get_without_content_length_is_spooled_and_reports_the_true_length(
    memory: MemoryS3, client: s3cse.EncryptionClient, monkeypatch
) -> None:
    body = plaintext_of(3 * 1024 * 1024)
    client.put_object(Bucket=BUCKET, Key=KEY, Body=body)
    real_get = memory.get_object

    def no_length(**kwargs):
        response = real_get(**kwargs)
        data = response["Body"].read()
        response.pop("ContentLength")
        response["Body"] = StreamingBody(io.BytesIO(data), None)
        return response

    monkeypatch.setattr(memory, "get_object", no_length)
    small = s3cse.EncryptionClient(memory, keyring(), buffer_size=1024 * 1024)
    response = small.get_object(Bucket=BUCKET, Key=KEY)
    assert response["ContentLength"] == len(body)  # not 0
    assert response["Body"].read() == body


def test_a_ranged_read_answered_with_a_body_after_all_closes_it(
    memory: MemoryS3, monkeypatch
) -> None:
    client = s3cse.EncryptionClient(memory, keyring(), enable_legacy_unauthenticated_modes=True)
    client.put_object(Bucket=BUCKET, Key=KEY, Body=b"short")
    real_get = memory.get_object
    bodies = []

    def satisfiable_after_all(**kwargs):  # the store answers 2xx where 416 was expected
        kwargs.pop("Range", None)
        response = real_get(**kwargs)
        bodies.append(response["Body"])
        return response

    monkeypatch.setattr(memory, "get_object", satisfiable_after_all)
    with pytest.raises(s3cse.UnexpectedResponseError):
        client.get_object(Bucket=BUCKET, Key=KEY, Range="bytes=100-200")
    assert bodies and all(b._raw_stream.closed for b in bodies)


def test_open_multipart_uploads_are_bounded_and_a_forgotten_one_says_so(
    memory: MemoryS3, client: s3cse.EncryptionClient, monkeypatch
) -> None:
    from s3cse import client as client_module

    monkeypatch.setattr(client_module, "MAX_OPEN_UPLOADS", 3)
    ids = [client.create_multipart_upload(Bucket=BUCKET, Key=f"k{i}")["UploadId"] for i in range(5)]
    assert len(client._uploads) == 3
    with pytest.raises(s3cse.ConfigurationError, match="forgotten"):
        client.upload_part(Bucket=BUCKET, Key="k0", UploadId=ids[0], PartNumber=1, Body=b"x")
    client.upload_part(
        Bucket=BUCKET, Key="k4", UploadId=ids[4], PartNumber=1, Body=b"x", IsLastPart=True
    )


def test_a_failed_download_leaves_no_fetching_threads_behind(memory: MemoryS3) -> None:
    from boto3.s3.transfer import TransferConfig

    client = s3cse.EncryptionClient(memory, keyring(), enable_delayed_authentication=True)
    client.put_object(Bucket=BUCKET, Key=KEY, Body=plaintext_of(12 * 1024 * 1024))

    class FullDisk(io.RawIOBase):
        def writable(self) -> bool:
            return True

        def write(self, data) -> int:  # fails while ranges are still being fetched
            raise OSError(28, "No space left on device")

    config = TransferConfig(multipart_chunksize=1024 * 1024, max_concurrency=4)
    before = {t.ident for t in threading.enumerate()}
    with pytest.raises(OSError, match="No space") as failure:
        client.download_fileobj(BUCKET, KEY, FullDisk(), Config=config)
    held = failure.value  # the exception (and its traceback) is still held here
    alive = [t for t in threading.enumerate() if t.ident not in before and t.is_alive()]
    assert held and not [t for t in alive if not t.daemon], alive


def test_crypto_metadata_that_would_not_fit_goes_to_an_instruction_file(
    memory: MemoryS3, client: s3cse.EncryptionClient
) -> None:
    user = {"notes": "n" * 1300}  # fine for plain S3; with the crypto metadata, too much
    client.put_object(Bucket=BUCKET, Key=KEY, Body=PLAINTEXT, Metadata=user)
    stored = memory.objects[(BUCKET, KEY)]
    assert (BUCKET, f"{KEY}.instruction") in memory.objects
    assert stored.metadata["notes"] == user["notes"] and "x-amz-3" not in stored.metadata
    assert client.get_object(Bucket=BUCKET, Key=KEY)["Body"].read() == PLAINTEXT


def test_user_metadata_that_leaves_no_room_at_all_is_refused_with_both_sizes(
    memory: MemoryS3, client: s3cse.EncryptionClient
) -> None:
    with pytest.raises(s3cse.MetadataTooLargeError, match=r"user metadata is \d+ bytes") as raised:
        client.put_object(Bucket=BUCKET, Key=KEY, Body=PLAINTEXT, Metadata={"notes": "n" * 1500})
    assert str(raised.value).startswith(f"s3://{BUCKET}/{KEY}:") and "at most" in str(raised.value)
    assert not memory.calls
