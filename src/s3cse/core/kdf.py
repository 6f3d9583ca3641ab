"""V3 key derivation and key commitment (HKDF-SHA512).

Extract with salt = message id and IKM = data key; expand twice from the same
pseudo-random key: 28 bytes of commitment (info ``00 73 || "COMMITKEY"``) and the
32-byte content key (info ``00 73 || "DERIVEKEY"``). The CTR suite 0x0074 derives
with the id of 0x0073, so ranged reads get the same content key.
"""

from __future__ import annotations

import hmac

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..errors import CommitmentMismatchError
from .suites import AlgorithmSuite

__all__ = [
    "COMMITMENT_LENGTH",
    "MESSAGE_ID_LENGTH",
    "derive_commitment",
    "derive_content_key",
    "verify_commitment_and_derive",
]

COMMITMENT_LENGTH = 28
MESSAGE_ID_LENGTH = 28
_SUITE_ID = AlgorithmSuite.AES_256_GCM_HKDF_SHA512_COMMIT_KEY.id_bytes


def _hkdf(data_key: bytes | bytearray, message_id: bytes, info: bytes, length: int) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA512(), length=length, salt=message_id, info=info)
    return hkdf.derive(bytes(data_key))


def derive_commitment(data_key: bytes | bytearray, message_id: bytes) -> bytes:
    """Return the 28-byte key commitment for ``data_key`` under ``message_id``."""
    return _hkdf(data_key, message_id, _SUITE_ID + b"COMMITKEY", COMMITMENT_LENGTH)


def derive_content_key(data_key: bytes | bytearray, message_id: bytes) -> bytes:
    """Return the 32-byte AES content key for ``data_key`` under ``message_id``."""
    return _hkdf(data_key, message_id, _SUITE_ID + b"DERIVEKEY", 32)


def verify_commitment_and_derive(
    data_key: bytes | bytearray, message_id: bytes, stored_commitment: bytes
) -> bytes:
    """Check the stored commitment in constant time, then return the content key.

    The content key is derived only after the commitment matched, so a forged
    data key never produces a usable cipher.
    """
    expected = derive_commitment(data_key, message_id)
    if not hmac.compare_digest(expected, stored_commitment):
        raise CommitmentMismatchError(
            "the key commitment stored with the object does not match its data key "
            "(x-amz-d): the metadata or instruction file was altered or belongs to "
            "another object"
        )
    return derive_content_key(data_key, message_id)
