"""EncryptionClient: a boto3 S3 client that encrypts on the way up and decrypts on the way down.

This is a shell: it takes boto3's arguments, calls the per-object layer
(:mod:`s3cse._objects`, :mod:`s3cse._upload`, :mod:`s3cse._download`,
:mod:`s3cse._rewrap`) and the transfer orchestration, and shapes boto3's responses. It
holds no crypto and no format knowledge of its own.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from . import _rewrap, _s3args, transfer
from ._body import DecryptedBody
from ._download import decrypt_stream, plaintext_body, read_chunks, without_redundant_checksum
from ._objects import ObjectStore, delete_object, not_encrypted_error, read_content_metadata
from ._upload import MultipartUpload, plaintext_source, put_object
from .batch._prefix import ReencryptSummary, rewrap_prefix
from .core import metadata as md
from .core.ciphers import plan_range
from .core.envelope import (
    CryptoConfig,
    MaterialsSource,
    as_cmm,
    begin_ranged_decryption,
)
from .core.keyrings.base import Keyring
from .core.materials import CryptoMaterialsManager
from .core.suites import AlgorithmSuite, CommitmentPolicy
from .errors import (
    ConfigurationError,
    NotEncryptedError,
    RangeNotAllowedError,
    UnexpectedResponseError,
    UnsafeOperationError,
    located,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["DEFAULT_BUFFER_SIZE", "EncryptionClient", "ReencryptSummary", "read_content_metadata"]

log = logging.getLogger(__name__)

#: Objects up to this size are authenticated in memory; larger ones spool ciphertext to disk.
#: Not higher: glibc serves blocks over 32 MiB with fresh mmap()ed pages, whose page
#: faults made in-memory reads of 32-64 MiB objects 25-40% slower than the spool here.
DEFAULT_BUFFER_SIZE = 16 * 1024 * 1024
_DEFAULT_POLICY = CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT
#: Encrypted multipart uploads one client keeps open (each holds its cipher state and its
#: last encrypted part, 5 MiB or more, for a resend); the oldest are forgotten past this.
MAX_OPEN_UPLOADS = 64

_SAFE_ALTERNATIVE = {
    "upload_part_copy": (
        "copies raw bytes into a multipart upload outside the encryption stream; "
        "use copy_object, or put_object/upload_file to re-encrypt"
    ),
    "generate_presigned_post": "lets a browser upload plaintext; upload through put_object",
    "copy": "copies with UploadPartCopy and drops the crypto metadata; use copy_object",
    "select_object_content": "runs SQL on the server, which only has ciphertext; use get_object",
    "rename_object": (
        "renames the object but not its instruction file, which must move with it; use "
        "copy_object and delete_object"
    ),
}
_PLAINTEXT_PRESIGN = frozenset(
    {"put_object", "upload_part", "create_multipart_upload", "complete_multipart_upload"}
)


def _close_quietly(body: Any) -> None:
    with contextlib.suppress(Exception):
        body.close()


class EncryptionClient:
    """A drop-in for a boto3 S3 client that encrypts objects client-side.

    ``put_object``/``get_object`` and friends take the same arguments as boto3's;
    every method not listed in the README's table passes through unchanged.
    """

    def __init__(
        self,
        s3_client: Any,
        keyring: Keyring | None = None,
        *,
        cmm: CryptoMaterialsManager | None = None,
        commitment_policy: CommitmentPolicy | str = _DEFAULT_POLICY,
        encryption_algorithm: AlgorithmSuite | None = None,
        enable_legacy_wrapping: bool = False,
        enable_legacy_unauthenticated_modes: bool = False,
        enable_delayed_authentication: bool = False,
        buffer_size: int | None = None,
        instruction_file_put: bool = False,
        instruction_file_suffix: str = md.INSTRUCTION_FILE_SUFFIX,
        allow_unencrypted_reads: bool = False,
    ):
        if isinstance(s3_client, EncryptionClient):
            raise ConfigurationError(
                "an EncryptionClient cannot wrap another EncryptionClient (objects would be "
                "encrypted twice); pass the plain boto3 S3 client"
            )
        if not all(hasattr(s3_client, m) for m in ("put_object", "get_object")):
            raise ConfigurationError("s3_client must be a boto3 S3 client")
        if (keyring is None) == (cmm is None):
            raise ConfigurationError(
                "give exactly one of keyring= or cmm= (a keyring gets the default CMM)"
            )
        if enable_delayed_authentication and buffer_size is not None:
            raise ConfigurationError(
                "buffer_size sets how much ciphertext is authenticated in memory before "
                "plaintext is released; with enable_delayed_authentication=True nothing is "
                "buffered: drop one of the two settings"
            )
        if buffer_size is not None and buffer_size < 0:
            raise ConfigurationError("buffer_size must be a non-negative number of bytes")
        source: MaterialsSource = cmm if cmm is not None else keyring  # type: ignore[assignment]
        self._store = ObjectStore(
            s3=s3_client,
            cmm=as_cmm(source),
            config=CryptoConfig(
                commitment_policy=commitment_policy,
                encryption_algorithm=encryption_algorithm,
                enable_legacy_wrapping=enable_legacy_wrapping,
                enable_legacy_unauthenticated_modes=enable_legacy_unauthenticated_modes,
            ),
            instruction_file_put=instruction_file_put,
            instruction_file_suffix=instruction_file_suffix,
        )
        self._delayed = enable_delayed_authentication
        self._buffer_size = DEFAULT_BUFFER_SIZE if buffer_size is None else buffer_size
        self._allow_unencrypted = allow_unencrypted_reads
        self._uploads: dict[str, MultipartUpload] = {}
        self._uploads_lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"EncryptionClient({self._store.cmm!r}, policy={self.config.policy.value}, "
            f"writes={self.config.suite.name})"
        )

    @property
    def s3_client(self) -> S3Client:
        """The wrapped boto3 client (plaintext operations: use with care)."""
        return self._store.s3

    @property
    def config(self) -> CryptoConfig:
        return self._store.config

    @property
    def instruction_file_put(self) -> bool:
        """Whether new objects keep their crypto metadata in an instruction file."""
        return self._store.instruction_file_put

    # ------------------------------------------------------------ pass-through

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if name in _SAFE_ALTERNATIVE:
            raise UnsafeOperationError(
                f"{name} is not available on an EncryptionClient: it {_SAFE_ALTERNATIVE[name]}"
            )
        return getattr(self._store.s3, name)

    def generate_presigned_url(self, ClientMethod: str, *args: Any, **kwargs: Any) -> str:
        """Presigned URLs for reads pass through (they serve ciphertext); presigned
        writes are refused, since whoever uses them would upload plaintext."""
        if ClientMethod in _PLAINTEXT_PRESIGN:
            raise UnsafeOperationError(
                f"a presigned {ClientMethod} URL would let its holder store plaintext; upload "
                "through EncryptionClient.put_object or upload_file instead"
            )
        return str(self._store.s3.generate_presigned_url(ClientMethod, *args, **kwargs))

    # ------------------------------------------------------------ put

    def put_object(self, **kwargs: Any) -> dict[str, Any]:
        """Encrypt ``Body`` and store it; takes boto3's PutObject arguments plus
        ``EncryptionContext`` (KMS) and ``InstructionFilePut``."""
        if "WriteOffsetBytes" in kwargs:
            raise UnsafeOperationError(
                "WriteOffsetBytes appends to an object, but an encrypted object is one GCM "
                "stream with its tag at the end: write the whole object again instead"
            ).at(kwargs.get("Bucket"), kwargs.get("Key"))
        return put_object(self._store, kwargs)

    # ------------------------------------------------------------ multipart API

    def create_multipart_upload(self, **kwargs: Any) -> dict[str, Any]:
        """Start an encrypted multipart upload (crypto metadata goes on the upload).

        Then send parts in order with :meth:`upload_part`, passing ``IsLastPart=True``
        with the final one (it carries the tag), and :meth:`complete_multipart_upload`.
        """
        upload, response = MultipartUpload.create(
            self._store, kwargs.pop("Bucket", None), kwargs.pop("Key", None), kwargs
        )
        with self._uploads_lock:
            self._uploads[upload.upload_id] = upload
            while len(self._uploads) > MAX_OPEN_UPLOADS:
                forgotten = next(iter(self._uploads))
                log.warning(
                    "forgetting encrypted multipart upload %s (more than %d open in one client)",
                    forgotten,
                    MAX_OPEN_UPLOADS,
                )
                del self._uploads[forgotten]
        return response

    def _upload(self, kwargs: Mapping[str, Any]) -> MultipartUpload:
        with self._uploads_lock:
            upload = self._uploads.get(kwargs.get("UploadId", ""))
        if upload is None:
            raise ConfigurationError(
                f"upload {kwargs.get('UploadId')} is not open in this EncryptionClient: it was "
                "started by another client, already completed or aborted, or forgotten (a "
                f"client keeps at most {MAX_OPEN_UPLOADS} open uploads, each with its last "
                "encrypted part); encrypted multipart uploads must be created, continued and "
                "completed by one client"
            ).at(kwargs.get("Bucket"), kwargs.get("Key"))
        return upload

    def upload_part(self, **kwargs: Any) -> dict[str, Any]:
        """Encrypt and upload the next part; ``IsLastPart=True`` marks the final one.

        Parts must come in order (1, 2, 3, ...), each but the last a multiple of 16 bytes
        (S3 also wants at least 5 MiB). botocore's retries resend the identical ciphertext,
        and so does calling upload_part again with the last part's number and bytes.
        """
        upload = self._upload(kwargs)
        last = bool(kwargs.pop("IsLastPart", False))
        with located(upload.bucket, upload.key):
            _s3args.refuse_plaintext_checksums(kwargs)
            source, _ = plaintext_source(kwargs.pop("Body", b""))
        kwargs.pop("ContentLength", None)
        kwargs["Body"] = upload.encrypt_part(int(kwargs["PartNumber"]), source.read(), last=last)
        return dict(self._store.s3.upload_part(**kwargs))

    def complete_multipart_upload(self, **kwargs: Any) -> dict[str, Any]:
        """Complete the upload (refused if the part with the tag was never sent), then
        write the instruction file if the upload uses one."""
        upload = self._upload(kwargs)
        response = upload.complete([], kwargs)
        with self._uploads_lock:
            self._uploads.pop(upload.upload_id, None)
        return response

    def abort_multipart_upload(self, **kwargs: Any) -> dict[str, Any]:
        """Abort the upload and forget its encryption state."""
        with self._uploads_lock:
            self._uploads.pop(kwargs.get("UploadId", ""), None)
        return dict(self._store.s3.abort_multipart_upload(**kwargs))

    # ------------------------------------------------------------ get

    def head_encryption(self, **kwargs: Any) -> md.ContentMetadata:
        """Parse an object's crypto metadata (no key needed): for ``inspect`` and ``ls``."""
        suffix = kwargs.pop("InstructionFileSuffix", None)
        bucket, key = kwargs.pop("Bucket"), kwargs.pop("Key")
        head = self._store.head(bucket, key, kwargs)
        return self._store.content_metadata(bucket, key, head.get("Metadata", {}), kwargs, suffix)

    def get_object(self, **kwargs: Any) -> dict[str, Any]:
        """Fetch and decrypt; the response has boto3's shape with a plaintext ``Body``.

        Takes boto3's GetObject arguments plus ``EncryptionContext`` (KMS) and
        ``InstructionFileSuffix``. No plaintext is released before the tag verifies,
        unless the client was built with ``enable_delayed_authentication=True``.
        """
        bucket, key = kwargs["Bucket"], kwargs["Key"]
        context = kwargs.pop("EncryptionContext", None)
        suffix = kwargs.pop("InstructionFileSuffix", None)
        if "Range" in kwargs or "PartNumber" in kwargs:
            return self._get_range(kwargs, context, suffix)
        response: dict[str, Any] = dict(self._store.s3.get_object(**kwargs))
        body = response["Body"]
        try:
            with located(bucket, key):
                if response.get("ContentRange"):
                    raise UnexpectedResponseError(
                        f"S3 answered with Content-Range {response['ContentRange']!r} to a "
                        "request for the whole object"
                    )
                try:
                    content = self._store.content_metadata(
                        bucket, key, response.get("Metadata", {}), kwargs, suffix
                    )
                except NotEncryptedError:
                    if self._allow_unencrypted:
                        return response
                    raise not_encrypted_error() from None
                decryptor = self._store.begin_decryptor(bucket, key, content, context)
                announced = response.get("ContentLength")
                ciphertext_length = None if announced is None else int(announced)
                log.debug(
                    "get s3://%s/%s: V%d %s, %s, %s bytes, %s",
                    bucket,
                    key,
                    int(content.version),
                    content.suite.name,
                    content.wrap_algorithm.value,
                    ciphertext_length,
                    "delayed authentication"
                    if self._delayed
                    else (
                        "in memory"
                        if ciphertext_length is not None
                        and ciphertext_length - content.suite.tag_length <= self._buffer_size
                        else "spooled"
                    ),
                )
                response["Body"] = plaintext_body(
                    body,
                    ciphertext_length,
                    decryptor,
                    bucket,
                    key,
                    delayed=self._delayed,
                    buffer_size=self._buffer_size,
                )
        except BaseException:
            _close_quietly(body)
            raise
        plaintext_length = response["Body"].content_length
        if plaintext_length is None:
            response.pop("ContentLength", None)
        else:
            response["ContentLength"] = plaintext_length
        _s3args.strip_response_checksums(response)
        return response

    def _get_range(
        self, kwargs: dict[str, Any], context: Mapping[str, str] | None, suffix: str | None
    ) -> dict[str, Any]:
        bucket, key = kwargs["Bucket"], kwargs["Key"]
        with located(bucket, key):
            if not self.config.enable_legacy_unauthenticated_modes:
                raise RangeNotAllowedError(
                    "ranged reads of encrypted objects cannot be authenticated (the tag covers "
                    "the whole object); build the client with "
                    "enable_legacy_unauthenticated_modes=True to allow them, or read the whole "
                    "object"
                )
            if "PartNumber" in kwargs:
                raise RangeNotAllowedError(
                    "PartNumber reads return ciphertext parts without their key stream "
                    "position; use Range= instead"
                )
            head = self._store.head(bucket, key, kwargs)
            size = int(head["ContentLength"])
            plan = plan_range(kwargs["Range"], size)
            content = self._store.content_metadata(
                bucket, key, head.get("Metadata", {}), kwargs, suffix
            )
            if head.get("ETag"):
                # The metadata we used must belong to the bytes we fetch.
                kwargs.setdefault("IfMatch", head["ETag"])
            if plan is None:
                if content.suite.cipher != "GCM":
                    raise RangeNotAllowedError("ranged reads need an AES-GCM object")
                # Let S3 give its own answer for an unsatisfiable range (416 InvalidRange).
                kwargs["Range"] = f"bytes={size}-"
                unexpected = self._store.s3.get_object(**kwargs)  # answers 416 ...
                _close_quietly(unexpected["Body"])  # ... else the object changed meanwhile
                raise UnexpectedResponseError(
                    "the object changed while a ranged read was planned; retry the read"
                )
            decryptor = begin_ranged_decryption(
                self._store.cmm, content, plan, self.config, encryption_context=context
            )
            kwargs["Range"] = plan.fetch_range
            response: dict[str, Any] = dict(self._store.s3.get_object(**kwargs))
            body = response["Body"]
            expected = f"bytes {plan.fetch_first}-{plan.fetch_last}/{size}"
            if response.get("ContentRange") != expected:
                _close_quietly(body)
                raise UnexpectedResponseError(
                    f"S3 answered the ranged read with Content-Range "
                    f"{response.get('ContentRange')!r}, expected {expected!r}"
                )
        # A stored checksum is of the whole object and cannot check a range (AWS sends
        # none for ranges; stores that do would fail every ranged read).
        body = without_redundant_checksum(body)
        response["Body"] = DecryptedBody(
            decrypt_stream(read_chunks(body), decryptor, bucket, key), plan.length, body.close
        )
        response["ContentLength"] = plan.length
        response["ContentRange"] = plan.content_range
        _s3args.strip_response_checksums(response)
        return response

    # ------------------------------------------------------------ delete

    def delete_object(self, **kwargs: Any) -> dict[str, Any]:
        """Delete the object and its instruction file (when deleting the current version)."""
        return delete_object(self._store.s3, kwargs)

    def delete_objects(self, **kwargs: Any) -> dict[str, Any]:
        """Delete the objects and their instruction files; the response lists the objects."""
        delete = dict(kwargs.pop("Delete"))
        objects = list(delete.get("Objects", []))
        suffix = md.INSTRUCTION_FILE_SUFFIX
        extra_keys = {
            f"{o['Key']}{suffix}"
            for o in objects
            if "VersionId" not in o and not o["Key"].endswith(suffix)
        }
        everything = objects + [{"Key": k} for k in sorted(extra_keys)]
        merged: dict[str, Any] = {"Deleted": [], "Errors": []}
        for start in range(0, len(everything), 1000):
            batch = dict(delete, Objects=everything[start : start + 1000])
            response = self._store.s3.delete_objects(Delete=batch, **kwargs)  # type: ignore[arg-type]
            merged["ResponseMetadata"] = response.get("ResponseMetadata", {})
            merged["Deleted"] += [
                d for d in response.get("Deleted", []) if d.get("Key") not in extra_keys
            ]
            merged["Errors"] += response.get("Errors", [])
        if not merged["Errors"]:
            del merged["Errors"]
        return merged

    # ------------------------------------------------------------ copy

    def copy_object(self, **kwargs: Any) -> dict[str, Any]:
        """Copy an object so that the copy stays readable: the instruction file is copied
        too, and ``MetadataDirective='REPLACE'`` replaces only the user's metadata."""
        source = kwargs["CopySource"]
        if isinstance(source, str):
            src_bucket, _, src_key = source.lstrip("/").partition("/")
            src_version = None
            if "?versionId=" in src_key:
                src_key, _, src_version = src_key.partition("?versionId=")
        else:
            src_bucket, src_key, src_version = (
                source["Bucket"],
                source["Key"],
                source.get("VersionId"),
            )
        head_args = _s3args.copy_source_head(kwargs)
        if src_version:
            head_args["VersionId"] = src_version
        head = self._store.head(src_bucket, src_key, head_args)
        source_metadata = {k.lower(): v for k, v in head.get("Metadata", {}).items()}
        if kwargs.get("MetadataDirective") == "REPLACE":
            with located(kwargs.get("Bucket"), kwargs.get("Key")):
                user = self._store.check_user_metadata(kwargs.get("Metadata"))
            crypto = {k: v for k, v in source_metadata.items() if k in md.crypto_metadata_keys()}
            kwargs["Metadata"] = {**user, **crypto}
        response = dict(self._store.s3.copy_object(**kwargs))
        if md.needs_instruction_file(source_metadata):  # a version reads the current one too
            self._store.copy_instruction_file(
                src_bucket,
                src_key,
                kwargs["Bucket"],
                kwargs["Key"],
                kwargs,
                required=md.has_crypto_metadata(source_metadata),
            )
        return response

    # ------------------------------------------------------------ key rotation

    def reencrypt(
        self,
        Bucket: str,
        Key: str,
        new_keyring: MaterialsSource,
        instruction_file_suffix: str | None = None,
        *,
        EncryptionContext: Mapping[str, str] | None = None,
        NewEncryptionContext: Mapping[str, str] | None = None,
        verify: bool = False,
        **extra: Any,
    ) -> str:
        """Re-wrap the object's data key under ``new_keyring``; the content is untouched.

        Instruction-file objects get a new instruction file (``instruction_file_suffix``
        writes it under another name, keeping the old one); metadata objects have their
        metadata rewritten in place with CopyObject. Returns ``"rotated"``, or
        ``"skipped"`` when ``new_keyring`` already unwraps the data key, or
        ``"instruction-file"`` when ``Key`` is the instruction file of an object beside it.
        ``verify=True`` first reads the whole object and checks its tag
        (:class:`IntegrityError` for a damaged one). Writes are conditional on what was
        read: :class:`WriteConflictError` when another writer changed the object meanwhile.
        Metadata rewrites keep every attribute S3 reports (see the README); ``extra``
        takes SSE-C arguments, ``RequestPayer``, ``ExpectedBucketOwner`` and
        ``SSEKMSEncryptionContext``.
        """
        return _rewrap.reencrypt(
            self._store,
            Bucket,
            Key,
            new_keyring,
            instruction_file_suffix,
            encryption_context=EncryptionContext,
            new_encryption_context=NewEncryptionContext,
            extra=extra,
            verify=verify,
        )

    def reencrypt_prefix(
        self,
        Bucket: str,
        Prefix: str,
        new_keyring: MaterialsSource,
        *,
        max_workers: int = 8,
        progress: Callable[[str, str], Any] | None = None,
        EncryptionContext: Mapping[str, str] | None = None,
        NewEncryptionContext: Mapping[str, str] | None = None,
        verify: bool = False,
        dryrun: bool = False,
        **extra: Any,
    ) -> ReencryptSummary:
        """Rotate every object under ``Prefix``: concurrent, resumable (objects already
        under the new key are skipped), with ``progress(key, status)`` after each. Every
        listed key is accounted for in the summary; one object's failure, whatever it
        is, is reported there and the run goes on. ``dryrun``: read and decide as a run
        would (``done`` lists what would be re-encrypted), write nothing."""
        return rewrap_prefix(
            self._store,
            Bucket,
            Prefix,
            new_keyring,
            workers=max_workers,
            progress=progress,
            encryption_context=EncryptionContext,
            new_encryption_context=NewEncryptionContext,
            request_args=extra,
            verify=verify,
            dryrun=dryrun,
        )

    # ------------------------------------------------------------ managed transfers

    def upload_fileobj(
        self,
        Fileobj: Any,
        Bucket: str,
        Key: str,
        ExtraArgs: Mapping[str, Any] | None = None,
        Callback: Callable[[int], Any] | None = None,
        Config: Any = None,
    ) -> None:
        """Encrypt a readable file object and upload it (boto3's signature): one put below
        ``Config.multipart_threshold``, else parallel multipart, aborted on any failure."""
        transfer.upload(
            self._store,
            Fileobj,
            Bucket,
            Key,
            extra_args=ExtraArgs,
            callback=Callback,
            config=Config,
        )

    def upload_file(
        self,
        Filename: str,
        Bucket: str,
        Key: str,
        ExtraArgs: Mapping[str, Any] | None = None,
        Callback: Callable[[int], Any] | None = None,
        Config: Any = None,
    ) -> None:
        """Encrypt a local file and upload it (boto3's signature)."""
        with open(Filename, "rb") as f:
            self.upload_fileobj(f, Bucket, Key, ExtraArgs, Callback, Config)

    def download_fileobj(
        self,
        Bucket: str,
        Key: str,
        Fileobj: Any,
        ExtraArgs: Mapping[str, Any] | None = None,
        Callback: Callable[[int], Any] | None = None,
        Config: Any = None,
    ) -> None:
        """Download, verify and decrypt into a writable file object (boto3's signature).

        ``Fileobj`` receives only verified plaintext: the ciphertext is fetched with
        parallel ranged GETs into a temporary spool and authenticated first (unless the
        client uses delayed authentication)."""
        self._download(Bucket, Key, Fileobj, ExtraArgs, Callback, Config, private=False)

    def download_file(
        self,
        Bucket: str,
        Key: str,
        Filename: str,
        ExtraArgs: Mapping[str, Any] | None = None,
        Callback: Callable[[int], Any] | None = None,
        Config: Any = None,
    ) -> None:
        """Download to ``Filename``: decrypted into a temporary file beside it and renamed
        only after the tag verified, so a failure leaves no partial file."""
        with transfer.replacing_file(Filename) as f:
            self._download(Bucket, Key, f, ExtraArgs, Callback, Config, private=True)

    def _download(
        self,
        bucket: str,
        key: str,
        sink: Any,
        extra_args: Mapping[str, Any] | None,
        callback: Callable[[int], Any] | None,
        config: Any,
        *,
        private: bool,
    ) -> None:
        transfer.download(
            self._store,
            bucket,
            key,
            sink,
            extra_args=extra_args,
            callback=callback,
            config=config,
            sink_is_private=private,
            delayed=self._delayed,
            allow_unencrypted=self._allow_unencrypted,
        )
