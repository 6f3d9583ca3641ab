"""The S3 side of one encrypted object: its crypto metadata, its instruction file, and
the first step of writing or reading it.

Every shell (the boto3 client, transfers, fsspec, the CLI) goes through an
:class:`ObjectStore`; the format itself stays in the core, the request arguments in
:mod:`s3cse._s3args`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from . import _s3args
from ._bridge import cleanup
from .core import metadata as md
from .core.envelope import (
    CryptoConfig,
    ObjectDecryptor,
    ObjectEncryptor,
    begin_decryption,
    begin_encryption,
)
from .core.materials import CryptoMaterialsManager
from .errors import (
    ConfigurationError,
    InstructionFileWriteError,
    MalformedMetadataError,
    MetadataTooLargeError,
    NotEncryptedError,
    WriteConflictError,
    located,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = [
    "ObjectStore",
    "PreparedUpload",
    "load_instruction_file",
    "not_encrypted_error",
    "read_content_metadata",
]

log = logging.getLogger(__name__)

#: An instruction file is a small JSON map; anything longer is not one.
_INSTRUCTION_FILE_LIMIT = 64 * 1024


@dataclasses.dataclass
class PreparedUpload:
    """One object's encryption, begun: the encryptor, the S3 arguments of its PUT (or
    CreateMultipartUpload) with the crypto metadata in them, and the instruction-file
    fields to write once the content is stored (None when the metadata is in the object)."""

    encryptor: ObjectEncryptor
    request: dict[str, Any]
    instruction: dict[str, str] | None
    #: IfMatch / IfNoneMatch: on the request that makes the object (PutObject or
    #: CompleteMultipartUpload), never on CreateMultipartUpload.
    condition: dict[str, Any] = dataclasses.field(default_factory=dict)


def load_instruction_file(
    s3: S3Client, bucket: str, key: str, suffix: str, args: Mapping[str, Any]
) -> tuple[dict[str, str], str] | None:
    """The instruction file of ``key``, decoded, and its ETag; None when there is none."""
    try:
        response = s3.get_object(
            Bucket=bucket, Key=f"{key}{suffix}", **_s3args.forward("instruction_get", args)
        )
    except ClientError as exc:
        if _s3args.is_not_found(exc):
            return None
        raise
    with contextlib.closing(response["Body"]):
        fields = md.decode_instruction_file(response["Body"].read(_INSTRUCTION_FILE_LIMIT + 1))
    return fields, str(response.get("ETag") or "")


def read_content_metadata(
    s3: S3Client,
    bucket: str,
    key: str,
    metadata: Mapping[str, str],
    suffix: str = md.INSTRUCTION_FILE_SUFFIX,
    args: Mapping[str, Any] | None = None,
) -> md.ContentMetadata:
    """Parse an object's crypto metadata from its S3 ``metadata``, fetching its
    instruction file when the metadata says so. Needs no key."""
    with located(bucket, key):
        instruction = None
        if md.needs_instruction_file(metadata):
            loaded = load_instruction_file(s3, bucket, key, suffix, args or {})
            if loaded is None and md.has_crypto_metadata(metadata):
                raise MalformedMetadataError(
                    f"the object's metadata points to an instruction file, but {key}{suffix} "
                    "does not exist"
                )
            instruction = loaded[0] if loaded is not None else None
        return md.parse_metadata(metadata, instruction)


def not_encrypted_error() -> NotEncryptedError:
    """What every read says of a plaintext object, when plaintext reads are off."""
    return NotEncryptedError(
        "the object is not client-side encrypted (no crypto metadata, no instruction file); "
        "to read plaintext objects through this client, build it with "
        "allow_unencrypted_reads=True"
    )


@dataclasses.dataclass(frozen=True)
class ObjectStore:
    """Encrypted objects in one S3 client, under one client's keys and settings."""

    s3: S3Client
    cmm: CryptoMaterialsManager
    config: CryptoConfig
    instruction_file_put: bool = False
    instruction_file_suffix: str = md.INSTRUCTION_FILE_SUFFIX
    #: False: crypto metadata that does not fit beside the user's is refused instead of
    #: moved to an instruction file (in-place rewrites: a failure between the object and
    #: its instruction file would leave the only copy unreadable).
    auto_instruction_file: bool = True

    # ------------------------------------------------------------ writing

    def check_user_metadata(self, metadata: Mapping[str, str] | None) -> dict[str, str]:
        """The caller's user metadata, refused when a name is one of the format's."""
        user = dict(metadata or {})
        reserved = md.crypto_metadata_keys()
        clashes = sorted(k for k in user if k.lower().removeprefix("x-amz-meta-") in reserved)
        if clashes:
            raise ConfigurationError(
                f"user metadata key(s) {', '.join(clashes)} are reserved for the encryption "
                "metadata; rename them"
            )
        return user

    def begin_upload(
        self, bucket: str, key: str, args: Mapping[str, Any], length: int | None
    ) -> PreparedUpload:
        """Start one object's encryption from the caller's S3 arguments ``args`` (which
        may carry ``EncryptionContext`` and ``InstructionFilePut``)."""
        request = dict(args)
        request.update(Bucket=bucket, Key=key)
        context = request.pop("EncryptionContext", None)
        use_file = bool(request.pop("InstructionFilePut", self.instruction_file_put))
        request.pop("ContentLength", None)
        condition: dict[str, Any] = {
            k: request.pop(k) for k in ("IfMatch", "IfNoneMatch") if k in request
        }
        with located(bucket, key):
            _s3args.refuse_plaintext_checksums(request)
            user_metadata = self.check_user_metadata(request.get("Metadata"))
            encryptor = begin_encryption(
                self.cmm,
                self.config,
                encryption_context=context,
                instruction_file=use_file,
                plaintext_length=length,
            )
            self._fit_metadata(user_metadata, encryptor, bucket, key, self.auto_instruction_file)
        request["Metadata"] = {**user_metadata, **encryptor.metadata}
        log.debug(
            "encrypt s3://%s/%s: %s, %s bytes, metadata in %s",
            bucket,
            key,
            encryptor.suite.name,
            "unknown" if length is None else length,
            "an instruction file" if encryptor.instruction_file is not None else "the object",
        )
        return PreparedUpload(encryptor, request, encryptor.instruction_file, condition)

    @staticmethod
    def _fit_metadata(
        user: Mapping[str, str],
        encryptor: ObjectEncryptor,
        bucket: str,
        key: str,
        may_move: bool = True,
    ) -> None:
        """Keep the object's metadata within what S3 stores: crypto metadata that would
        not fit beside the caller's goes to an instruction file; what cannot fit even then
        is refused before anything is sent (S3 would answer a bare MetadataTooLarge)."""
        user_size = _s3args.user_metadata_size(user)
        total = user_size + _s3args.user_metadata_size(encryptor.metadata)
        if total <= _s3args.USER_METADATA_BUDGET:
            return
        if encryptor.instruction_file is None and not may_move:
            raise MetadataTooLargeError(
                f"the user metadata is {user_size} bytes, which leaves no room beside it for "
                f"the {total - user_size} bytes of crypto metadata (S3 stores 2 KB), and this "
                "rewrite keeps the key in the object itself: shorten the user metadata"
            )
        if encryptor.instruction_file is None:
            log.info(
                "s3://%s/%s: %d bytes of user metadata leave no room for %d bytes of crypto "
                "metadata (S3 stores 2 KB); writing it to an instruction file instead",
                bucket,
                key,
                user_size,
                total - user_size,
            )
            encryptor.move_metadata_to_instruction_file()
            total = user_size + _s3args.user_metadata_size(encryptor.metadata)
        if total > _s3args.USER_METADATA_BUDGET:
            raise MetadataTooLargeError(
                f"the user metadata is {user_size} bytes and the crypto metadata that must "
                f"stay beside it {total - user_size} more ({total} in all, counted with the "
                f"x-amz-meta- names); S3 stores {_s3args.USER_METADATA_LIMIT} bytes and s3cse keeps within "
                f"{_s3args.USER_METADATA_BUDGET} bytes: shorten the user metadata to at most "
                f"{_s3args.USER_METADATA_BUDGET - (total - user_size)} bytes, or keep it in "
                "the object's content or tags"
            )

    def put_instruction_file(
        self,
        bucket: str,
        key: str,
        fields: Mapping[str, str],
        put_args: Mapping[str, Any],
        suffix: str = md.INSTRUCTION_FILE_SUFFIX,
        condition: Mapping[str, Any] | None = None,
    ) -> None:
        """Write ``<key><suffix>``: the instruction file of object ``key``; ``condition``
        (``{"IfMatch": etag}`` or ``{"IfNoneMatch": "*"}``) makes the write conditional."""
        self.s3.put_object(
            Bucket=bucket,
            Key=f"{key}{suffix}",
            Body=md.encode_instruction_file(fields),
            Metadata=dict(md.INSTRUCTION_FILE_MARKER),
            ContentType="application/json",
            **_s3args.forward("instruction_put", put_args),
            **(condition or {}),
        )

    def complete_with_instruction_file(
        self,
        bucket: str,
        key: str,
        fields: Mapping[str, str],
        put_args: Mapping[str, Any],
        object_etag: str | None = None,
        *,
        retry: bool = False,
    ) -> None:
        """Write the instruction file of an object just stored (``object_etag``, as its
        PUT or Complete returned it); a failure is an :class:`InstructionFileWriteError`
        that names the object and can write it again.

        Why the object goes first: written the other way round, a failed (or never sent)
        object PUT after a successful instruction-file PUT would leave the *previous*
        object of that name beside an instruction file that holds another data key, and
        that object, which the caller never meant to touch, would be unreadable for good.
        Object first, a failure leaves the new object unreadable until its instruction file
        is written, with everything needed to write it in the error (or in the caller's
        hands, to repeat the call). A process that dies between the two writes loses the
        new object's key: its plaintext is still with the caller. A later write (the
        error's, or a repeated Complete) first checks that the object is still the one
        stored: another writer's newer object keeps its own instruction file.
        """

        def write(again: bool = True) -> None:
            if again and object_etag:
                try:
                    self.s3.head_object(
                        Bucket=bucket,
                        Key=key,
                        **_s3args.forward("head", {**put_args, "IfMatch": object_etag}),
                    )
                except ClientError as exc:
                    if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 412:
                        raise WriteConflictError(
                            "the object was replaced since it was stored; its instruction file "
                            "is not written, so the newer object keeps its own",
                            bucket=bucket,
                            key=key,
                        ) from None
                    raise
            self.put_instruction_file(bucket, key, fields, put_args)

        try:
            with cleanup():  # an async call cancelled now must not leave the object keyless
                write(again=retry)
        except (ClientError, BotoCoreError) as exc:
            raise InstructionFileWriteError(
                f"the object was stored, but its instruction file "
                f"{key}{md.INSTRUCTION_FILE_SUFFIX}, which holds its wrapped data key, could "
                f"not be written ({exc}); the object is unreadable until it is: call "
                "write_instruction_file() on this error, or repeat the upload",
                write=write,
                cause=exc,
                bucket=bucket,
                key=key,
            ) from exc

    def delete_instruction_file(self, bucket: str, key: str, args: Mapping[str, Any]) -> None:
        delete_instruction_file(self.s3, bucket, key, args)

    def copy_instruction_file(
        self,
        source_bucket: str,
        source_key: str,
        bucket: str,
        key: str,
        args: Mapping[str, Any],
        *,
        required: bool,
    ) -> None:
        """Copy the instruction file of ``source_key`` beside ``key``; a missing one is an
        error only when ``required`` (the source's metadata said it has one)."""
        try:
            self.s3.copy_object(
                Bucket=bucket,
                Key=f"{key}{md.INSTRUCTION_FILE_SUFFIX}",
                CopySource={
                    "Bucket": source_bucket,
                    "Key": f"{source_key}{md.INSTRUCTION_FILE_SUFFIX}",
                },
                **_s3args.forward("instruction_copy", args),
            )
        except ClientError as exc:
            if required or not _s3args.is_not_found(exc):
                raise

    # ------------------------------------------------------------ reading

    def head(self, bucket: str, key: str, args: Mapping[str, Any]) -> dict[str, Any]:
        """HEAD the object with the caller's arguments that apply to it."""
        return dict(self.s3.head_object(Bucket=bucket, Key=key, **_s3args.forward("head", args)))

    def content_metadata(
        self,
        bucket: str,
        key: str,
        metadata: Mapping[str, str],
        args: Mapping[str, Any],
        suffix: str | None = None,
    ) -> md.ContentMetadata:
        """The object's parsed crypto metadata (from ``metadata`` or its instruction file)."""
        return read_content_metadata(
            self.s3, bucket, key, metadata, suffix or self.instruction_file_suffix, args
        )

    def begin_decryptor(
        self,
        bucket: str,
        key: str,
        content: md.ContentMetadata,
        context: Mapping[str, str] | None,
    ) -> ObjectDecryptor:
        """Unwrap the data key of a parsed object under this store's settings."""
        with located(bucket, key):
            return begin_decryption(self.cmm, content, self.config, encryption_context=context)


def delete_instruction_file(
    s3: Any,
    bucket: str,
    key: str,
    args: Mapping[str, Any],
    suffix: str = md.INSTRUCTION_FILE_SUFFIX,
) -> None:
    """Delete the instruction file of ``key`` (needs no key; absent is fine)."""
    s3.delete_object(
        Bucket=bucket,
        Key=f"{key}{suffix}",
        **_s3args.forward("instruction_delete", args),
    )


def delete_object(s3: Any, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """DeleteObject, and the instruction file with the current version (needs no key)."""
    response = dict(s3.delete_object(**kwargs))
    if "VersionId" not in kwargs:
        delete_instruction_file(s3, kwargs["Bucket"], kwargs["Key"], kwargs)
    return response
