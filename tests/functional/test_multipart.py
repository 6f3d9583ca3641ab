"""Multipart uploads and ranged downloads: which caller arguments reach which request.

The Stubber tests use ``max_concurrency=1`` so the requests come in a fixed order;
the in-memory tests use the default concurrency.
"""

from __future__ import annotations

import io
from typing import Any

import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError
from botocore.stub import Stubber

import s3cse

from .helpers import (
    BUCKET,
    ETAG,
    KEY,
    PAYER_AND_OWNER,
    SSE_C,
    Captured,
    MiB,
    head_response,
    instruction_response,
    keyring,
    plaintext_of,
    streaming,
)
from .memory_s3 import MemoryS3

BIG = plaintext_of(11 * MiB)
PARTS = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB, max_concurrency=1)
PARALLEL = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)


def test_multipart_upload_forwards_payer_owner_sse_c_and_checksum_algorithm(
    stubbed: s3cse.EncryptionClient, stubber: Stubber
) -> None:
    per_request = {**SSE_C, **PAYER_AND_OWNER}
    create_only = {"ContentType": "text/plain", "StorageClass": "STANDARD_IA", "Tagging": "a=b"}
    metadata = Captured()
    stubber.add_response(
        "create_multipart_upload",
        {"Bucket": BUCKET, "Key": KEY, "UploadId": "u-1"},
        {
            "Bucket": BUCKET,
            "Key": KEY,
            "Metadata": metadata,
            "ChecksumAlgorithm": "SHA256",
            **per_request,
            **create_only,
        },
    )
    bodies = [Captured() for _ in range(3)]
    for number, body in enumerate(bodies, 1):
        stubber.add_response(
            "upload_part",
            {"ETag": f'"e{number}"', "ChecksumSHA256": f"c{number}"},
            {
                "Bucket": BUCKET,
                "Key": KEY,
                "UploadId": "u-1",
                "PartNumber": number,
                "Body": body,
                "ChecksumAlgorithm": "SHA256",
                **per_request,
            },
        )
    parts = [{"PartNumber": n, "ETag": f'"e{n}"', "ChecksumSHA256": f"c{n}"} for n in (1, 2, 3)]
    stubber.add_response(
        "complete_multipart_upload",
        {"Bucket": BUCKET, "Key": KEY, "ETag": '"x-3"'},
        {
            "Bucket": BUCKET,
            "Key": KEY,
            "UploadId": "u-1",
            "MultipartUpload": {"Parts": parts},
            **per_request,
        },
    )

    stubbed.upload_fileobj(
        io.BytesIO(BIG),
        BUCKET,
        KEY,
        ExtraArgs={"ChecksumAlgorithm": "SHA256", **per_request, **create_only},
        Config=PARTS,
    )

    assert [len(b.value) for b in bodies] == [5 * MiB, 5 * MiB, 1 * MiB + 16]
    ciphertext = b"".join(bytes(b.value) for b in bodies)
    assert s3cse.decrypt(ciphertext, metadata.value, keyring()) == BIG


def test_multipart_upload_with_instruction_file_writes_it_after_complete_with_payer_and_owner(
    memory: MemoryS3, client: s3cse.EncryptionClient
) -> None:
    client.upload_fileobj(
        io.BytesIO(BIG),
        BUCKET,
        KEY,
        ExtraArgs={"InstructionFilePut": True, **PAYER_AND_OWNER},
        Config=PARALLEL,
    )

    assert memory.operations()[-2:] == ["CompleteMultipartUpload", "PutObject"]
    (instruction_put,) = memory.calls_to("PutObject")
    assert instruction_put["Key"] == f"{KEY}.instruction"
    assert {k: instruction_put.get(k) for k in PAYER_AND_OWNER} == PAYER_AND_OWNER
    assert client.get_object(Bucket=BUCKET, Key=KEY)["Body"].read() == BIG


def test_multipart_upload_round_trips_and_reports_each_plaintext_byte_once(
    memory: MemoryS3, client: s3cse.EncryptionClient
) -> None:
    seen: list[int] = []

    client.upload_fileobj(io.BytesIO(BIG), BUCKET, KEY, Callback=seen.append, Config=PARALLEL)

    assert sum(seen) == len(BIG)
    assert sorted(p["PartNumber"] for p in memory.calls_to("UploadPart")) == [1, 2, 3]
    assert memory.uploads == {}
    assert client.get_object(Bucket=BUCKET, Key=KEY)["Body"].read() == BIG


def test_upload_file_and_download_file_round_trip(
    memory: MemoryS3, client: s3cse.EncryptionClient, tmp_path: Any
) -> None:
    source, target = tmp_path / "source.bin", tmp_path / "target.bin"
    source.write_bytes(BIG)

    client.upload_file(str(source), BUCKET, KEY, Config=PARALLEL)
    client.download_file(BUCKET, KEY, str(target), Config=PARALLEL)

    assert target.read_bytes() == BIG
    assert sorted(p.name for p in tmp_path.iterdir()) == ["source.bin", "target.bin"]


def test_download_fileobj_forwards_version_sse_c_payer_owner_and_pins_ranges_to_the_etag(
    stubbed: s3cse.EncryptionClient, stubber: Stubber
) -> None:
    plaintext = plaintext_of(2 * MiB + 1000)
    obj = s3cse.encrypt(plaintext, keyring())
    args = {"VersionId": "v-9", **SSE_C, **PAYER_AND_OWNER}
    size = len(obj.ciphertext)
    for first in range(0, size, MiB):
        last = min(first + MiB, size) - 1
        body, _ = streaming(obj.ciphertext[first : last + 1])
        # The first range stands in for a HEAD (its headers say what HEAD would); the
        # others are pinned to the ETag it gave.
        response = head_response(obj) if first == 0 else {"ETag": ETAG}
        stubber.add_response(
            "get_object",
            {
                **response,
                "Body": body,
                "ContentLength": last - first + 1,
                "ContentRange": f"bytes {first}-{last}/{size}",
            },
            {
                "Bucket": BUCKET,
                "Key": KEY,
                "Range": f"bytes={first}-{last}",
                **({"IfMatch": ETAG} if first else {}),
                **args,
            },
        )
    sink = io.BytesIO()

    stubbed.download_fileobj(
        BUCKET,
        KEY,
        sink,
        ExtraArgs=args,
        Config=TransferConfig(multipart_chunksize=MiB, max_concurrency=1),
    )

    assert sink.getvalue() == plaintext


def test_download_of_an_instruction_file_object_reads_it_with_payer_and_owner_only(
    stubbed: s3cse.EncryptionClient, stubber: Stubber
) -> None:
    plaintext = plaintext_of(5000)
    obj = s3cse.encrypt(plaintext, keyring(), instruction_file=True)
    args = {"VersionId": "v-9", **SSE_C, **PAYER_AND_OWNER}
    size = len(obj.ciphertext)
    body, _ = streaming(obj.ciphertext)
    stubber.add_response(  # the first (here: only) range, in place of a HEAD
        "get_object",
        {
            **head_response(obj),
            "Body": body,
            "ContentLength": size,
            "ContentRange": f"bytes 0-{size - 1}/{size}",
        },
        {"Bucket": BUCKET, "Key": KEY, "Range": f"bytes=0-{8 * MiB - 1}", **args},
    )
    stubber.add_response(
        "get_object",
        instruction_response(obj),
        {"Bucket": BUCKET, "Key": f"{KEY}.instruction", **PAYER_AND_OWNER},
    )
    sink = io.BytesIO()

    stubbed.download_fileobj(BUCKET, KEY, sink, ExtraArgs=args)

    assert sink.getvalue() == plaintext


def test_parallel_download_of_an_sse_c_object_in_a_requester_pays_bucket() -> None:
    memory = MemoryS3(requester_pays=(BUCKET,))
    client = s3cse.EncryptionClient(memory, keyring())
    args = {**SSE_C, **PAYER_AND_OWNER}
    client.upload_fileobj(io.BytesIO(BIG), BUCKET, KEY, ExtraArgs=args, Config=PARALLEL)
    sink = io.BytesIO()

    client.download_fileobj(
        BUCKET, KEY, sink, ExtraArgs=args, Config=TransferConfig(multipart_chunksize=MiB)
    )

    assert sink.getvalue() == BIG
    first, *ranges = memory.calls_to("GetObject")
    assert first["Range"] == f"bytes=0-{MiB - 1}" and "IfMatch" not in first  # as a HEAD
    assert len(ranges) == 11
    assert {r["IfMatch"] for r in ranges} == {memory.objects[(BUCKET, KEY)].etag}
    assert memory.calls_to("HeadObject") == []


# ---------------------------------------------------------------- the low-level API


def test_low_level_multipart_forwards_caller_arguments_and_not_is_last_part(
    stubbed: s3cse.EncryptionClient, stubber: Stubber
) -> None:
    per_request = {**SSE_C, **PAYER_AND_OWNER}
    part = plaintext_of(4000)
    metadata, body, instruction = Captured(), Captured(), Captured()
    stubber.add_response(
        "create_multipart_upload",
        {"Bucket": BUCKET, "Key": KEY, "UploadId": "u-2"},
        {"Bucket": BUCKET, "Key": KEY, "Metadata": metadata, "ContentType": "a/b", **per_request},
    )
    stubber.add_response(
        "upload_part",
        {"ETag": '"p1"'},
        {
            "Bucket": BUCKET,
            "Key": KEY,
            "UploadId": "u-2",
            "PartNumber": 1,
            "Body": body,
            **per_request,
        },
    )
    complete = {"Parts": [{"PartNumber": 1, "ETag": '"p1"'}]}
    stubber.add_response(
        "complete_multipart_upload",
        {"ETag": '"x-1"'},
        {
            "Bucket": BUCKET,
            "Key": KEY,
            "UploadId": "u-2",
            "MultipartUpload": complete,
            **per_request,
        },
    )
    stubber.add_response(
        "put_object",
        {"ETag": '"i"'},
        {
            "Bucket": BUCKET,
            "Key": f"{KEY}.instruction",
            "Body": instruction,
            "Metadata": {"x-amz-crypto-instr-file": ""},
            "ContentType": "application/json",
            **PAYER_AND_OWNER,
        },
    )

    upload_id = stubbed.create_multipart_upload(
        Bucket=BUCKET, Key=KEY, ContentType="a/b", InstructionFilePut=True, **per_request
    )["UploadId"]
    stubbed.upload_part(
        Bucket=BUCKET,
        Key=KEY,
        UploadId=upload_id,
        PartNumber=1,
        Body=part,
        IsLastPart=True,
        **per_request,
    )
    stubbed.complete_multipart_upload(
        Bucket=BUCKET, Key=KEY, UploadId=upload_id, MultipartUpload=complete, **per_request
    )

    fields = s3cse.decode_instruction_file(instruction.value)
    assert s3cse.decrypt(body.value, metadata.value, keyring(), instruction_file=fields) == part


def test_low_level_abort_forwards_payer_and_owner(
    stubbed: s3cse.EncryptionClient, stubber: Stubber
) -> None:
    stubber.add_response(
        "create_multipart_upload",
        {"UploadId": "u-3"},
        {"Bucket": BUCKET, "Key": KEY, "Metadata": Captured(), **PAYER_AND_OWNER},
    )
    stubber.add_response(
        "abort_multipart_upload",
        {},
        {"Bucket": BUCKET, "Key": KEY, "UploadId": "u-3", **PAYER_AND_OWNER},
    )

    upload_id = stubbed.create_multipart_upload(Bucket=BUCKET, Key=KEY, **PAYER_AND_OWNER)[
        "UploadId"
    ]
    stubbed.abort_multipart_upload(Bucket=BUCKET, Key=KEY, UploadId=upload_id, **PAYER_AND_OWNER)


def _complete(client: s3cse.EncryptionClient, upload_id: str, etags: list[str]) -> None:
    parts = [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)]
    client.complete_multipart_upload(
        Bucket=BUCKET, Key=KEY, UploadId=upload_id, MultipartUpload={"Parts": parts}
    )


def test_low_level_parts_round_trip_through_get_object(
    memory: MemoryS3, client: s3cse.EncryptionClient
) -> None:
    first, second = BIG[: 5 * MiB], BIG[5 * MiB : 5 * MiB + 3000]
    upload_id = client.create_multipart_upload(Bucket=BUCKET, Key=KEY)["UploadId"]
    etags = [
        client.upload_part(
            Bucket=BUCKET, Key=KEY, UploadId=upload_id, PartNumber=n, Body=body, IsLastPart=last
        )["ETag"]
        for n, body, last in ((1, first, False), (2, second, True))
    ]
    _complete(client, upload_id, etags)

    response = client.get_object(Bucket=BUCKET, Key=KEY)

    assert response["ContentLength"] == len(first) + len(second)
    assert response["Body"].read() == first + second


def test_low_level_part_resent_after_a_failure_carries_identical_ciphertext(
    memory: MemoryS3, client: s3cse.EncryptionClient
) -> None:
    part = plaintext_of(4000)
    upload_id = client.create_multipart_upload(Bucket=BUCKET, Key=KEY)["UploadId"]
    memory.fail("UploadPart")
    send = {"Bucket": BUCKET, "Key": KEY, "UploadId": upload_id, "PartNumber": 1, "Body": part}
    with pytest.raises(ClientError, match="InternalError"):
        client.upload_part(**send, IsLastPart=True)

    etag = client.upload_part(**send, IsLastPart=True)["ETag"]
    _complete(client, upload_id, [etag])

    first, second = memory.calls_to("UploadPart")
    assert first["Body"] == second["Body"] != part
    assert client.get_object(Bucket=BUCKET, Key=KEY)["Body"].read() == part
