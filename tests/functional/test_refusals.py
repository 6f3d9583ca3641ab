"""Failure orderings: what is refused before any request, and what a failed read leaves.

Encryption-side refusals must happen before anything reaches S3; an object that fails
authentication must release no plaintext, name itself, and close its response body.
"""

from __future__ import annotations

import io
from typing import Any

import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError
from botocore.stub import Stubber

import s3cse

from .helpers import BUCKET, KEY, MiB, get_response, keyring, plaintext_of, streaming
from .memory_s3 import MemoryS3

PLAINTEXT = plaintext_of(3000)
LOCATION = f"s3://{BUCKET}/{KEY}: "


@pytest.mark.parametrize(
    "argument",
    [
        "ContentMD5",
        "ChecksumCRC32",
        "ChecksumCRC32C",
        "ChecksumCRC64NVME",
        "ChecksumSHA1",
        "ChecksumSHA256",
    ],
)
def test_plaintext_checksum_on_put_is_refused_before_any_request(
    memory: MemoryS3, client: s3cse.EncryptionClient, argument: str
) -> None:
    with pytest.raises(s3cse.ConfigurationError) as raised:
        client.put_object(Bucket=BUCKET, Key=KEY, Body=PLAINTEXT, **{argument: "AAAAAA=="})

    assert str(raised.value).startswith(LOCATION)
    assert argument in str(raised.value)
    assert memory.calls == []


def test_plaintext_checksum_on_upload_fileobj_is_refused_before_create(
    memory: MemoryS3, client: s3cse.EncryptionClient
) -> None:
    config = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)

    with pytest.raises(s3cse.ConfigurationError, match="ChecksumSHA256"):
        client.upload_fileobj(
            io.BytesIO(plaintext_of(6 * MiB)),
            BUCKET,
            KEY,
            ExtraArgs={"ChecksumSHA256": "AAAA"},
            Config=config,
        )

    assert memory.calls == []


@pytest.mark.parametrize(
    "name",
    ["x-amz-key-v2", "x-amz-3", "X-Amz-Iv", "x-amz-crypto-instr-file", "x-amz-meta-x-amz-cek-alg"],
)
def test_reserved_metadata_name_is_refused_before_any_request(
    memory: MemoryS3, client: s3cse.EncryptionClient, name: str
) -> None:
    with pytest.raises(s3cse.ConfigurationError, match="reserved") as raised:
        client.put_object(Bucket=BUCKET, Key=KEY, Body=PLAINTEXT, Metadata={name: "x"})

    assert str(raised.value).startswith(LOCATION)
    assert memory.calls == []


@pytest.mark.parametrize("body", [12345, ["a"], {"a": "b"}, object()], ids=type)
def test_body_that_is_not_bytes_str_or_a_file_is_refused_before_any_request(
    memory: MemoryS3, client: s3cse.EncryptionClient, body: Any
) -> None:
    with pytest.raises(s3cse.ConfigurationError, match="Body must be") as raised:
        client.put_object(Bucket=BUCKET, Key=KEY, Body=body)

    assert str(raised.value).startswith(LOCATION)
    assert memory.calls == []


class _HugeFile:
    """A seekable file that claims 2^36 bytes and must never be read."""

    def __init__(self) -> None:
        self._position = 0

    def read(self, size: int = -1) -> bytes:
        raise AssertionError("the body was read")

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._position = offset if whence == io.SEEK_SET else 2**36 + offset
        return self._position


@pytest.mark.parametrize("method", ["put_object", "upload_fileobj"])
def test_body_over_the_gcm_limit_is_refused_before_any_request(
    memory: MemoryS3, client: s3cse.EncryptionClient, method: str
) -> None:
    with pytest.raises(s3cse.PlaintextTooLargeError) as raised:
        if method == "put_object":
            client.put_object(Bucket=BUCKET, Key=KEY, Body=_HugeFile())
        else:
            client.upload_fileobj(_HugeFile(), BUCKET, KEY)

    assert str(raised.value).startswith(LOCATION)
    assert memory.calls == []


# ---------------------------------------------------------------- the low-level multipart API


@pytest.fixture
def upload_id(client: s3cse.EncryptionClient) -> str:
    return str(client.create_multipart_upload(Bucket=BUCKET, Key=KEY)["UploadId"])


def _part(client: s3cse.EncryptionClient, upload_id: str, **kwargs: Any) -> dict[str, Any]:
    return client.upload_part(Bucket=BUCKET, Key=KEY, UploadId=upload_id, **kwargs)


def test_part_with_a_plaintext_checksum_is_refused_before_sending(
    memory: MemoryS3, client: s3cse.EncryptionClient, upload_id: str
) -> None:
    with pytest.raises(s3cse.ConfigurationError, match="ContentMD5"):
        _part(client, upload_id, PartNumber=1, Body=b"x" * 32, ContentMD5="AAAA")

    assert memory.calls_to("UploadPart") == []


def test_part_out_of_order_is_refused_before_sending(
    memory: MemoryS3, client: s3cse.EncryptionClient, upload_id: str
) -> None:
    with pytest.raises(s3cse.MultipartSequenceError) as raised:
        _part(client, upload_id, PartNumber=2, Body=b"x" * 32)

    assert str(raised.value).startswith(LOCATION)
    assert memory.calls_to("UploadPart") == []


def test_part_not_a_multiple_of_16_bytes_is_refused_unless_last(
    memory: MemoryS3, client: s3cse.EncryptionClient, upload_id: str
) -> None:
    with pytest.raises(s3cse.MultipartSequenceError, match="multiple of 16"):
        _part(client, upload_id, PartNumber=1, Body=b"x" * 33)
    assert memory.calls_to("UploadPart") == []

    _part(client, upload_id, PartNumber=1, Body=b"x" * 33, IsLastPart=True)
    assert len(memory.calls_to("UploadPart")) == 1


def test_complete_without_the_last_part_is_refused_and_sends_nothing(
    memory: MemoryS3, client: s3cse.EncryptionClient, upload_id: str
) -> None:
    etag = _part(client, upload_id, PartNumber=1, Body=b"x" * 32)["ETag"]

    with pytest.raises(s3cse.MultipartSequenceError, match="IsLastPart"):
        client.complete_multipart_upload(
            Bucket=BUCKET,
            Key=KEY,
            UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]},
        )

    assert memory.calls_to("CompleteMultipartUpload") == []


def test_part_of_an_upload_this_client_did_not_start_is_refused(
    memory: MemoryS3, client: s3cse.EncryptionClient
) -> None:
    with pytest.raises(s3cse.ConfigurationError, match="not open in this EncryptionClient"):
        _part(client, "someone-elses", PartNumber=1, Body=b"x", IsLastPart=True)

    assert memory.calls == []


# ---------------------------------------------------------------- failed reads


def _tamper(memory: MemoryS3, offset: int) -> None:
    stored = memory.objects[(BUCKET, KEY)]
    data = bytearray(stored.data)
    data[offset] ^= 0x01
    stored.data = bytes(data)


@pytest.mark.parametrize("offset", [0, 1500, -1], ids=["first-byte", "middle", "tag"])
@pytest.mark.parametrize("options", [{}, {"buffer_size": 0}], ids=["in-memory", "spooled"])
def test_get_of_a_tampered_object_raises_integrity_error_naming_it(
    memory: MemoryS3, offset: int, options: dict[str, Any]
) -> None:
    client = s3cse.EncryptionClient(memory, keyring(), **options)
    client.put_object(Bucket=BUCKET, Key=KEY, Body=PLAINTEXT)
    _tamper(memory, offset)

    with pytest.raises(s3cse.IntegrityError) as raised:
        client.get_object(Bucket=BUCKET, Key=KEY)

    assert str(raised.value).startswith(LOCATION)
    assert PLAINTEXT[:16].hex() not in str(raised.value)


def test_delayed_authentication_raises_integrity_error_naming_the_object_at_the_end(
    memory: MemoryS3,
) -> None:
    client = s3cse.EncryptionClient(memory, keyring(), enable_delayed_authentication=True)
    client.put_object(Bucket=BUCKET, Key=KEY, Body=PLAINTEXT)
    _tamper(memory, -1)
    body = client.get_object(Bucket=BUCKET, Key=KEY)["Body"]

    with pytest.raises(s3cse.IntegrityError) as raised:
        body.read()

    assert str(raised.value).startswith(LOCATION)


@pytest.mark.parametrize("options", [{}, {"buffer_size": 0}], ids=["in-memory", "spooled"])
def test_tampered_object_response_body_is_closed_after_the_failure(
    boto_s3: Any, stubber: Stubber, options: dict[str, Any]
) -> None:
    obj = s3cse.encrypt(PLAINTEXT, keyring())
    body, raw = streaming(obj.ciphertext[:-1] + bytes([obj.ciphertext[-1] ^ 1]))
    stubber.add_response(
        "get_object", {**get_response(obj), "Body": body}, {"Bucket": BUCKET, "Key": KEY}
    )
    client = s3cse.EncryptionClient(boto_s3, keyring(), **options)

    with pytest.raises(s3cse.IntegrityError):
        client.get_object(Bucket=BUCKET, Key=KEY)

    assert raw.closed


def test_whole_object_get_answered_with_a_content_range_is_refused_and_closed(
    stubbed: s3cse.EncryptionClient, stubber: Stubber
) -> None:
    obj = s3cse.encrypt(PLAINTEXT, keyring())
    body, raw = streaming(obj.ciphertext[:100])
    response = {**get_response(obj), "Body": body, "ContentLength": 100}
    response["ContentRange"] = f"bytes 0-99/{len(obj.ciphertext)}"
    stubber.add_response("get_object", response, {"Bucket": BUCKET, "Key": KEY})

    with pytest.raises(s3cse.UnexpectedResponseError, match="Content-Range") as raised:
        stubbed.get_object(Bucket=BUCKET, Key=KEY)

    assert str(raised.value).startswith(LOCATION)
    assert raw.closed


def test_download_fileobj_of_a_tampered_object_writes_nothing(
    memory: MemoryS3, client: s3cse.EncryptionClient
) -> None:
    client.put_object(Bucket=BUCKET, Key=KEY, Body=PLAINTEXT)
    _tamper(memory, 10)
    sink = io.BytesIO()

    with pytest.raises(s3cse.IntegrityError) as raised:
        client.download_fileobj(BUCKET, KEY, sink)

    assert str(raised.value).startswith(LOCATION)
    assert sink.getvalue() == b""


def test_download_file_of_a_tampered_object_leaves_no_file(
    memory: MemoryS3, client: s3cse.EncryptionClient, tmp_path: Any
) -> None:
    client.put_object(Bucket=BUCKET, Key=KEY, Body=PLAINTEXT)
    _tamper(memory, -1)

    with pytest.raises(s3cse.IntegrityError):
        client.download_file(BUCKET, KEY, str(tmp_path / "out.bin"))

    assert list(tmp_path.iterdir()) == []


def test_get_of_a_plaintext_object_raises_not_encrypted_and_closes_the_body(
    stubbed: s3cse.EncryptionClient, stubber: Stubber
) -> None:
    body, raw = streaming(b"plain words")
    stubber.add_response(
        "get_object",
        {"Body": body, "ContentLength": 11, "Metadata": {"owner": "ana"}},
        {"Bucket": BUCKET, "Key": KEY},
    )
    stubber.add_client_error(
        "get_object",
        service_error_code="NoSuchKey",
        http_status_code=404,
        expected_params={"Bucket": BUCKET, "Key": f"{KEY}.instruction"},
    )

    with pytest.raises(s3cse.NotEncryptedError, match="allow_unencrypted_reads") as raised:
        stubbed.get_object(Bucket=BUCKET, Key=KEY)

    assert str(raised.value).startswith(LOCATION)
    assert raw.closed


def test_get_of_a_plaintext_object_with_allow_unencrypted_reads_returns_it(
    memory: MemoryS3,
) -> None:
    memory.store(BUCKET, KEY, b"plain words", {"owner": "ana"})
    client = s3cse.EncryptionClient(memory, keyring(), allow_unencrypted_reads=True)

    response = client.get_object(Bucket=BUCKET, Key=KEY)

    assert response["Body"].read() == b"plain words"
    assert response["ContentLength"] == 11


def test_get_of_a_missing_object_reraises_botocores_error(
    memory: MemoryS3, client: s3cse.EncryptionClient
) -> None:
    with pytest.raises(ClientError) as raised:
        client.get_object(Bucket=BUCKET, Key=KEY)

    assert raised.value.response["Error"]["Code"] == "NoSuchKey"
    assert memory.operations() == ["GetObject"]


def test_metadata_pointing_to_a_missing_instruction_file_is_malformed(
    memory: MemoryS3, client: s3cse.EncryptionClient
) -> None:
    client.put_object(Bucket=BUCKET, Key=KEY, Body=PLAINTEXT, InstructionFilePut=True)
    del memory.objects[(BUCKET, f"{KEY}.instruction")]

    with pytest.raises(s3cse.MalformedMetadataError, match="instruction") as raised:
        client.get_object(Bucket=BUCKET, Key=KEY)

    assert str(raised.value).startswith(LOCATION)


def test_get_with_another_key_fails_without_plaintext(memory: MemoryS3) -> None:
    s3cse.EncryptionClient(memory, keyring()).put_object(Bucket=BUCKET, Key=KEY, Body=PLAINTEXT)
    other = s3cse.EncryptionClient(memory, s3cse.AesKeyring(b"\xa5" * 32, {"kid": "a"}))

    with pytest.raises(s3cse.S3CSEError) as raised:
        other.get_object(Bucket=BUCKET, Key=KEY)

    assert str(raised.value).startswith(LOCATION)


# ---------------------------------------------------------------- unsafe operations


@pytest.mark.parametrize(
    "method", ["upload_part_copy", "copy", "select_object_content", "generate_presigned_post"]
)
def test_unsafe_operation_is_refused_naming_the_alternative(
    stubbed: s3cse.EncryptionClient, method: str
) -> None:
    with pytest.raises(s3cse.UnsafeOperationError, match=method):
        getattr(stubbed, method)


@pytest.mark.parametrize("method", ["put_object", "upload_part", "create_multipart_upload"])
def test_presigned_upload_urls_are_refused(stubbed: s3cse.EncryptionClient, method: str) -> None:
    with pytest.raises(s3cse.UnsafeOperationError, match=method):
        stubbed.generate_presigned_url(method, Params={"Bucket": BUCKET, "Key": KEY})


def test_presigned_download_url_and_other_calls_pass_through(
    stubbed: s3cse.EncryptionClient, stubber: Stubber
) -> None:
    stubber.add_response("list_buckets", {"Buckets": [{"Name": "b1"}]}, {})
    url = stubbed.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": KEY})

    assert url.startswith(f"https://{BUCKET}.s3.amazonaws.com/dir/object.bin?")
    assert stubbed.list_buckets()["Buckets"] == [{"Name": "b1"}]


def test_encryption_client_cannot_wrap_another(stubbed: s3cse.EncryptionClient) -> None:
    with pytest.raises(s3cse.ConfigurationError, match="twice"):
        s3cse.EncryptionClient(stubbed, keyring())  # type: ignore[arg-type]
