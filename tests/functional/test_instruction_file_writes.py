"""A failed instruction-file write never loses the data key: it is a specific error that
names the object and writes the file again; multipart state lives until both writes."""

from __future__ import annotations

import io

import pytest
from boto3.s3.transfer import TransferConfig

import s3cse

from .helpers import BUCKET, KEY, MiB, keyring, plaintext_of
from .memory_s3 import MemoryS3

PLAINTEXT = plaintext_of(3000)


def _deny_instruction_files(memory: MemoryS3, times: int = 1) -> None:
    memory.fail(
        "PutObject",
        code="AccessDenied",
        status=403,
        when=lambda p: p["Key"].endswith(".instruction"),
        times=times,
    )


def _read(memory: MemoryS3, **options: object) -> bytes:
    client = s3cse.EncryptionClient(memory, keyring(), **options)  # type: ignore[arg-type]
    return bytes(client.get_object(Bucket=BUCKET, Key=KEY)["Body"].read())


def test_a_failed_instruction_file_put_names_the_object_and_writes_it_again(
    memory: MemoryS3, client: s3cse.EncryptionClient
) -> None:
    _deny_instruction_files(memory)
    with pytest.raises(s3cse.InstructionFileWriteError) as failure:
        client.put_object(Bucket=BUCKET, Key=KEY, Body=PLAINTEXT, InstructionFilePut=True)
    message = str(failure.value)
    assert message.startswith(f"s3://{BUCKET}/{KEY}:") and "unreadable until" in message
    assert "AccessDenied" in message and failure.value.cause is not None
    with pytest.raises(s3cse.S3CSEError):
        _read(memory)
    failure.value.write_instruction_file()
    assert _read(memory) == PLAINTEXT


def test_repeating_a_put_whose_instruction_file_failed_works(
    memory: MemoryS3, client: s3cse.EncryptionClient
) -> None:
    _deny_instruction_files(memory)
    with pytest.raises(s3cse.InstructionFileWriteError):
        client.put_object(Bucket=BUCKET, Key=KEY, Body=PLAINTEXT, InstructionFilePut=True)
    client.put_object(Bucket=BUCKET, Key=KEY, Body=PLAINTEXT, InstructionFilePut=True)
    assert _read(memory) == PLAINTEXT


def test_complete_multipart_upload_can_be_retried_after_its_instruction_file_failed(
    memory: MemoryS3, client: s3cse.EncryptionClient
) -> None:
    upload = client.create_multipart_upload(Bucket=BUCKET, Key=KEY, InstructionFilePut=True)
    args = {"Bucket": BUCKET, "Key": KEY, "UploadId": upload["UploadId"]}
    part = client.upload_part(**args, PartNumber=1, Body=PLAINTEXT, IsLastPart=True)
    done = {"MultipartUpload": {"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]}}
    _deny_instruction_files(memory)
    with pytest.raises(s3cse.InstructionFileWriteError, match=f"s3://{BUCKET}/{KEY}"):
        client.complete_multipart_upload(**args, **done)
    client.complete_multipart_upload(**args, **done)  # the same call again
    assert len(memory.calls_to("CompleteMultipartUpload")) == 1  # S3 assembled it once
    assert _read(memory) == PLAINTEXT


def test_a_transfer_whose_instruction_file_failed_does_not_abort_the_stored_object(
    memory: MemoryS3, client: s3cse.EncryptionClient
) -> None:
    body = plaintext_of(11 * MiB)
    config = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    _deny_instruction_files(memory)
    with pytest.raises(s3cse.InstructionFileWriteError) as failure:
        client.upload_fileobj(
            io.BytesIO(body), BUCKET, KEY, ExtraArgs={"InstructionFilePut": True}, Config=config
        )
    assert not memory.calls_to("AbortMultipartUpload")
    failure.value.write_instruction_file()
    assert _read(memory) == body


def test_a_v3_object_whose_instruction_file_is_missing_is_never_read_as_plaintext(
    memory: MemoryS3, client: s3cse.EncryptionClient
) -> None:
    _deny_instruction_files(memory)
    with pytest.raises(s3cse.InstructionFileWriteError):
        client.put_object(Bucket=BUCKET, Key=KEY, Body=PLAINTEXT, InstructionFilePut=True)
    with pytest.raises(s3cse.MalformedMetadataError, match="instruction file"):
        _read(memory, allow_unencrypted_reads=True)  # x-amz-c/d/i say it is encrypted


def test_writing_the_instruction_file_later_never_overwrites_a_newer_objects_key(
    memory: MemoryS3, client: s3cse.EncryptionClient
) -> None:
    _deny_instruction_files(memory)
    with pytest.raises(s3cse.InstructionFileWriteError) as failure:
        client.put_object(Bucket=BUCKET, Key=KEY, Body=PLAINTEXT, InstructionFilePut=True)
    newer = b"another writer's newer object"
    client.put_object(Bucket=BUCKET, Key=KEY, Body=newer, InstructionFilePut=True)
    with pytest.raises(s3cse.WriteConflictError, match="replaced since it was stored"):
        failure.value.write_instruction_file()
    assert _read(memory) == newer
