"""Ranged reads (behind ``enable_legacy_unauthenticated_modes``): each result must equal
the slice of the plaintext Python gives for that range; unsatisfiable ranges get S3's
own 416 answer; S3's Content-Range is checked against the request."""

from __future__ import annotations

import re
from typing import Any

import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

import s3cse

from .helpers import (
    BUCKET,
    ETAG,
    KEY,
    PAYER_AND_OWNER,
    SSE_C,
    head_response,
    keyring,
    plaintext_of,
    python_slice,
    streaming,
)
from .memory_s3 import MemoryS3

ODD = plaintext_of(100)  # not a whole number of AES blocks
BLOCKS = plaintext_of(64)  # exactly 16 * 4 bytes

SATISFIABLE = [
    (ODD, "bytes=0-0"),
    (ODD, "bytes=0-15"),
    (ODD, "bytes=15-16"),
    (ODD, "bytes=16-31"),
    (ODD, "bytes=17-17"),
    (ODD, "bytes=-1"),
    (ODD, "bytes=-16"),
    (ODD, "bytes=-1000"),
    (ODD, "bytes=40-"),
    (ODD, "bytes=0-"),
    (ODD, "bytes=99-99"),
    (ODD, "bytes=90-200"),
    (ODD, "bytes=0-99999"),
    (BLOCKS, "bytes=0-63"),
    (BLOCKS, "bytes=48-63"),
    (BLOCKS, "bytes=63-"),
    (BLOCKS, "bytes=-16"),
    (BLOCKS, "bytes=-17"),
    (BLOCKS, "bytes=32-100"),
    (BLOCKS, "bytes=-64"),
]
UNSATISFIABLE = [
    (ODD, "bytes=100-"),
    (ODD, "bytes=100-100"),
    (ODD, "bytes=150-200"),
    (ODD, "bytes=-0"),
    (BLOCKS, "bytes=64-"),
    (b"", "bytes=0-"),
    (b"", "bytes=0-0"),
    (b"", "bytes=-5"),
]


def _ranged_client(s3: Any, **options: Any) -> s3cse.EncryptionClient:
    return s3cse.EncryptionClient(
        s3, keyring(), enable_legacy_unauthenticated_modes=True, **options
    )


def _label(case: tuple[bytes, str]) -> str:
    return f"{len(case[0])}B-{case[1]}"


@pytest.mark.parametrize("instruction_file", [False, True], ids=["metadata", "instruction-file"])
@pytest.mark.parametrize("case", SATISFIABLE, ids=[_label(c) for c in SATISFIABLE])
def test_ranged_get_returns_the_python_slice_of_the_plaintext(
    memory: MemoryS3, case: tuple[bytes, str], instruction_file: bool
) -> None:
    plaintext, range_header = case
    client = _ranged_client(memory)
    client.put_object(Bucket=BUCKET, Key=KEY, Body=plaintext, InstructionFilePut=instruction_file)
    first, expected = python_slice(plaintext, range_header)

    response = client.get_object(Bucket=BUCKET, Key=KEY, Range=range_header)

    assert response["Body"].read() == expected
    assert response["ContentLength"] == len(expected)
    last = first + len(expected) - 1
    assert response["ContentRange"] == f"bytes {first}-{last}/{len(plaintext)}"
    assert not {k for k in response if k.startswith("Checksum")}


@pytest.mark.parametrize("case", SATISFIABLE, ids=[_label(c) for c in SATISFIABLE])
def test_ranged_fetch_never_reaches_into_the_tag(memory: MemoryS3, case: tuple[bytes, str]) -> None:
    plaintext, range_header = case
    client = _ranged_client(memory)
    client.put_object(Bucket=BUCKET, Key=KEY, Body=plaintext)

    client.get_object(Bucket=BUCKET, Key=KEY, Range=range_header)["Body"].read()

    (fetch,) = memory.calls_to("GetObject")
    first, last = map(int, re.fullmatch(r"bytes=(\d+)-(\d+)", fetch["Range"]).groups())  # type: ignore[union-attr]
    assert first % 16 == 0
    assert last < len(plaintext)


@pytest.mark.parametrize("case", UNSATISFIABLE, ids=[_label(c) for c in UNSATISFIABLE])
def test_unsatisfiable_range_reraises_s3s_invalid_range_error(
    memory: MemoryS3, case: tuple[bytes, str]
) -> None:
    plaintext, range_header = case
    client = _ranged_client(memory)
    client.put_object(Bucket=BUCKET, Key=KEY, Body=plaintext)

    with pytest.raises(ClientError) as raised:
        client.get_object(Bucket=BUCKET, Key=KEY, Range=range_header)

    assert raised.value.response["Error"]["Code"] == "InvalidRange"
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 416


def test_ranged_get_forwards_version_sse_c_payer_owner_and_pins_the_etag(
    boto_s3: Any, stubber: Stubber
) -> None:
    obj = s3cse.encrypt(ODD, keyring())
    args = {"VersionId": "v-4", **SSE_C, **PAYER_AND_OWNER}
    stubber.add_response("head_object", head_response(obj), {"Bucket": BUCKET, "Key": KEY, **args})
    body, _ = streaming(obj.ciphertext[16:48])
    stubber.add_response(
        "get_object",
        {
            "Body": body,
            "ContentLength": 32,
            "ContentRange": f"bytes 16-47/{len(obj.ciphertext)}",
            "ChecksumCRC32": "AAAAAA==",
        },
        {"Bucket": BUCKET, "Key": KEY, "Range": "bytes=16-47", "IfMatch": ETAG, **args},
    )

    response = _ranged_client(boto_s3).get_object(
        Bucket=BUCKET, Key=KEY, Range="bytes=20-40", **args
    )

    assert response["Body"].read() == ODD[20:41]
    assert response["ContentRange"] == "bytes 20-40/100"
    assert response["ContentLength"] == 21
    assert "ChecksumCRC32" not in response


def test_unsatisfiable_range_asks_s3_for_its_answer_pinned_to_the_etag(
    boto_s3: Any, stubber: Stubber
) -> None:
    obj = s3cse.encrypt(ODD, keyring())
    stubber.add_response("head_object", head_response(obj), {"Bucket": BUCKET, "Key": KEY})
    stubber.add_client_error(
        "get_object",
        service_error_code="InvalidRange",
        http_status_code=416,
        expected_params={
            "Bucket": BUCKET,
            "Key": KEY,
            "Range": f"bytes={len(obj.ciphertext)}-",
            "IfMatch": ETAG,
        },
    )

    with pytest.raises(ClientError, match="InvalidRange"):
        _ranged_client(boto_s3).get_object(Bucket=BUCKET, Key=KEY, Range="bytes=500-")


def test_unsatisfiable_range_that_s3_satisfies_means_the_object_changed(
    boto_s3: Any, stubber: Stubber
) -> None:
    obj = s3cse.encrypt(ODD, keyring())
    stubber.add_response("head_object", head_response(obj), {"Bucket": BUCKET, "Key": KEY})
    body, _ = streaming(b"x" * 10)
    stubber.add_response(
        "get_object",
        {"Body": body, "ContentLength": 10, "ContentRange": "bytes 116-125/126"},
        {"Bucket": BUCKET, "Key": KEY, "Range": f"bytes={len(obj.ciphertext)}-", "IfMatch": ETAG},
    )

    with pytest.raises(s3cse.UnexpectedResponseError, match="changed") as raised:
        _ranged_client(boto_s3).get_object(Bucket=BUCKET, Key=KEY, Range="bytes=500-")

    assert str(raised.value).startswith(f"s3://{BUCKET}/{KEY}: ")


@pytest.mark.parametrize(
    "content_range",
    ["bytes 0-31/116", "bytes 16-47/117", "bytes 16-46/116", None],
    ids=["other-start", "other-size", "other-end", "missing"],
)
def test_response_with_another_content_range_raises_unexpected_response_error_and_closes_it(
    boto_s3: Any, stubber: Stubber, content_range: str | None
) -> None:
    obj = s3cse.encrypt(ODD, keyring())
    assert len(obj.ciphertext) == 116
    stubber.add_response("head_object", head_response(obj), {"Bucket": BUCKET, "Key": KEY})
    body, raw = streaming(obj.ciphertext[16:48])
    response: dict[str, Any] = {"Body": body, "ContentLength": 32}
    if content_range is not None:
        response["ContentRange"] = content_range
    stubber.add_response(
        "get_object",
        response,
        {"Bucket": BUCKET, "Key": KEY, "Range": "bytes=16-47", "IfMatch": ETAG},
    )

    with pytest.raises(s3cse.UnexpectedResponseError, match="Content-Range") as raised:
        _ranged_client(boto_s3).get_object(Bucket=BUCKET, Key=KEY, Range="bytes=20-40")

    assert str(raised.value).startswith(f"s3://{BUCKET}/{KEY}: ")
    assert raw.closed


def test_range_without_the_switch_is_refused_before_any_request(
    memory: MemoryS3, client: s3cse.EncryptionClient
) -> None:
    client.put_object(Bucket=BUCKET, Key=KEY, Body=ODD)
    before = len(memory.calls)

    with pytest.raises(s3cse.RangeNotAllowedError, match="enable_legacy_unauthenticated_modes"):
        client.get_object(Bucket=BUCKET, Key=KEY, Range="bytes=0-15")

    assert len(memory.calls) == before


@pytest.mark.parametrize("switch", [False, True], ids=["switch-off", "switch-on"])
def test_part_number_read_is_refused_before_any_request(memory: MemoryS3, switch: bool) -> None:
    client = s3cse.EncryptionClient(memory, keyring(), enable_legacy_unauthenticated_modes=switch)

    with pytest.raises(s3cse.RangeNotAllowedError) as raised:
        client.get_object(Bucket=BUCKET, Key=KEY, PartNumber=1)

    assert str(raised.value).startswith(f"s3://{BUCKET}/{KEY}: ")
    assert memory.calls == []


@pytest.mark.parametrize("range_header", ["bytes=5", "bytes=0-1,4-5", "items=0-5", "bytes=9-3"])
def test_malformed_range_is_refused_without_fetching_ciphertext(
    memory: MemoryS3, range_header: str
) -> None:
    client = _ranged_client(memory)
    client.put_object(Bucket=BUCKET, Key=KEY, Body=ODD)

    with pytest.raises(s3cse.ConfigurationError, match="Range"):
        client.get_object(Bucket=BUCKET, Key=KEY, Range=range_header)

    assert memory.calls_to("GetObject") == []
