"""Key rotation of stored objects: the data key re-wrapped under a new master key, the
content untouched (a new instruction file, or the metadata rewritten in place).

Every write is conditional on what was read, so a rotation racing the application
never overwrites the application's newer object: the instruction file is replaced with
``IfMatch`` on the ETag of the one read (``IfNoneMatch: *`` for a new name), metadata is
rewritten with ``CopySourceIfMatch`` on the object's ETag. A lost race is a
:class:`WriteConflictError`. On a store that ignores those conditions (rclone's
``serve s3`` does) the window between the read and the write stays open.
"""

from __future__ import annotations

import contextlib
import logging
import urllib.parse
from collections.abc import Mapping
from typing import Any

from botocore.exceptions import ClientError

from . import _s3args
from ._download import read_chunks
from ._objects import ObjectStore, load_instruction_file
from .core import metadata as md
from .core.envelope import MaterialsSource, can_unwrap, rewrap
from .errors import (
    IntegrityError,
    WriteConflictError,
    located,
)

__all__ = ["authenticate", "is_instruction_file", "reencrypt", "rewrite_arguments"]

log = logging.getLogger(__name__)

#: CopyObject copies at most 5 GiB on AWS; larger objects are copied part by part.
COPY_OBJECT_LIMIT = 5 * 1024**3
_COPY_PART = 512 * 1024**2
_MAX_PARTS = 10_000

#: What HEAD returns about an object and CopyObject must be told again on a REPLACE.
_KEPT_ON_REWRITE = (
    "ContentType",
    "CacheControl",
    "ContentDisposition",
    "ContentEncoding",
    "ContentLanguage",
    "Expires",
    "WebsiteRedirectLocation",
    "StorageClass",
    "ObjectLockMode",
    "ObjectLockRetainUntilDate",
    "ObjectLockLegalHoldStatus",
)
_CHECKSUM_ALGORITHMS = {
    "ChecksumCRC32": "CRC32",
    "ChecksumCRC32C": "CRC32C",
    "ChecksumCRC64NVME": "CRC64NVME",
    "ChecksumSHA1": "SHA1",
    "ChecksumSHA256": "SHA256",
}
#: Caller arguments every request of a rotation carries.
_ACCESS = ("ExpectedBucketOwner", "RequestPayer")


def is_instruction_file(
    s3: Any, bucket: str, key: str, metadata: Mapping[str, str], access: Mapping[str, Any]
) -> bool:
    """Whether ``key`` is the instruction file of an object beside it. Neither the name
    nor the marker alone is trusted (a bucket writer could hide objects from a rotation
    with them): the name must end in the suffix, the object it names must exist, and
    the key itself must carry no crypto metadata."""
    if not key.endswith(md.INSTRUCTION_FILE_SUFFIX) or md.has_crypto_metadata(metadata):
        return False
    try:
        s3.head_object(Bucket=bucket, Key=key[: -len(md.INSTRUCTION_FILE_SUFFIX)], **access)
    except ClientError as exc:
        if _s3args.is_not_found(exc):
            return False
        raise
    return True


def authenticate(
    store: ObjectStore,
    bucket: str,
    key: str,
    content: md.ContentMetadata,
    etag: str,
    context: Mapping[str, str] | None,
    extra: Mapping[str, Any],
) -> None:
    """Read the whole object and check its tag (no plaintext is kept)."""
    decryptor = store.begin_decryptor(bucket, key, content, context)
    if not decryptor.authenticated:
        raise IntegrityError(
            f"the object is {content.suite.name}, which has no tag: its content cannot be verified"
        ).at(bucket, key)
    response = store.s3.get_object(
        Bucket=bucket, Key=key, IfMatch=etag, **_s3args.forward("ranged_get", extra)
    )
    scratch = bytearray(1024 * 1024 + 64)
    with contextlib.closing(response["Body"]) as body, located(bucket, key):
        for chunk in read_chunks(body):
            if len(chunk) + 31 > len(scratch):
                scratch = bytearray(len(chunk) + 64)
            decryptor.update_into(chunk, scratch)
        decryptor.finalize()


def _conflict_on_412(bucket: str, key: str, what: str) -> contextlib.AbstractContextManager[None]:
    @contextlib.contextmanager
    def guard() -> Any:
        try:
            yield
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ("PreconditionFailed", "ConditionalRequestConflict") or status in (
                409,
                412,
            ):
                raise WriteConflictError(
                    f"{what} changed while it was being re-encrypted; nothing was overwritten "
                    "(read it again and retry)",
                    bucket=bucket,
                    key=key,
                ) from None
            raise

    return guard()


def reencrypt(
    store: ObjectStore,
    bucket: str,
    key: str,
    new_keyring: MaterialsSource,
    instruction_file_suffix: str | None = None,
    *,
    encryption_context: Mapping[str, str] | None = None,
    new_encryption_context: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
    verify: bool = False,
    dryrun: bool = False,
    head: Mapping[str, Any] | None = None,
) -> str:
    """Re-wrap one object's data key under ``new_keyring``; see
    :meth:`EncryptionClient.reencrypt`. Returns ``"rotated"``, ``"skipped"`` or
    ``"instruction-file"`` (the key is the instruction file of an object beside it).
    ``dryrun``: everything but the write ("rotated": it would be; the data key was
    unwrapped with the old key and wrapped with the new one, and dropped). ``head``:
    the object's HEAD (with ``ChecksumMode="ENABLED"``) when the caller has made it."""
    extra = dict(extra or {})
    if head is None:
        head = store.s3.head_object(
            Bucket=bucket, Key=key, ChecksumMode="ENABLED", **_s3args.forward("head", extra)
        )
    head = dict(head)
    etag = str(head.get("ETag") or "")
    metadata = {k.lower(): v for k, v in head.get("Metadata", {}).items()}
    if not etag:
        raise WriteConflictError(
            "the store gave the object no ETag, so a rewrite could not be made conditional "
            "on it; not rotated",
            bucket=bucket,
            key=key,
        )
    sibling_args = {
        k: v for k, v in _s3args.forward("ranged_get", extra).items() if k != "VersionId"
    }
    if is_instruction_file(store.s3, bucket, key, metadata, sibling_args):
        return "instruction-file"
    with located(bucket, key):
        instruction = None
        if md.needs_instruction_file(metadata):
            instruction = load_instruction_file(
                store.s3, bucket, key, store.instruction_file_suffix, extra
            )
        content = md.parse_metadata(metadata, instruction[0] if instruction else None)
        if verify:
            authenticate(store, bucket, key, content, etag, encryption_context, extra)
        new_file = instruction_file_suffix not in (None, md.INSTRUCTION_FILE_SUFFIX)
        if not new_file and can_unwrap(
            new_keyring, content, store.config, encryption_context=new_encryption_context
        ):
            return "skipped"
        result = rewrap(  # in a dry run too: the old key must unwrap, the new one wrap
            store.cmm,
            new_keyring,
            content,
            store.config,
            encryption_context=encryption_context,
            new_encryption_context=new_encryption_context,
        )
        if dryrun:
            return "rotated"
    log.debug(
        "re-encrypt s3://%s/%s: %s -> %s",
        bucket,
        key,
        content.wrap_algorithm.value,
        result.content_metadata.wrap_algorithm.value,
    )
    if result.instruction_file is not None:
        suffix = instruction_file_suffix or md.INSTRUCTION_FILE_SUFFIX
        if instruction is not None and suffix == store.instruction_file_suffix and instruction[1]:
            condition = {"IfMatch": instruction[1]}  # replacing the very file read
        else:
            condition = {"IfNoneMatch": "*"}  # a new name: never over an existing file
        with _conflict_on_412(bucket, key, "the object or its instruction file"):
            # The object must still be the one whose key was re-wrapped ...
            store.s3.head_object(
                Bucket=bucket, Key=key, **_s3args.forward("head", {**extra, "IfMatch": etag})
            )
            # ... and its instruction file the one read.
            store.put_instruction_file(
                bucket, key, result.instruction_file, extra, suffix, condition=condition
            )
        return "rotated"
    user = {k: v for k, v in metadata.items() if k not in md.crypto_metadata_keys()}
    with _conflict_on_412(bucket, key, "the object"):
        _rewrite_metadata(store, bucket, key, head, {**user, **result.metadata}, extra)
    return "rotated"


def rewrite_arguments(head: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """What a rewrite of the object in place must say again to keep every attribute S3
    does not carry over by itself. Not kept: the ACL (S3 never copies it; set it again
    with PutObjectAcl) and a custom SSE-KMS encryption context, which HEAD does not
    return (pass ``SSEKMSEncryptionContext`` to keep it)."""
    args: dict[str, Any] = {name: head[name] for name in _KEPT_ON_REWRITE if head.get(name)}
    if head.get("ServerSideEncryption") and not head.get("SSECustomerAlgorithm"):
        args["ServerSideEncryption"] = head["ServerSideEncryption"]
        if head.get("SSEKMSKeyId"):
            args["SSEKMSKeyId"] = head["SSEKMSKeyId"]
        if head.get("BucketKeyEnabled"):
            args["BucketKeyEnabled"] = True
        if extra.get("SSEKMSEncryptionContext"):
            args["SSEKMSEncryptionContext"] = extra["SSEKMSEncryptionContext"]
    for name, algorithm in _CHECKSUM_ALGORITHMS.items():
        if head.get(name):
            args["ChecksumAlgorithm"] = algorithm
            break
    for name in _s3args.SSE_C_ARGS:
        if name in extra:
            args[name] = extra[name]
    for name in _ACCESS:
        if name in extra:
            args[name] = extra[name]
    return args


def _rewrite_metadata(
    store: ObjectStore,
    bucket: str,
    key: str,
    head: Mapping[str, Any],
    metadata: Mapping[str, str],
    extra: Mapping[str, Any],
) -> None:
    """Replace the object's metadata in place, the ciphertext copied byte for byte, on
    the condition that it is still the object HEAD saw."""
    args = rewrite_arguments(head, extra)
    source_sse_c = {
        f"CopySource{name}": extra[name] for name in _s3args.SSE_C_ARGS if name in extra
    }
    if "ExpectedBucketOwner" in extra:
        source_sse_c["ExpectedSourceBucketOwner"] = extra["ExpectedBucketOwner"]
    size = int(head["ContentLength"])
    if size <= COPY_OBJECT_LIMIT:
        store.s3.copy_object(
            Bucket=bucket,
            Key=key,
            CopySource={"Bucket": bucket, "Key": key},
            CopySourceIfMatch=head["ETag"],
            MetadataDirective="REPLACE",
            TaggingDirective="COPY",
            Metadata=dict(metadata),
            **args,
            **source_sse_c,
        )
        return
    # Over CopyObject's limit: the same bytes through UploadPartCopy, each part pinned to
    # the ETag. CreateMultipartUpload takes no TaggingDirective: the tags are read first.
    tags = store.s3.get_object_tagging(
        Bucket=bucket, Key=key, **{k: extra[k] for k in _ACCESS if k in extra}
    ).get("TagSet", [])
    if tags:
        args["Tagging"] = urllib.parse.urlencode([(t["Key"], t["Value"]) for t in tags])
    upload_id = store.s3.create_multipart_upload(
        Bucket=bucket, Key=key, Metadata=dict(metadata), **args
    )["UploadId"]
    part_args = _s3args.forward("upload_part", args)
    part_args.pop("ChecksumAlgorithm", None)
    try:
        part = max(_COPY_PART, -(-size // _MAX_PARTS))
        parts: list[Any] = []
        for number, first in enumerate(range(0, size, part), start=1):
            last = min(first + part, size) - 1
            response = store.s3.upload_part_copy(
                Bucket=bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                CopySource={"Bucket": bucket, "Key": key},
                CopySourceIfMatch=head["ETag"],
                CopySourceRange=f"bytes={first}-{last}",
                **part_args,
                **source_sse_c,
            )
            parts.append({"PartNumber": number, "ETag": response["CopyPartResult"]["ETag"]})
        store.s3.complete_multipart_upload(
            Bucket=bucket,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={"Parts": parts},
            IfMatch=head["ETag"],  # still the object whose key was re-wrapped
            **_s3args.forward("complete_multipart_upload", args),
        )
    except BaseException:
        with contextlib.suppress(Exception):
            store.s3.abort_multipart_upload(
                Bucket=bucket,
                Key=key,
                UploadId=upload_id,
                **_s3args.forward("abort_multipart_upload", args),
            )
        raise
