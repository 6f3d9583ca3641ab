"""Shared pieces of the functional tests: the key, stubbed S3 responses, a capturing matcher."""

from __future__ import annotations

import io
import re
from typing import Any

from botocore.response import StreamingBody

import s3cse

BUCKET = "bucket"
KEY = "dir/object.bin"
OWNER = "111122223333"
SSE_C = {
    "SSECustomerAlgorithm": "AES256",
    "SSECustomerKey": "k" * 32,
}
PAYER_AND_OWNER = {"RequestPayer": "requester", "ExpectedBucketOwner": OWNER}
ETAG = '"0123456789abcdef0123456789abcdef"'
MiB = 1024 * 1024


def keyring() -> s3cse.AesKeyring:
    return s3cse.AesKeyring(b"\x5a" * 32, {"kid": "a"})


def other_keyring() -> s3cse.AesKeyring:
    return s3cse.AesKeyring(b"\xa5" * 32, {"kid": "b"})


def plaintext_of(size: int) -> bytes:
    """``size`` bytes that differ at every offset (so a wrong slice cannot pass)."""
    pattern = bytes(range(251))
    return (pattern * (size // len(pattern) + 1))[:size]


def crypto_metadata_names(instruction_file: bool = False) -> set[str]:
    """The metadata names s3cse's default (V3) format puts on an object."""
    return set(s3cse.encrypt(b"", keyring(), instruction_file=instruction_file).metadata)


class Captured:
    """An ``expected_params`` value for Stubber that matches anything and keeps it."""

    def __init__(self) -> None:
        self.value: Any = None

    def __eq__(self, other: object) -> bool:
        self.value = other
        return True

    def __hash__(self) -> int:
        return id(self)

    def __repr__(self) -> str:
        return f"<Captured {self.value!r:.60}>"


def streaming(data: bytes) -> tuple[StreamingBody, io.BytesIO]:
    """A response body as botocore returns it, and the raw stream under it."""
    raw = io.BytesIO(data)
    return StreamingBody(raw, len(data)), raw


def get_response(obj: s3cse.EncryptedObject, **fields: Any) -> dict[str, Any]:
    """A GetObject response of a whole encrypted object."""
    body, _ = streaming(obj.ciphertext)
    return {
        "Body": body,
        "ContentLength": len(obj.ciphertext),
        "ETag": ETAG,
        "Metadata": dict(obj.metadata),
        **fields,
    }


def head_response(obj: s3cse.EncryptedObject, **fields: Any) -> dict[str, Any]:
    return {
        "ContentLength": len(obj.ciphertext),
        "ETag": ETAG,
        "Metadata": dict(obj.metadata),
        **fields,
    }


def instruction_response(obj: s3cse.EncryptedObject) -> dict[str, Any]:
    """The GetObject response of ``obj``'s instruction file."""
    assert obj.instruction_file is not None
    data = s3cse.encode_instruction_file(obj.instruction_file)
    body, _ = streaming(data)
    return {
        "Body": body,
        "ContentLength": len(data),
        "ETag": '"instruction"',
        "Metadata": {"x-amz-crypto-instr-file": ""},
    }


def python_slice(data: bytes, range_header: str) -> tuple[int, bytes]:
    """What ``bytes=a-b``, ``bytes=a-`` or ``bytes=-n`` selects of ``data``, by slicing:
    (the offset of its first byte, the bytes)."""
    match = re.fullmatch(r"bytes=(\d*)-(\d*)", range_header)
    assert match, range_header
    first, last = match.groups()
    if not first:
        return max(0, len(data) - int(last)), data[-int(last) :]
    return int(first), data[int(first) : int(last) + 1] if last else data[int(first) :]
