"""Streaming content ciphers as push-style state machines.

Feed ciphertext or plaintext in chunks of any size with ``update`` (or
``update_into`` a caller-owned buffer, the fast path), then call ``finalize``.
No cipher here reads or writes anything but the bytes it is given.

Plaintext from :class:`GcmDecryptor.update` is *not yet authenticated*: callers
that must not release unauthenticated bytes hold it until ``finalize`` returns.
"""

from __future__ import annotations

import dataclasses
import hmac
import os
import re

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.poly1305 import Poly1305

from ..errors import (
    CipherStateError,
    ConfigurationError,
    DataKeyUnwrapError,
    IntegrityError,
    MultipartSequenceError,
)
from .suites import GCM_MAX_PLAINTEXT_LENGTH, check_plaintext_length

__all__ = [
    "TAG_LENGTH",
    "CbcDecryptor",
    "CtrDecryptor",
    "GcmDecryptor",
    "GcmEncryptor",
    "MultipartEncryptor",
    "RangePlan",
    "gcm_counter_block",
    "plan_range",
]

TAG_LENGTH = 16
_BLOCK = 16
Buffer = bytes | bytearray | memoryview


class GcmEncryptor:
    """AES-GCM encryption of one object's content; ``finalize`` returns the 16-byte tag."""

    def __init__(self, key: bytes, iv: bytes, aad: bytes = b""):
        if not any(iv):
            raise ConfigurationError("refusing to encrypt with an all-zero IV")
        self._encryptor = Cipher(algorithms.AES(key), modes.GCM(iv)).encryptor()
        if aad:
            self._encryptor.authenticate_additional_data(aad)
        self._count = 0
        self._finished = False

    @property
    def bytes_encrypted(self) -> int:
        return self._count

    @property
    def finished(self) -> bool:
        """Whether ``finalize`` has been called."""
        return self._finished

    def _account(self, n: int) -> None:
        if self._finished:
            raise CipherStateError("this encryptor has already been finalized")
        self._count += n
        check_plaintext_length(self._count)

    def update(self, data: Buffer) -> bytes:
        """Encrypt ``data`` and return the ciphertext (same length)."""
        self._account(len(data))
        return self._encryptor.update(data)

    def update_into(self, data: Buffer, out: bytearray | memoryview) -> int:
        """Encrypt ``data`` into ``out`` (``len(data) + 15`` bytes or more); return the count."""
        self._account(len(data))
        return self._encryptor.update_into(data, out)

    def finalize(self) -> bytes:
        """Finish the stream and return the authentication tag."""
        if self._finished:
            raise CipherStateError("this encryptor has already been finalized")
        self._finished = True
        self._encryptor.finalize()
        return self._encryptor.tag


class GcmDecryptor:
    """AES-GCM decryption of ``ciphertext || tag`` fed in chunks of any size.

    The last 16 bytes seen are held back as the tag; ``finalize`` verifies it
    and raises :class:`IntegrityError` on any mismatch or truncation.
    """

    def __init__(self, key: bytes, iv: bytes, aad: bytes = b""):
        self._decryptor = Cipher(algorithms.AES(key), modes.GCM(iv)).decryptor()
        if aad:
            self._decryptor.authenticate_additional_data(aad)
        self._tail = b""
        self._count = 0
        self._finished = False

    def _split(self, data: Buffer) -> tuple[bytes, memoryview]:
        """Return (held-back bytes to decrypt first, the rest to decrypt) and update the tail."""
        if self._finished:
            raise CipherStateError("this decryptor has already been finalized")
        view = memoryview(data)
        if len(view) >= TAG_LENGTH:
            head, rest = self._tail, view[: len(view) - TAG_LENGTH]
            self._tail = bytes(view[len(view) - TAG_LENGTH :])
        else:
            joined = self._tail + bytes(view)
            cut = max(0, len(joined) - TAG_LENGTH)
            head, rest = joined[:cut], memoryview(b"")
            self._tail = joined[cut:]
        self._count += len(head) + len(rest)
        if self._count > GCM_MAX_PLAINTEXT_LENGTH:
            raise IntegrityError(
                "the ciphertext is longer than AES-GCM allows for one object: it was extended"
            )
        return head, rest

    def update(self, data: Buffer) -> bytes:
        """Decrypt what can be decrypted so far (unauthenticated until ``finalize``)."""
        head, rest = self._split(data)
        out = self._decryptor.update(head) if head else b""
        return out + self._decryptor.update(rest) if rest else out

    def update_into(self, data: Buffer, out: bytearray | memoryview) -> int:
        """Like :meth:`update`, into ``out`` (at least ``len(data) + 15`` bytes)."""
        head, rest = self._split(data)
        written = self._decryptor.update_into(head, out) if head else 0
        if rest:
            written += self._decryptor.update_into(rest, memoryview(out)[written:])
        return written

    def finalize(self) -> bytes:
        """Verify the tag; return b"" or raise :class:`IntegrityError`."""
        if self._finished:
            raise CipherStateError("this decryptor has already been finalized")
        self._finished = True
        if len(self._tail) < TAG_LENGTH:
            raise IntegrityError(
                "the ciphertext is shorter than its 16-byte authentication tag: it was truncated"
            )
        try:
            return self._decryptor.finalize_with_tag(self._tail)
        except InvalidTag:
            raise IntegrityError(
                "the ciphertext failed authentication (GCM tag mismatch): it was truncated, "
                "extended or altered, or the data key does not belong to it"
            ) from None


class CbcDecryptor:
    """Legacy AES-CBC decryption with PKCS#7 padding (V1 objects). Unauthenticated."""

    def __init__(self, key: bytes, iv: bytes, failure_message: str | None = None):
        self._decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
        self._unpadder = padding.PKCS7(128).unpadder()
        self._finished = False
        self._failure_message = failure_message

    def update(self, data: Buffer) -> bytes:
        if self._finished:
            raise CipherStateError("this decryptor has already been finalized")
        return self._unpadder.update(self._decryptor.update(data))

    def update_into(self, data: Buffer, out: bytearray | memoryview) -> int:
        chunk = self.update(data)
        memoryview(out)[: len(chunk)] = chunk
        return len(chunk)

    def finalize(self) -> bytes:
        if self._finished:
            raise CipherStateError("this decryptor has already been finalized")
        self._finished = True
        try:
            last = self._decryptor.finalize()
            return self._unpadder.update(last) + self._unpadder.finalize()
        except ValueError:
            if self._failure_message is not None:
                raise DataKeyUnwrapError(self._failure_message) from None
            raise IntegrityError(
                "the CBC ciphertext did not decrypt to valid padding: it was truncated or "
                "altered, or the data key does not belong to it"
            ) from None


def gcm_counter_block(iv: bytes, block_index: int) -> bytes:
    """The AES-CTR counter block that GCM uses for content block ``block_index`` (12-byte IV)."""
    if len(iv) != 12:
        raise ConfigurationError("GCM ranged decryption needs a 12-byte IV")
    return iv + (block_index + 2).to_bytes(4, "big")


class CtrDecryptor:
    """AES-CTR decryption from a given counter block (ranged reads of GCM objects).

    ``skip`` output bytes are dropped at the start and at most ``limit`` are
    returned, so the caller can fetch whole blocks and get exactly its range.
    The result is not authenticated.
    """

    def __init__(
        self, key: bytes, counter_block: bytes, *, skip: int = 0, limit: int | None = None
    ):
        self._decryptor = Cipher(algorithms.AES(key), modes.CTR(counter_block)).decryptor()
        self._skip = skip
        self._remaining = limit

    def update(self, data: Buffer) -> bytes:
        out = self._decryptor.update(data)
        if self._skip:
            dropped = min(self._skip, len(out))
            out = out[dropped:]
            self._skip -= dropped
        if self._remaining is not None:
            out = out[: self._remaining]
            self._remaining -= len(out)
        return out

    def update_into(self, data: Buffer, out: bytearray | memoryview) -> int:
        chunk = self.update(data)
        memoryview(out)[: len(chunk)] = chunk
        return len(chunk)

    def finalize(self) -> bytes:
        self._decryptor.finalize()
        return b""


class MultipartEncryptor:
    """Hands out the ciphertext of a multipart upload part by part, through one GCM stream.

    Parts must come in order 1, 2, 3, ...; every part but the last must be a
    multiple of 16 bytes; the last part carries the tag. One GCM stream cannot go back,
    so a part can be had again only as it was: asking for the part just encrypted, with
    the same plaintext (its upload failed and is being resent), returns the same
    ciphertext; anything else out of order is refused.
    """

    def __init__(self, encryptor: GcmEncryptor):
        self._encryptor = encryptor
        self._next_part = 1
        self._done = False
        self._fingerprint_key = os.urandom(32)
        #: (part number, last, Poly1305 tag of its plaintext, its ciphertext)
        self._previous: tuple[int, bool, bytes, bytearray] | None = None

    @property
    def next_part_number(self) -> int:
        return self._next_part

    @property
    def finished(self) -> bool:
        return self._done

    def encrypt_part(self, part_number: int, data: Buffer, *, last: bool) -> bytearray:
        """Return the ciphertext of part ``part_number`` (with the tag if ``last``)."""
        fingerprint = Poly1305.generate_tag(self._fingerprint_key, data)
        previous = self._previous
        if (
            previous is not None
            and previous[0] == part_number
            and previous[1] == last
            and hmac.compare_digest(previous[2], fingerprint)
        ):
            return previous[3]
        self._check(part_number, len(data), last)
        out = bytearray(len(data) + 31)
        n = self._encryptor.update_into(data, out)
        self._advance(last)
        if last:
            out[n : n + TAG_LENGTH] = self._encryptor.finalize()
            n += TAG_LENGTH
        del out[n:]
        self._previous = (part_number, last, fingerprint, out)
        return out

    def _check(self, part_number: int, size: int, last: bool) -> None:
        if self._done:
            raise MultipartSequenceError(
                f"part {part_number} comes after the last part; the upload's tag is written"
            )
        if part_number != self._next_part:
            raise MultipartSequenceError(
                f"encrypted parts must be uploaded in order through one cipher: expected part "
                f"{self._next_part}, got part {part_number}"
            )
        if not last and size % _BLOCK:
            raise MultipartSequenceError(
                f"part {part_number} is {size} bytes; every part but the last must be a "
                "multiple of 16 bytes (pass IsLastPart=True for the final part)"
            )

    def _advance(self, last: bool) -> None:
        self._next_part += 1
        self._done = last


# ---------------------------------------------------------------- ranges

_RANGE = re.compile(r"^\s*bytes\s*=\s*([0-9]{0,20})\s*-\s*([0-9]{0,20})\s*$")


@dataclasses.dataclass(frozen=True)
class RangePlan:
    """How to serve a plaintext byte range of a GCM object from whole ciphertext blocks."""

    first: int
    last: int
    plaintext_length: int
    fetch_first: int
    fetch_last: int

    @property
    def block_index(self) -> int:
        return self.fetch_first // _BLOCK

    @property
    def skip(self) -> int:
        return self.first - self.fetch_first

    @property
    def length(self) -> int:
        return self.last - self.first + 1

    @property
    def fetch_range(self) -> str:
        return f"bytes={self.fetch_first}-{self.fetch_last}"

    @property
    def content_range(self) -> str:
        return f"bytes {self.first}-{self.last}/{self.plaintext_length}"


def plan_range(range_header: str, ciphertext_length: int) -> RangePlan | None:
    """Plan ``bytes=a-b``, ``bytes=a-`` or ``bytes=-n`` over a GCM object.

    Returns None when the range is not satisfiable (S3 would answer 416). The
    fetched ciphertext never reaches into the tag.
    """
    match = _RANGE.match(range_header or "")
    if not match or (not match.group(1) and not match.group(2)):
        raise ConfigurationError(
            f"unsupported Range {range_header!r}; use bytes=a-b, bytes=a- or bytes=-n"
        )
    plaintext_length = max(0, ciphertext_length - TAG_LENGTH)
    start_s, end_s = match.group(1), match.group(2)
    if start_s:
        first = int(start_s)
        last = int(end_s) if end_s else plaintext_length - 1
        if end_s and last < first:
            raise ConfigurationError(f"invalid Range {range_header!r}: end before start")
    else:
        suffix = int(end_s)
        if suffix == 0:
            return None
        first = max(0, plaintext_length - suffix)
        last = plaintext_length - 1
    if first >= plaintext_length:
        return None
    last = min(last, plaintext_length - 1)
    fetch_first = first - first % _BLOCK
    fetch_last = min(last - last % _BLOCK + _BLOCK - 1, plaintext_length - 1)
    return RangePlan(first, last, plaintext_length, fetch_first, fetch_last)
