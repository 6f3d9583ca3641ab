"""EncryptionClient: a boto3 S3 client that encrypts on the way up and decrypts on the way down.

This is a shell: it moves bytes and metadata between boto3 and the core and holds
no crypto and no format knowledge of its own.
"""

from __future__ import annotations

import base64
import collections
import concurrent.futures
import contextlib
import contextvars
import dataclasses
import io
import logging
import os
import tempfile
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from botocore.exceptions import ClientError
from botocore.httpchecksum import StreamingChecksumBody
from botocore.response import StreamingBody

from ._body import DecryptedBody, readinto_exactly
from ._bridge import LOOP
from ._spool import ciphertext_spool, close_in_background, spool_chunks, trim
from .core import metadata as md
from .core.ciphers import MultipartEncryptor, plan_range
from .core.envelope import (
    CryptoConfig,
    MaterialsSource,
    ObjectDecryptor,
    ObjectEncryptor,
    as_cmm,
    begin_decryption,
    begin_encryption,
    begin_ranged_decryption,
    can_unwrap,
    rewrap,
)
from .core.keyrings.base import Keyring
from .core.materials import CryptoMaterialsManager
from .core.suites import GCM_MAX_PLAINTEXT_LENGTH, AlgorithmSuite, CommitmentPolicy
from .errors import (
    ConfigurationError,
    IntegrityError,
    MalformedMetadataError,
    MultipartSequenceError,
    NotEncryptedError,
    PlaintextTooLargeError,
    RangeNotAllowedError,
    S3CSEError,
    UnsafeOperationError,
)

__all__ = ["DEFAULT_BUFFER_SIZE", "EncryptionClient", "ReencryptSummary", "read_content_metadata"]

log = logging.getLogger(__name__)

#: Objects up to this size are authenticated in memory; larger ones spool ciphertext to disk.
#: Not higher: glibc serves blocks over 32 MiB with fresh mmap()ed pages, whose page
#: faults made in-memory reads of 32-64 MiB objects 25-40% slower than the spool here.
DEFAULT_BUFFER_SIZE = 16 * 1024 * 1024
_CHUNK = 1024 * 1024
_DEFAULT_POLICY = CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT
_SPOOL_IN_MEMORY = 8 * 1024 * 1024
_TAG = 16

# Caller-computed integrity values describe the plaintext, never the ciphertext we send.
_PLAINTEXT_CHECKSUM_ARGS = (
    "ContentMD5",
    "ChecksumCRC32",
    "ChecksumCRC32C",
    "ChecksumCRC64NVME",
    "ChecksumSHA1",
    "ChecksumSHA256",
)
_RESPONSE_CHECKSUMS = (
    "ChecksumCRC32",
    "ChecksumCRC32C",
    "ChecksumCRC64NVME",
    "ChecksumSHA1",
    "ChecksumSHA256",
    "ChecksumType",
)
_SSE_C_ARGS = ("SSECustomerAlgorithm", "SSECustomerKey", "SSECustomerKeyMD5")
_HEAD_ARGS = (
    "Bucket",
    "Key",
    "VersionId",
    "IfMatch",
    "IfNoneMatch",
    "IfModifiedSince",
    "IfUnmodifiedSince",
    "ExpectedBucketOwner",
    "RequestPayer",
    *_SSE_C_ARGS,
)
_KEPT_ON_REWRITE = (
    "ContentType",
    "CacheControl",
    "ContentDisposition",
    "ContentEncoding",
    "ContentLanguage",
    "Expires",
    "WebsiteRedirectLocation",
)

_SAFE_ALTERNATIVE = {
    "upload_part_copy": (
        "copies raw bytes into a multipart upload outside the encryption stream; "
        "use copy_object, or put_object/upload_file to re-encrypt"
    ),
    "generate_presigned_post": "lets a browser upload plaintext; upload through put_object",
    "copy": "copies with UploadPartCopy and drops the crypto metadata; use copy_object",
    "select_object_content": "runs SQL on the server, which only has ciphertext; use get_object",
}
_PLAINTEXT_PRESIGN = frozenset(
    {"put_object", "upload_part", "create_multipart_upload", "complete_multipart_upload"}
)


@dataclasses.dataclass
class _MultipartState:
    multipart: MultipartEncryptor
    instruction: dict[str, str] | None
    create_args: dict[str, Any]
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    #: (part number, CRC32 of its plaintext, its ciphertext): a failed part can be resent
    last_part: tuple[int, int, bytes] | None = None


@dataclasses.dataclass
class ReencryptSummary:
    """What :meth:`EncryptionClient.reencrypt_prefix` did."""

    done: list[str] = dataclasses.field(default_factory=list)
    skipped: list[str] = dataclasses.field(default_factory=list)
    not_encrypted: list[str] = dataclasses.field(default_factory=list)
    failed: list[tuple[str, str]] = dataclasses.field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"{len(self.done)} re-encrypted, {len(self.skipped)} already under the new key, "
            f"{len(self.not_encrypted)} not encrypted, {len(self.failed)} failed"
        )


class _EncryptingReader(io.RawIOBase):
    """A file-like body for botocore: plaintext in, ``ciphertext || tag`` out.

    botocore may rewind the body (retries, checksum and signature passes); a rewind
    replays the same plaintext from the source through the same key and IV, which
    yields identical ciphertext. That is checked: a running CRC32 of the ciphertext,
    recorded per chunk on the first pass, must match on every later pass before a
    chunk is handed out, or two plaintexts would be sent under one GCM nonce.

    While botocore hashes or sends one chunk, a helper thread reads, encrypts and
    checks the next (file reads and CRC32 release the GIL, as do botocore's SHA-256
    and socket writes): two chunk buffers take turns.
    """

    def __init__(self, source: Any, length: int, encryptor: ObjectEncryptor):
        super().__init__()
        self._source = source
        self._start = source.tell()
        self._length = length
        self._encryptor = encryptor
        self._in = bytearray(min(_CHUNK, length))
        self._out = [bytearray(_CHUNK + 32), bytearray(_CHUNK + 32)]
        self._pending = memoryview(b"")
        self._consumed = 0  # plaintext bytes taken from the source
        self._position = 0  # ciphertext bytes handed out
        self._tag_sent = False
        self._crc = 0  # CRC32 of this pass's ciphertext so far
        self._digests: list[int] = []  # self._crc after each chunk of the first pass
        self._chunk = 0
        self._checksum: int | None = None  # CRC32 of the whole body, once a pass completed
        # Read ahead only where a thread can help: bodies of several chunks, and not on
        # an async client's worker (which reads the body in one go, pacing the loop).
        self._ahead = length > 2 * _CHUNK and LOOP.get() is None
        self._helper: concurrent.futures.ThreadPoolExecutor | None = None
        self._next: concurrent.futures.Future[memoryview | None] | None = None

    def __len__(self) -> int:
        return self._length + _TAG

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        target = {io.SEEK_SET: offset, io.SEEK_CUR: self._position + offset}.get(
            whence, len(self) + offset
        )
        if target == self._position:
            return target
        if target != 0:
            raise io.UnsupportedOperation("an encrypting body can only be rewound to its start")
        self._rewind()
        return 0

    def close(self) -> None:
        self._stop_helper()
        super().close()

    def _stop_helper(self) -> None:
        """Wait for the chunk being prepared (its result is dropped) and end the thread."""
        if self._next is not None:
            with contextlib.suppress(BaseException):
                self._next.result()
            self._next = None
        if self._helper is not None:
            self._helper.shutdown(wait=True)
            self._helper = None

    def _rewind(self) -> None:
        self._stop_helper()
        self._source.seek(self._start)
        self._encryptor.rewind()
        self._chunk = self._crc = 0
        self._pending = memoryview(b"")
        self._consumed = self._position = 0
        self._tag_sent = False

    def checksum_crc32(self) -> int:
        """The CRC32 of the whole body; runs one pass for it unless a pass already completed.

        That pass records the replay check, so botocore's later passes cost no more.
        """
        if self._checksum is None:
            self._rewind()
            while self._produce() is not None:
                pass
            self._rewind()
        assert self._checksum is not None
        return self._checksum

    def _record(self, ciphertext: Any) -> None:
        self._crc = zlib.crc32(ciphertext, self._crc)
        if self._chunk < len(self._digests):
            if self._digests[self._chunk] != self._crc:
                raise IntegrityError(
                    "the upload source changed between botocore's passes over the body; "
                    "refusing to send different bytes encrypted under the same IV"
                )
        else:
            self._digests.append(self._crc)
        self._chunk += 1

    def _produce(self) -> memoryview | None:
        """The next chunk of ciphertext (the tag last), checked; None at the end."""
        if self._consumed < self._length:
            # Whole chunks, so every pass cuts the plaintext at the same places.
            want = memoryview(self._in)[: min(_CHUNK, self._length - self._consumed)]
            data = want[: readinto_exactly(self._source, want)]
            if not data:
                raise IntegrityError(
                    f"the upload source ended after {self._consumed} of {self._length} bytes; "
                    "it was changed or truncated while being read"
                )
            out = self._out[self._chunk % 2]
            n = self._encryptor.update_into(data, out)
            chunk = memoryview(out)[:n]
            self._record(chunk)  # before any of it leaves
            self._consumed += len(data)
            return chunk
        if not self._tag_sent:
            self._tag_sent = True
            tag = memoryview(self._encryptor.finalize())
            self._record(tag)
            self._checksum = self._crc
            return tag
        return None

    def _fill(self) -> bool:
        """Make the next chunk ``self._pending``; False at the end of the body."""
        if self._next is not None:
            future, self._next = self._next, None
            chunk = future.result()
        else:
            chunk = self._produce()
        if chunk is None:
            self._stop_helper()
            return False
        self._pending = chunk
        if self._ahead and not self._tag_sent:
            if self._helper is None:
                self._helper = concurrent.futures.ThreadPoolExecutor(
                    1, thread_name_prefix="s3cse-encrypt"
                )
            self._next = self._helper.submit(self._produce)
        return True

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            size = len(self) - self._position
        parts = []
        while size > 0:
            if not len(self._pending) and not self._fill():
                break
            piece = self._pending[:size]
            parts.append(bytes(piece))
            self._pending = self._pending[len(piece) :]
            size -= len(piece)
        data = b"".join(parts)
        self._position += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(memoryview(buffer)))
        memoryview(buffer).cast("B")[: len(data)] = data
        return len(data)


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


def _checksum_is_a_separate_pass(s3: Any) -> bool:
    """Whether botocore puts a request checksum in a header, computed by reading the
    body before sending it (plain HTTP), rather than in a trailer while sending (HTTPS)."""
    endpoint = str(getattr(s3.meta, "endpoint_url", "") or "")
    signature = getattr(s3.meta.config, "signature_version", None)
    return not endpoint.startswith("https:") or signature == "s3"


def _plaintext_source(body: Any) -> tuple[Any, int | None]:
    """Return (readable file object, remaining length or None when unknown)."""
    if body is None:
        body = b""
    if isinstance(body, str):
        body = body.encode("utf-8")
    if isinstance(body, bytes | bytearray | memoryview):
        return io.BytesIO(body), len(body)
    if not hasattr(body, "read"):
        raise ConfigurationError(
            f"Body must be bytes, str or a readable file object, not {type(body).__name__}"
        )
    try:
        if body.seekable():
            start = body.tell()
            end = body.seek(0, io.SEEK_END)
            body.seek(start)
            return body, end - start
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both
        pass
    return body, None


def _load_instruction_file(
    s3: Any, bucket: str, key: str, suffix: str, args: Mapping[str, Any]
) -> dict[str, str] | None:
    extra = {k: v for k, v in args.items() if k in ("ExpectedBucketOwner", "RequestPayer")}
    try:
        response = s3.get_object(Bucket=bucket, Key=f"{key}{suffix}", **extra)
    except ClientError as exc:
        if _is_not_found(exc):
            return None
        raise
    with contextlib.closing(response["Body"]):
        return md.decode_instruction_file(response["Body"].read(64 * 1024 + 1))


def read_content_metadata(
    s3: Any,
    bucket: str,
    key: str,
    metadata: Mapping[str, str],
    suffix: str = md.INSTRUCTION_FILE_SUFFIX,
    args: Mapping[str, Any] | None = None,
) -> md.ContentMetadata:
    """Parse an object's crypto metadata from its S3 ``metadata``, fetching its
    instruction file when the metadata says so. Needs no key."""
    try:
        instruction = None
        if md.needs_instruction_file(metadata):
            instruction = _load_instruction_file(s3, bucket, key, suffix, args or {})
            if instruction is None and md.has_crypto_metadata(metadata):
                raise MalformedMetadataError(
                    f"the object's metadata points to an instruction file, but {key}{suffix} "
                    "does not exist"
                )
        return md.parse_metadata(metadata, instruction)
    except S3CSEError as exc:
        raise exc.at(bucket, key) from None


def _close_quietly(body: Any) -> None:
    with contextlib.suppress(Exception):
        body.close()


def _is_not_found(error: ClientError) -> bool:
    code = str(error.response.get("Error", {}).get("Code", ""))
    return code in ("NoSuchKey", "404", "NotFound")


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
        self._config = CryptoConfig(
            commitment_policy=commitment_policy,
            encryption_algorithm=encryption_algorithm,
            enable_legacy_wrapping=enable_legacy_wrapping,
            enable_legacy_unauthenticated_modes=enable_legacy_unauthenticated_modes,
        )
        self._s3 = s3_client
        source: MaterialsSource = cmm if cmm is not None else keyring  # type: ignore[assignment]
        self._cmm = as_cmm(source)
        self._delayed = enable_delayed_authentication
        self._buffer_size = DEFAULT_BUFFER_SIZE if buffer_size is None else buffer_size
        self._instruction_file_put = instruction_file_put
        self._suffix = instruction_file_suffix
        self._allow_unencrypted = allow_unencrypted_reads
        self._uploads: dict[str, _MultipartState] = {}
        self._uploads_lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"EncryptionClient({self._cmm!r}, policy={self._config.policy.value}, "
            f"writes={self._config.suite.name})"
        )

    @property
    def s3_client(self) -> Any:
        """The wrapped boto3 client (plaintext operations: use with care)."""
        return self._s3

    @property
    def config(self) -> CryptoConfig:
        return self._config

    # ------------------------------------------------------------ pass-through

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if name in _SAFE_ALTERNATIVE:
            raise UnsafeOperationError(
                f"{name} is not available on an EncryptionClient: it {_SAFE_ALTERNATIVE[name]}"
            )
        return getattr(self._s3, name)

    def generate_presigned_url(self, ClientMethod: str, *args: Any, **kwargs: Any) -> str:
        """Presigned URLs for reads pass through (they serve ciphertext); presigned
        writes are refused, since whoever uses them would upload plaintext."""
        if ClientMethod in _PLAINTEXT_PRESIGN:
            raise UnsafeOperationError(
                f"a presigned {ClientMethod} URL would let its holder store plaintext; upload "
                "through EncryptionClient.put_object or upload_file instead"
            )
        return str(self._s3.generate_presigned_url(ClientMethod, *args, **kwargs))

    # ------------------------------------------------------------ put

    def _check_user_metadata(self, metadata: Mapping[str, str] | None) -> dict[str, str]:
        user = dict(metadata or {})
        reserved = md.crypto_metadata_keys()
        clashes = sorted(k for k in user if k.lower().removeprefix("x-amz-meta-") in reserved)
        if clashes:
            raise ConfigurationError(
                f"user metadata key(s) {', '.join(clashes)} are reserved for the encryption "
                "metadata; rename them"
            )
        return user

    def _begin_upload(
        self, bucket: Any, key: Any, args: Mapping[str, Any], length: int | None
    ) -> tuple[ObjectEncryptor, dict[str, Any], dict[str, str] | None]:
        """Start one object's encryption: returns (encryptor, S3 arguments carrying the crypto
        metadata, instruction-file fields or None). ``args`` are the caller's S3 arguments."""
        kwargs = dict(args)
        kwargs.update(Bucket=bucket, Key=key)
        context = kwargs.pop("EncryptionContext", None)
        use_file = bool(kwargs.pop("InstructionFilePut", self._instruction_file_put))
        kwargs.pop("ContentLength", None)
        try:
            for name in _PLAINTEXT_CHECKSUM_ARGS:
                if name in kwargs:
                    raise ConfigurationError(
                        f"{name} would describe the plaintext, but S3 receives ciphertext; drop "
                        "it and pass ChecksumAlgorithm='CRC32' to have the ciphertext checked"
                    )
            user_metadata = self._check_user_metadata(kwargs.get("Metadata"))
            if length is not None and length > GCM_MAX_PLAINTEXT_LENGTH:
                raise PlaintextTooLargeError(
                    f"the body is {length} bytes, over the AES-GCM limit of "
                    f"{GCM_MAX_PLAINTEXT_LENGTH} bytes (2^36 - 32) for one object"
                )
            encryptor = begin_encryption(
                self._cmm,
                self._config,
                encryption_context=context,
                instruction_file=use_file,
                plaintext_length=length,
            )
        except S3CSEError as exc:
            raise exc.at(bucket, key) from None
        kwargs["Metadata"] = {**user_metadata, **encryptor.metadata}
        return encryptor, kwargs, encryptor.instruction_file

    def put_object(self, **kwargs: Any) -> dict[str, Any]:
        """Encrypt ``Body`` and store it; takes boto3's PutObject arguments plus
        ``EncryptionContext`` (KMS) and ``InstructionFilePut``."""
        bucket, key = kwargs.get("Bucket"), kwargs.get("Key")
        raw_body = kwargs.pop("Body", b"")
        in_memory = raw_body is None or isinstance(raw_body, bytes | bytearray | str)
        try:
            source, length = _plaintext_source(raw_body)
        except S3CSEError as exc:
            raise exc.at(bucket, key) from None
        encryptor, kwargs, instruction = self._begin_upload(bucket, key, kwargs, length)
        log.debug(
            "put s3://%s/%s: %s, %s bytes, metadata in %s",
            bucket,
            key,
            encryptor.suite.name,
            "unknown" if length is None else length,
            "an instruction file" if instruction is not None else "the object",
        )
        if in_memory and length is not None and length <= _CHUNK:
            # Small in-memory bodies: encrypt once; botocore may read the body several
            # times (checksum, payload signature, send), and bytes cost nothing to reread.
            view = source.getbuffer()
            kwargs["Body"] = encryptor.update(view) + encryptor.finalize()
            view.release()
            kwargs["ContentLength"] = length + _TAG
            response = self._s3.put_object(**kwargs)
        elif length is not None:
            reader = _EncryptingReader(source, length, encryptor)
            try:
                if (
                    LOOP.get() is None  # the async client reads the body once, with its CRC32
                    and _checksum_is_a_separate_pass(self._s3)
                    and botocore_adds_crc32(self._s3, kwargs)
                ):
                    # botocore would read (and so encrypt) the body once just for its CRC32.
                    # Computing it here costs the same pass but also records the replay
                    # check its signature and send passes need anyway: one CRC pass fewer.
                    crc = reader.checksum_crc32()
                    kwargs["ChecksumCRC32"] = base64.b64encode(crc.to_bytes(4, "big")).decode()
                kwargs["Body"] = reader
                kwargs["ContentLength"] = length + _TAG
                response = self._s3.put_object(**kwargs)
            except S3CSEError as exc:  # the source changed or ended while being read
                raise exc.at(bucket, key) from None
            finally:
                reader.close()  # ends its read-ahead thread
        else:
            with self._spool_ciphertext(source, encryptor, bucket, key) as (spool, size):
                kwargs["Body"] = spool
                kwargs["ContentLength"] = size
                response = self._s3.put_object(**kwargs)
        if instruction is not None:
            self._put_instruction_file(bucket, key, instruction, kwargs)
        return dict(response)

    # ------------------------------------------------------------ multipart API

    def create_multipart_upload(self, **kwargs: Any) -> dict[str, Any]:
        """Start an encrypted multipart upload (crypto metadata goes on the upload).

        Then send parts in order with :meth:`upload_part`, passing ``IsLastPart=True``
        with the final one (it carries the tag), and :meth:`complete_multipart_upload`.
        """
        bucket, key = kwargs.get("Bucket"), kwargs.get("Key")
        encryptor, create_args, instruction = self._begin_upload(bucket, key, kwargs, None)
        response = dict(self._s3.create_multipart_upload(**create_args))
        with self._uploads_lock:
            self._uploads[response["UploadId"]] = _MultipartState(
                encryptor.multipart(), instruction, create_args
            )
        return response

    def _upload_state(self, upload_id: str, bucket: Any, key: Any) -> _MultipartState:
        with self._uploads_lock:
            state = self._uploads.get(upload_id)
        if state is None:
            raise ConfigurationError(
                f"upload {upload_id} was not started by this EncryptionClient; encrypted "
                "multipart uploads must be created, continued and completed by one client"
            ).at(bucket, key)
        return state

    def upload_part(self, **kwargs: Any) -> dict[str, Any]:
        """Encrypt and upload the next part; ``IsLastPart=True`` marks the final one.

        Parts must come in order (1, 2, 3, ...), each but the last a multiple of 16 bytes
        (S3 also wants at least 5 MiB). botocore's retries resend the identical ciphertext,
        and so does calling upload_part again with the last part's number and bytes.
        """
        bucket, key = kwargs.get("Bucket"), kwargs.get("Key")
        state = self._upload_state(kwargs["UploadId"], bucket, key)
        last = bool(kwargs.pop("IsLastPart", False))
        for name in _PLAINTEXT_CHECKSUM_ARGS:
            if name in kwargs:
                raise ConfigurationError(
                    f"{name} would describe the plaintext part; use ChecksumAlgorithm instead"
                ).at(bucket, key)
        source, _ = _plaintext_source(kwargs.pop("Body", b""))
        plaintext = source.read()
        kwargs.pop("ContentLength", None)
        number, digest = int(kwargs["PartNumber"]), zlib.crc32(plaintext)
        with state.lock:
            previous = state.last_part
            if previous is not None and previous[0] == number and previous[1] == digest:
                # The same part again (its upload failed): resend the identical ciphertext;
                # the GCM stream cannot go back to encrypt it a second time.
                kwargs["Body"] = previous[2]
            else:
                try:
                    kwargs["Body"] = state.multipart.encrypt_part(number, plaintext, last=last)
                except S3CSEError as exc:
                    raise exc.at(bucket, key) from None
                state.last_part = (number, digest, kwargs["Body"])
        return dict(self._s3.upload_part(**kwargs))

    def complete_multipart_upload(self, **kwargs: Any) -> dict[str, Any]:
        """Complete the upload (refused if the part with the tag was never sent), then
        write the instruction file if the upload uses one."""
        bucket, key = kwargs.get("Bucket"), kwargs.get("Key")
        state = self._upload_state(kwargs["UploadId"], bucket, key)
        if not state.multipart.finished:
            raise MultipartSequenceError(
                "the last part (upload_part(..., IsLastPart=True)) was never uploaded, so the "
                "object would have no authentication tag; upload it or abort the upload"
            ).at(bucket, key)
        response = dict(self._s3.complete_multipart_upload(**kwargs))
        with self._uploads_lock:
            self._uploads.pop(kwargs["UploadId"], None)
        if state.instruction is not None:
            self._put_instruction_file(bucket, key, state.instruction, state.create_args)
        return response

    def abort_multipart_upload(self, **kwargs: Any) -> dict[str, Any]:
        """Abort the upload and forget its encryption state."""
        with self._uploads_lock:
            self._uploads.pop(kwargs.get("UploadId", ""), None)
        return dict(self._s3.abort_multipart_upload(**kwargs))

    @contextlib.contextmanager
    def _spool_ciphertext(
        self, source: Any, encryptor: ObjectEncryptor, bucket: Any, key: Any
    ) -> Iterator[tuple[Any, int]]:
        """Encrypt a body of unknown length into a spool of *ciphertext* (memory, then disk)."""
        out = bytearray(_CHUNK + 32)
        with tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY) as spool:
            total = 0
            while True:
                data = source.read(_CHUNK)
                if not data:
                    break
                total += len(data)
                try:
                    n = encryptor.update_into(data, out)
                except S3CSEError as exc:
                    raise exc.at(bucket, key) from None
                spool.write(memoryview(out)[:n])
            spool.write(encryptor.finalize())
            spool.seek(0)
            yield spool, total + _TAG

    def _put_instruction_file(
        self,
        bucket: Any,
        key: Any,
        fields: Mapping[str, str],
        put_args: Mapping[str, Any],
        suffix: str = md.INSTRUCTION_FILE_SUFFIX,
    ) -> None:
        """Write ``<key><suffix>``: the instruction file of object ``key``."""
        extra = {
            k: put_args[k]
            for k in ("ServerSideEncryption", "SSEKMSKeyId", "ExpectedBucketOwner", "RequestPayer")
            if k in put_args
        }
        self._s3.put_object(
            Bucket=bucket,
            Key=f"{key}{suffix}",
            Body=md.encode_instruction_file(fields),
            Metadata=dict(md.INSTRUCTION_FILE_MARKER),
            ContentType="application/json",
            **extra,
        )

    # ------------------------------------------------------------ get

    def _content_metadata(
        self,
        bucket: str,
        key: str,
        metadata: Mapping[str, str],
        suffix: str,
        args: Mapping[str, Any],
    ) -> md.ContentMetadata:
        return read_content_metadata(self._s3, bucket, key, metadata, suffix, args)

    def _begin_decryptor(
        self, content: md.ContentMetadata, context: Mapping[str, str] | None
    ) -> ObjectDecryptor:
        """Unwrap the data key of a parsed object under this client's settings."""
        return begin_decryption(self._cmm, content, self._config, encryption_context=context)

    def head_encryption(self, **kwargs: Any) -> md.ContentMetadata:
        """Parse an object's crypto metadata (no key needed): for ``inspect`` and ``ls``."""
        suffix = kwargs.pop("InstructionFileSuffix", self._suffix)
        head = self._s3.head_object(**{k: v for k, v in kwargs.items() if k in _HEAD_ARGS})
        return read_content_metadata(
            self._s3, kwargs["Bucket"], kwargs["Key"], head.get("Metadata", {}), suffix, kwargs
        )

    def get_object(self, **kwargs: Any) -> dict[str, Any]:
        """Fetch and decrypt; the response has boto3's shape with a plaintext ``Body``.

        Takes boto3's GetObject arguments plus ``EncryptionContext`` (KMS) and
        ``InstructionFileSuffix``. No plaintext is released before the tag verifies,
        unless the client was built with ``enable_delayed_authentication=True``.
        """
        bucket, key = kwargs["Bucket"], kwargs["Key"]
        context = kwargs.pop("EncryptionContext", None)
        suffix = kwargs.pop("InstructionFileSuffix", self._suffix)
        if "Range" in kwargs or "PartNumber" in kwargs:
            return self._get_range(kwargs, context, suffix)
        response = dict(self._s3.get_object(**kwargs))
        body = response["Body"]
        try:
            if response.get("ContentRange"):
                raise IntegrityError(
                    f"S3 answered with Content-Range {response['ContentRange']!r} to a request "
                    "for the whole object"
                )
            try:
                content = self._content_metadata(
                    bucket, key, response.get("Metadata", {}), suffix, kwargs
                )
            except NotEncryptedError:
                if self._allow_unencrypted:
                    return response
                raise NotEncryptedError(
                    "the object is not client-side encrypted (no crypto metadata, no "
                    "instruction file); to read plaintext objects through this client, "
                    "build it with allow_unencrypted_reads=True"
                ) from None
            decryptor = begin_decryption(
                self._cmm, content, self._config, encryption_context=context
            )
            ciphertext_length = int(response.get("ContentLength", 0))
            log.debug(
                "get s3://%s/%s: V%d %s, %s, %d bytes, %s",
                bucket,
                key,
                int(content.version),
                content.suite.name,
                content.wrap_algorithm.value,
                ciphertext_length,
                "delayed authentication"
                if self._delayed
                else ("in memory" if ciphertext_length - _TAG <= self._buffer_size else "spooled"),
            )
            response["Body"] = self._plaintext_body(body, ciphertext_length, decryptor)
        except S3CSEError as exc:
            _close_quietly(body)
            raise exc.at(bucket, key) from None
        except BaseException:
            _close_quietly(body)
            raise
        plaintext_length = decryptor.plaintext_length(ciphertext_length)
        if plaintext_length is None:
            response.pop("ContentLength", None)
        else:
            response["ContentLength"] = plaintext_length
        for name in _RESPONSE_CHECKSUMS:
            response.pop(name, None)
        return response

    def _plaintext_body(
        self, body: Any, ciphertext_length: int, decryptor: ObjectDecryptor
    ) -> DecryptedBody:
        plaintext_length = decryptor.plaintext_length(ciphertext_length)
        if decryptor.authenticated:
            body = without_redundant_checksum(body)
        if self._delayed:
            return DecryptedBody(
                _decrypt_stream(_read_chunks(body, ciphertext_length), decryptor),
                plaintext_length,
                body.close,
            )
        if ciphertext_length - _TAG <= self._buffer_size:
            plaintext = _decrypt_in_memory(body, ciphertext_length, decryptor)
            _close_quietly(body)
            return DecryptedBody(iter([plaintext]), len(plaintext))
        spool = ciphertext_spool(ciphertext_length)  # get_object closes body if this raises
        try:
            _verify_into_spool(body, spool, decryptor)
        except BaseException:
            spool.close()
            raise
        finally:
            _close_quietly(body)
        trim(spool)
        return DecryptedBody(
            _decrypt_stream(spool_chunks(spool), decryptor.fresh()),
            plaintext_length,
            lambda: close_in_background(spool),
        )

    def _get_range(
        self, kwargs: dict[str, Any], context: Mapping[str, str] | None, suffix: str
    ) -> dict[str, Any]:
        bucket, key = kwargs["Bucket"], kwargs["Key"]
        if not self._config.enable_legacy_unauthenticated_modes:
            raise RangeNotAllowedError(
                "ranged reads of encrypted objects cannot be authenticated (the tag covers the "
                "whole object); build the client with enable_legacy_unauthenticated_modes=True "
                "to allow them, or read the whole object"
            ).at(bucket, key)
        if "PartNumber" in kwargs:
            raise RangeNotAllowedError(
                "PartNumber reads return ciphertext parts without their key stream position; "
                "use Range= instead"
            ).at(bucket, key)
        head = self._s3.head_object(**{k: v for k, v in kwargs.items() if k in _HEAD_ARGS})
        size = int(head["ContentLength"])
        try:
            plan = plan_range(kwargs["Range"], size)
            content = self._content_metadata(bucket, key, head.get("Metadata", {}), suffix, kwargs)
            if plan is None:
                if content.suite.cipher != "GCM":
                    raise RangeNotAllowedError("ranged reads need an AES-GCM object")
                # Let S3 give its own answer for an unsatisfiable range (416 InvalidRange).
                kwargs["Range"] = f"bytes={size}-"
                kwargs.setdefault("IfMatch", head.get("ETag"))
                self._s3.get_object(**kwargs)  # answers 416; anything else is not ours to pass on
                raise IntegrityError(
                    "the object changed while a ranged read was planned; retry the read"
                )
            decryptor = begin_ranged_decryption(
                self._cmm, content, plan, self._config, encryption_context=context
            )
        except S3CSEError as exc:
            raise exc.at(bucket, key) from None
        kwargs["Range"] = plan.fetch_range
        if "IfMatch" not in kwargs and head.get("ETag"):
            kwargs["IfMatch"] = head["ETag"]  # the metadata we used must belong to these bytes
        response = dict(self._s3.get_object(**kwargs))
        expected = f"bytes {plan.fetch_first}-{plan.fetch_last}/{size}"
        if response.get("ContentRange") != expected:
            _close_quietly(response["Body"])
            raise IntegrityError(
                f"S3 answered the ranged read with Content-Range {response.get('ContentRange')!r}, "
                f"expected {expected!r}"
            ).at(bucket, key)
        body = response["Body"]
        response["Body"] = DecryptedBody(
            _decrypt_stream(_read_chunks(body), decryptor), plan.length, body.close
        )
        response["ContentLength"] = plan.length
        response["ContentRange"] = plan.content_range
        for name in _RESPONSE_CHECKSUMS:
            response.pop(name, None)
        return response

    # ------------------------------------------------------------ delete

    def delete_object(self, **kwargs: Any) -> dict[str, Any]:
        """Delete the object and its instruction file (when deleting the current version)."""
        response = dict(self._s3.delete_object(**kwargs))
        if "VersionId" not in kwargs:
            extra = {k: kwargs[k] for k in ("ExpectedBucketOwner", "RequestPayer") if k in kwargs}
            self._s3.delete_object(
                Bucket=kwargs["Bucket"], Key=f"{kwargs['Key']}{md.INSTRUCTION_FILE_SUFFIX}", **extra
            )
        return response

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
            response = self._s3.delete_objects(Delete=batch, **kwargs)
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
        head_args: dict[str, Any] = {"Bucket": src_bucket, "Key": src_key}
        if src_version:
            head_args["VersionId"] = src_version
        for name in _SSE_C_ARGS:
            if f"CopySource{name}" in kwargs:
                head_args[name] = kwargs[f"CopySource{name}"]
        head = self._s3.head_object(**head_args)
        source_metadata = {k.lower(): v for k, v in head.get("Metadata", {}).items()}
        encrypted = md.has_crypto_metadata(source_metadata)
        instruction = md.needs_instruction_file(source_metadata)
        if kwargs.get("MetadataDirective") == "REPLACE":
            user = self._check_user_metadata(kwargs.get("Metadata"))
            crypto = {k: v for k, v in source_metadata.items() if k in md.crypto_metadata_keys()}
            kwargs["Metadata"] = {**user, **crypto}
        response = dict(self._s3.copy_object(**kwargs))
        if instruction and not src_version:
            try:
                self._s3.copy_object(
                    Bucket=kwargs["Bucket"],
                    Key=f"{kwargs['Key']}{md.INSTRUCTION_FILE_SUFFIX}",
                    CopySource={
                        "Bucket": src_bucket,
                        "Key": f"{src_key}{md.INSTRUCTION_FILE_SUFFIX}",
                    },
                )
            except ClientError as exc:
                if encrypted or not _is_not_found(exc):
                    raise
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
        **extra: Any,
    ) -> str:
        """Re-wrap the object's data key under ``new_keyring``; the content is untouched.

        Instruction-file objects get a new instruction file (``instruction_file_suffix``
        writes it under another name, keeping the old one); metadata objects have their
        metadata rewritten in place with CopyObject. Returns ``"rotated"``, or
        ``"skipped"`` when ``new_keyring`` already unwraps the data key.
        ``extra`` takes SSE-C arguments for objects stored with SSE-C.
        """
        head_args = {
            "Bucket": Bucket,
            "Key": Key,
            **{k: extra[k] for k in _SSE_C_ARGS if k in extra},
        }
        head = self._s3.head_object(**head_args)
        metadata = {k.lower(): v for k, v in head.get("Metadata", {}).items()}
        if "x-amz-crypto-instr-file" in metadata or (
            # Some stores (SeaweedFS) drop the empty marker value; the name and the
            # absence of crypto metadata still tell an instruction file.
            Key.endswith(md.INSTRUCTION_FILE_SUFFIX) and not md.has_crypto_metadata(metadata)
        ):
            return "instruction-file"
        try:
            content = self._content_metadata(Bucket, Key, metadata, self._suffix, extra)
            new_file = instruction_file_suffix not in (None, md.INSTRUCTION_FILE_SUFFIX)
            if not new_file and can_unwrap(
                new_keyring, content, self._config, encryption_context=NewEncryptionContext
            ):
                return "skipped"
            result = rewrap(
                self._cmm,
                new_keyring,
                content,
                self._config,
                encryption_context=EncryptionContext,
                new_encryption_context=NewEncryptionContext,
            )
        except S3CSEError as exc:
            raise exc.at(Bucket, Key) from None
        log.debug(
            "re-encrypt s3://%s/%s: %s -> %s",
            Bucket,
            Key,
            content.wrap_algorithm.value,
            result.content_metadata.wrap_algorithm.value,
        )
        if result.instruction_file is not None:
            suffix = instruction_file_suffix or md.INSTRUCTION_FILE_SUFFIX
            self._put_instruction_file(Bucket, Key, result.instruction_file, {}, suffix)
            return "rotated"
        user = {k: v for k, v in metadata.items() if k not in md.crypto_metadata_keys()}
        copy_args: dict[str, Any] = {
            "Bucket": Bucket,
            "Key": Key,
            "CopySource": {"Bucket": Bucket, "Key": Key},
            "MetadataDirective": "REPLACE",
            "Metadata": {**user, **result.metadata},
            "CopySourceIfMatch": head["ETag"],
        }
        for name in _KEPT_ON_REWRITE:
            if head.get(name):
                copy_args[name] = head[name]
        if head.get("ServerSideEncryption") and not head.get("SSECustomerAlgorithm"):
            copy_args["ServerSideEncryption"] = head["ServerSideEncryption"]
            if head.get("SSEKMSKeyId"):
                copy_args["SSEKMSKeyId"] = head["SSEKMSKeyId"]
            if head.get("BucketKeyEnabled"):
                copy_args["BucketKeyEnabled"] = True
        if head.get("StorageClass"):
            copy_args["StorageClass"] = head["StorageClass"]
        for name in _SSE_C_ARGS:
            if name in extra:
                copy_args[name] = extra[name]
                copy_args[f"CopySource{name}"] = extra[name]
        self._s3.copy_object(**copy_args)
        return "rotated"

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
        **extra: Any,
    ) -> ReencryptSummary:
        """Rotate every object under ``Prefix``: concurrent, resumable (objects already
        under the new key are skipped), with ``progress(key, status)`` after each."""
        summary = ReencryptSummary()
        lock = threading.Lock()

        def one(key: str) -> None:
            try:
                status = self.reencrypt(
                    Bucket,
                    key,
                    new_keyring,
                    EncryptionContext=EncryptionContext,
                    NewEncryptionContext=NewEncryptionContext,
                    **extra,
                )
            except NotEncryptedError:
                status = "not-encrypted"
                with lock:
                    summary.not_encrypted.append(key)
            except (S3CSEError, ClientError) as exc:
                status = "failed"
                with lock:
                    summary.failed.append((key, str(exc)))
            else:
                with lock:
                    if status == "rotated":
                        summary.done.append(key)
                    elif status == "skipped":
                        summary.skipped.append(key)
            if progress is not None and status != "instruction-file":
                progress(key, status)

        with concurrent.futures.ThreadPoolExecutor(max_workers=max_workers) as pool:
            pending: set[concurrent.futures.Future[None]] = set()
            for key in self._list_keys(Bucket, Prefix):
                if len(pending) >= max_workers * 4:
                    done, pending = concurrent.futures.wait(
                        pending, return_when=concurrent.futures.FIRST_COMPLETED
                    )
                    for future in done:
                        future.result()
                pending.add(pool.submit(contextvars.copy_context().run, one, key))
            for future in concurrent.futures.as_completed(pending):
                future.result()
        return summary

    def _list_keys(self, bucket: str, prefix: str) -> Iterable[str]:
        paginator = self._s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                yield item["Key"]

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
        from . import transfer

        transfer.upload(
            self, Fileobj, Bucket, Key, extra_args=ExtraArgs, callback=Callback, config=Config
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
        from . import transfer

        transfer.download(
            self,
            Bucket,
            Key,
            Fileobj,
            extra_args=ExtraArgs,
            callback=Callback,
            config=Config,
            sink_is_private=False,
        )

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
        from . import transfer

        directory = os.path.dirname(os.path.abspath(Filename))
        fd, temporary = tempfile.mkstemp(dir=directory, prefix=".s3cse-", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as f:
                transfer.download(
                    self,
                    Bucket,
                    Key,
                    f,
                    extra_args=ExtraArgs,
                    callback=Callback,
                    config=Config,
                    sink_is_private=True,
                )
            os.replace(temporary, Filename)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise

    def _begin_download(
        self, bucket: str, key: str, args: Mapping[str, Any], context: Mapping[str, str] | None
    ) -> tuple[dict[str, Any], ObjectDecryptor]:
        """HEAD the object, load its metadata and unwrap its key: (head response, decryptor)."""
        head = dict(
            self._s3.head_object(
                Bucket=bucket, Key=key, **{k: v for k, v in args.items() if k in _HEAD_ARGS}
            )
        )
        suffix = args.get("InstructionFileSuffix", self._suffix)
        try:
            content = self._content_metadata(bucket, key, head.get("Metadata", {}), suffix, args)
            return head, begin_decryption(
                self._cmm, content, self._config, encryption_context=context
            )
        except S3CSEError as exc:
            raise exc.at(bucket, key) from None


# ---------------------------------------------------------------- decryption pumps


def without_redundant_checksum(body: Any) -> Any:
    """``body`` without botocore's CRC32 check of the whole response, for AES-GCM bodies.

    botocore validates a stored full-object checksum while the body is read (a CRC32
    pass over every byte, about a fifth of an authenticated get's time on loopback).
    The GCM tag already authenticates each of those bytes, so the CRC adds nothing;
    the content length is still checked. Other bodies are returned unchanged.
    """
    if type(body) is StreamingChecksumBody and hasattr(body, "_raw_stream"):
        length: Any = getattr(body, "_content_length", None)  # botocore keeps the header text
        return StreamingBody(body._raw_stream, length)
    return body


def _read_chunks(stream: Any, expected: int | None = None) -> Iterator[bytes]:
    """``stream`` to its end in pieces of up to 1 MiB.

    With ``expected`` (the Content-Length), reads ask for no more than is left: a
    read of n bytes allocates n bytes in http.client, whatever arrives, which for
    small objects cost more than the decryption. A last 1-byte read finds the end
    (and lets botocore check the length)."""
    remaining = expected
    while True:
        if remaining is None or remaining < 0:
            size = _CHUNK
        elif remaining == 0:
            size = 1  # the end, or a body longer than announced (then full reads again)
        else:
            size = min(_CHUNK, remaining)
        chunk = stream.read(size)
        if not chunk:
            return
        if remaining is not None:
            remaining -= len(chunk)
        yield chunk


def _decrypt_stream(
    chunks: Iterator[bytes | memoryview], decryptor: ObjectDecryptor
) -> Iterator[memoryview]:
    """Yield plaintext as it decrypts; verification happens at the end (finalize)."""
    out = bytearray(_CHUNK + 48)
    for chunk in chunks:
        if len(chunk) + 31 > len(out):
            out = bytearray(len(chunk) + 48)
        n = decryptor.update_into(chunk, out)
        if n:
            yield memoryview(out)[:n]
    last = decryptor.finalize()
    if last:
        yield memoryview(last)


def _decrypt_in_memory(body: Any, ciphertext_length: int, decryptor: ObjectDecryptor) -> memoryview:
    """Decrypt the whole object into one buffer and verify it before returning any of it."""
    plaintext = bytearray(ciphertext_length + 48)
    n = 0
    for chunk in _read_chunks(body, ciphertext_length):
        if n + len(chunk) + 31 > len(plaintext):
            plaintext.extend(bytes(len(chunk) + 48))
        n += decryptor.update_into(chunk, memoryview(plaintext)[n:])
    last = decryptor.finalize()
    plaintext[n : n + len(last)] = last
    return memoryview(plaintext)[: n + len(last)]


def _verify_into_spool(body: Any, spool: Any, decryptor: ObjectDecryptor) -> None:
    """Copy the ciphertext to ``spool`` while checking its tag; no plaintext is kept.

    The disk writes run in a second thread (they release the GIL), overlapping the
    network reads and the tag check; at most a few chunks wait in between.
    """
    scratch = bytearray(_CHUNK + 48)
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="s3cse-spool") as writer:
        pending: collections.deque[concurrent.futures.Future[Any]] = collections.deque()
        for chunk in _read_chunks(body):
            pending.append(writer.submit(spool.write, chunk))
            if len(chunk) + 31 > len(scratch):
                scratch = bytearray(len(chunk) + 48)
            decryptor.update_into(chunk, scratch)
            while len(pending) > 4 or (pending and pending[0].done()):
                pending.popleft().result()
        while pending:
            pending.popleft().result()
    decryptor.finalize()
    spool.flush()
