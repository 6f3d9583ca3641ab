"""Which of the caller's boto3 arguments go to which S3 request: the one table.

An encrypted object costs S3 requests the caller never wrote (a HEAD before a read, the
instruction file's GET or PUT, the abort after a failed multipart upload...). Each of
them must carry the caller's access arguments, or it fails where the caller's own
request would have worked (a requester-pays bucket, an expected owner, SSE-C). Every
module that sends such a request takes its arguments from :func:`forward`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .errors import ConfigurationError

__all__ = [
    "PLAINTEXT_CHECKSUM_ARGS",
    "SSE_C_ARGS",
    "botocore_adds_crc32",
    "checksum_is_a_separate_pass",
    "copy_source_head",
    "forward",
    "is_not_found",
    "refuse_plaintext_checksums",
    "strip_response_checksums",
    "user_metadata_size",
]

#: Arguments every request on the bucket takes, and must, for the caller's request to work.
_ACCESS = ("ExpectedBucketOwner", "RequestPayer")
#: A customer-provided key (SSE-C): needed by every request that reads or writes the bytes.
SSE_C_ARGS = ("SSECustomerAlgorithm", "SSECustomerKey", "SSECustomerKeyMD5")
#: Server-side encryption with S3 or KMS keys, set when an object is written.
_SSE = ("ServerSideEncryption", "SSEKMSKeyId", "SSEKMSEncryptionContext", "BucketKeyEnabled")
_READ_CONDITIONS = ("IfMatch", "IfNoneMatch", "IfModifiedSince", "IfUnmodifiedSince")

_TABLE: dict[str, tuple[str, ...]] = {
    # HEAD before a read (whole-object, ranged or transfer): the object the caller names.
    "head": ("VersionId", *_READ_CONDITIONS, *_ACCESS, *SSE_C_ARGS),
    # The ranged GETs of a transfer download (pinned to the HEAD's ETag by the caller).
    "ranged_get": ("VersionId", *_ACCESS, *SSE_C_ARGS),
    # UploadPart, from the arguments of CreateMultipartUpload.
    "upload_part": (*_ACCESS, *SSE_C_ARGS, "ChecksumAlgorithm"),
    "complete_multipart_upload": (*_ACCESS, *SSE_C_ARGS),
    "abort_multipart_upload": _ACCESS,
    # The instruction file: a small object of its own beside the content. It carries no
    # content, so no SSE-C (a reader would need the customer key just to find the wrap),
    # but the same S3/KMS server-side encryption as the object it describes.
    "instruction_put": (*_ACCESS, *_SSE),
    "instruction_get": _ACCESS,
    "instruction_delete": _ACCESS,
    "instruction_copy": (*_ACCESS, "ExpectedSourceBucketOwner", *_SSE),
}


def forward(call: str, args: Mapping[str, Any]) -> dict[str, Any]:
    """The caller's ``args`` that the S3 request ``call`` (a key of the table above) takes."""
    return {name: args[name] for name in _TABLE[call] if name in args}


def copy_source_head(copy_args: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments of a HEAD of a CopyObject's source, from the CopyObject arguments:
    its SSE-C key, its owner, and the requester-pays acknowledgement."""
    head = {
        name: copy_args[f"CopySource{name}"]
        for name in SSE_C_ARGS
        if f"CopySource{name}" in copy_args
    }
    if "ExpectedSourceBucketOwner" in copy_args:
        head["ExpectedBucketOwner"] = copy_args["ExpectedSourceBucketOwner"]
    if "RequestPayer" in copy_args:
        head["RequestPayer"] = copy_args["RequestPayer"]
    return head


#: S3's limit on user-defined metadata: 2 KB, the UTF-8 bytes of every name and value.
USER_METADATA_LIMIT = 2048
#: What s3cse sends at most. AWS counts names without ``x-amz-meta-``; stricter stores
#: count whole header names, and rclone's serve s3 counts every other x-amz-* header of
#: the request into its 2000 bytes too: leave them room.
USER_METADATA_BUDGET = 1536


def user_metadata_size(metadata: Mapping[str, str]) -> int:
    """The size of user-defined metadata as the strictest stores count it: UTF-8 bytes of
    each whole header name (``x-amz-meta-`` included) and value."""
    return sum(
        len(("x-amz-meta-" + name.lower().removeprefix("x-amz-meta-")).encode())
        + len(value.encode())
        for name, value in metadata.items()
    )


# Caller-computed integrity values describe the plaintext, never the ciphertext we send.
PLAINTEXT_CHECKSUM_ARGS = (
    "ContentMD5",
    "ChecksumCRC32",
    "ChecksumCRC32C",
    "ChecksumCRC64NVME",
    "ChecksumSHA1",
    "ChecksumSHA256",
)
_RESPONSE_CHECKSUMS = (*PLAINTEXT_CHECKSUM_ARGS[1:], "ChecksumType")


def refuse_plaintext_checksums(args: Mapping[str, Any]) -> None:
    """Refuse checksum values the caller computed: they describe the plaintext."""
    for name in PLAINTEXT_CHECKSUM_ARGS:
        if name in args:
            raise ConfigurationError(
                f"{name} would describe the plaintext, but S3 receives ciphertext; drop it "
                "and pass ChecksumAlgorithm='CRC32' to have the ciphertext checked"
            )


def strip_response_checksums(response: dict[str, Any]) -> None:
    """Drop the stored checksums from a read's response: they are of the ciphertext."""
    for name in _RESPONSE_CHECKSUMS:
        response.pop(name, None)


def botocore_adds_crc32(s3: Any, kwargs: Mapping[str, Any]) -> bool:
    """Whether botocore will compute a CRC32 of this request's body by itself: the
    caller gave no checksum value and asked for no other algorithm."""
    if "ContentMD5" in kwargs or any(
        name.startswith("Checksum") and name != "ChecksumAlgorithm" for name in kwargs
    ):
        return False
    if kwargs.get("ChecksumAlgorithm") is not None:
        return str(kwargs["ChecksumAlgorithm"]).upper() == "CRC32"
    calculation = getattr(s3.meta.config, "request_checksum_calculation", None)
    return calculation in (None, "when_supported")


def checksum_is_a_separate_pass(s3: Any) -> bool:
    """Whether botocore puts a request checksum in a header, computed by reading the
    body before sending it (plain HTTP), rather than in a trailer while sending (HTTPS)."""
    endpoint = str(getattr(s3.meta, "endpoint_url", "") or "")
    signature = getattr(s3.meta.config, "signature_version", None)
    return not endpoint.startswith("https:") or signature == "s3"


def is_not_found(error: Exception) -> bool:
    """Whether a botocore ClientError says the object does not exist."""
    response = getattr(error, "response", None) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    return code in ("NoSuchKey", "404", "NotFound")
