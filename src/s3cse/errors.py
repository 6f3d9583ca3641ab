"""The s3cse error hierarchy.

Every failure that s3cse itself detects is an :class:`S3CSEError`. Errors from
botocore (network, permissions, missing objects) pass through unchanged.

Messages name what was expected, what was found and what would fix it. They
never contain key bytes or plaintext.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

__all__ = [
    "CipherStateError",
    "ClientClosedError",
    "CommitmentMismatchError",
    "CommitmentPolicyError",
    "ConfigurationError",
    "DataKeyUnwrapError",
    "DuplicateMetadataError",
    "EncryptionContextMismatchError",
    "EventLoopStoppedError",
    "InstructionFileWriteError",
    "IntegrityError",
    "InvalidKeyError",
    "KeyringError",
    "LegacyAlgorithmDisabledError",
    "MalformedMetadataError",
    "MetadataTooLargeError",
    "MissingPrivateKeyError",
    "MixedFormatMetadataError",
    "MultipartSequenceError",
    "NoMatchingKeyringError",
    "NotEncryptedError",
    "PlaintextTooLargeError",
    "RangeNotAllowedError",
    "ReadInterruptedError",
    "S3CSEError",
    "SourceChangedError",
    "SpoolSpaceError",
    "UnexpectedResponseError",
    "UnsafeOperationError",
    "WriteConflictError",
    "located",
]


class S3CSEError(Exception):
    """Base class of every error s3cse raises itself.

    ``bucket`` and ``key`` name the object concerned when the failure happened
    in a call that had one; ``str()`` then starts with ``s3://bucket/key:``.
    """

    def __init__(self, message: str, *, bucket: str | None = None, key: str | None = None):
        super().__init__(message)
        self.message = message
        self.bucket = bucket
        self.key = key

    def at(self, bucket: str | None, key: str | None) -> S3CSEError:
        """Attach the object location (keeps one already set) and return self."""
        if self.bucket is None and self.key is None:
            self.bucket, self.key = bucket, key
        return self

    def __str__(self) -> str:
        if self.bucket is not None or self.key is not None:
            return f"s3://{self.bucket or ''}/{self.key or ''}: {self.message}"
        return self.message


class ConfigurationError(S3CSEError, ValueError):
    """The client, keyring or call was configured in a way that cannot work."""


class InvalidKeyError(ConfigurationError):
    """A master key given to a keyring is not a usable key (wrong length, not a key)."""


class CommitmentPolicyError(S3CSEError):
    """The object's format is not allowed by the configured commitment policy."""


class LegacyAlgorithmDisabledError(S3CSEError):
    """The object needs a legacy algorithm that is off; ``switch`` names the option."""

    def __init__(self, message: str, *, switch: str, **kwargs: str | None):
        super().__init__(message, **kwargs)
        self.switch = switch


class MalformedMetadataError(S3CSEError):
    """The stored crypto metadata is missing a field or has a malformed one."""

    def __init__(self, message: str, *, field: str | None = None, **kwargs: str | None):
        super().__init__(message, **kwargs)
        self.field = field


class MixedFormatMetadataError(MalformedMetadataError):
    """Metadata keys of two format versions at once (header spoofing): refused."""


class DuplicateMetadataError(MalformedMetadataError):
    """Crypto metadata found both in the object and in its instruction file."""


class NotEncryptedError(S3CSEError):
    """The object carries no client-side encryption metadata and has no instruction file."""


class KeyringError(S3CSEError):
    """A keyring could not produce or recover a data key."""


class MissingPrivateKeyError(KeyringError):
    """An RSA keyring built from a public key alone was asked to decrypt."""


class NoMatchingKeyringError(KeyringError):
    """No configured keyring can unwrap this object's data key."""


class DataKeyUnwrapError(KeyringError):
    """The data key could not be unwrapped: wrong master key or damaged key blob."""


class EncryptionContextMismatchError(KeyringError):
    """The encryption context given for this request differs from the stored one."""


class IntegrityError(S3CSEError):
    """The stored object failed authentication: tag mismatch, truncation, extension, or
    (:class:`CommitmentMismatchError`) a key commitment that does not match."""


class CommitmentMismatchError(IntegrityError):
    """The V3 key commitment does not match the data key: the metadata was tampered with."""


class SourceChangedError(S3CSEError):
    """The data being uploaded changed, grew or shrank while it was read (a local file
    written to during the upload, a replayed body that differs from its first pass).
    Nothing was stored; upload again once the source is stable."""


class UnexpectedResponseError(S3CSEError):
    """S3 (or the store standing in for it) answered with something that does not fit the
    request: a Content-Range not asked for, a body of another length than announced."""


class WriteConflictError(S3CSEError):
    """Another writer changed the object (or its instruction file) while s3cse was
    rewriting it; a conditional write refused, so nothing of theirs was overwritten.
    Read the object again and retry."""


class InstructionFileWriteError(S3CSEError):
    """The object was stored but its instruction file, which holds its wrapped data key,
    could not be written: the object is unreadable until it is.

    :meth:`write_instruction_file` writes it (the same call again also works, with a
    body that can be read again); ``cause`` is the error of the failed write."""

    def __init__(
        self,
        message: str,
        *,
        write: Callable[[], None],
        cause: BaseException,
        **kwargs: str | None,
    ):
        super().__init__(message, **kwargs)
        self._write = write
        self.cause = cause

    def write_instruction_file(self) -> None:
        """Write the instruction file now (raises the store's error if it fails again)."""
        self._write()


class MetadataTooLargeError(ConfigurationError):
    """The caller's user metadata leaves no room for the crypto metadata, even with the
    latter in an instruction file, within S3's 2 KB limit; the message gives both sizes."""


class CipherStateError(S3CSEError):
    """A cipher was used out of turn: after ``finalize``, or replayed from a rewind with
    its input cut differently. A programming error in the caller, not bad data."""


class PlaintextTooLargeError(S3CSEError):
    """The plaintext exceeds what the content cipher can protect (GCM: 2^36 - 32 bytes)."""


class MultipartSequenceError(S3CSEError):
    """Parts of an encrypted multipart upload were given out of order or after the last."""


class RangeNotAllowedError(S3CSEError):
    """A ranged read was asked for without ``enable_legacy_unauthenticated_modes``."""


class UnsafeOperationError(S3CSEError):
    """The operation would store plaintext or bypass the format; the message names the safe way."""


class ClientClosedError(S3CSEError, RuntimeError):
    """The client was closed (``await client.close()`` or the end of its ``async with``)
    before this call; make calls before closing it, or use a new client."""


class EventLoopStoppedError(S3CSEError, RuntimeError):
    """An async call's event loop stopped (or closed) while the call was still working,
    neither awaited to its end nor cancelled: its next request could not be sent. What it
    had started is left as it was (a multipart upload stays open until aborted)."""


class ReadInterruptedError(S3CSEError):
    """A read of a body was cancelled (or timed out) while its bytes were arriving: the
    rest cannot be returned in order. ``position`` is how many plaintext bytes the body
    returned before; a new ``get_object`` (with ``Range`` to resume) reads on."""

    def __init__(self, message: str, *, position: int, **kwargs: str | None):
        super().__init__(message, **kwargs)
        self.position = position


class SpoolSpaceError(S3CSEError, OSError):
    """The temporary directory has no room for the ciphertext that must be verified
    before any plaintext is released; the message says how much was needed and where."""


@contextlib.contextmanager
def located(bucket: str | None, key: str | None) -> Iterator[None]:
    """Within this block, an :class:`S3CSEError` that names no object is made to name
    ``s3://bucket/key`` (and raised without the chained context of the failing call)."""
    try:
        yield
    except S3CSEError as exc:
        raise exc.at(bucket, key) from None
