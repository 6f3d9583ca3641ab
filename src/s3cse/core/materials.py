"""Encryption and decryption materials, and the default materials manager.

A keyring turns materials without a data key into materials with one (encrypt)
or recovers the plaintext data key from the stored, wrapped one (decrypt). A
crypto materials manager (CMM) stands between the client and the keyring; the
default one just asks its keyring, a custom one may add caching or policy.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING

from .metadata import ContentMetadata, WrapAlgorithm
from .suites import AlgorithmSuite

if TYPE_CHECKING:
    from .keyrings.base import Keyring

__all__ = [
    "CryptoMaterialsManager",
    "DecryptionMaterials",
    "DefaultCryptoMaterialsManager",
    "EncryptionMaterials",
]


@dataclasses.dataclass
class EncryptionMaterials:
    """What is needed to encrypt one object.

    ``encryption_context`` is the caller's KMS context for this request;
    ``material_description`` is what gets stored (raw keys: the keyring's
    description; KMS: the full context including ``aws:x-amz-cek-alg``).
    """

    suite: AlgorithmSuite
    encryption_context: Mapping[str, str] = dataclasses.field(default_factory=dict)
    plaintext_data_key: bytes | bytearray | None = dataclasses.field(default=None, repr=False)
    encrypted_data_key: bytes | None = dataclasses.field(default=None, repr=False)
    wrap_algorithm: WrapAlgorithm | None = None
    material_description: Mapping[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class DecryptionMaterials:
    """What is needed to recover one object's data key."""

    metadata: ContentMetadata
    encryption_context: Mapping[str, str] = dataclasses.field(default_factory=dict)
    enable_legacy_wrapping: bool = False
    plaintext_data_key: bytes | bytearray | None = dataclasses.field(default=None, repr=False)
    #: Set by a keyring whose unwrap failures must not be told apart from what follows
    #: (RSA PKCS#1 v1.5, Bleichenbacher): a padding failure of the legacy CBC content then
    #: raises DataKeyUnwrapError with this message, the one its unwrap failures carry.
    content_failure_message: str | None = None


class CryptoMaterialsManager(abc.ABC):
    """Supplies encryption materials and recovers data keys for decryption."""

    @abc.abstractmethod
    def get_encryption_materials(self, materials: EncryptionMaterials) -> EncryptionMaterials:
        """Return ``materials`` completed with a fresh data key and its wrapped form."""

    @abc.abstractmethod
    def decrypt_materials(self, materials: DecryptionMaterials) -> DecryptionMaterials:
        """Return ``materials`` completed with the plaintext data key."""


class DefaultCryptoMaterialsManager(CryptoMaterialsManager):
    """The CMM that asks one keyring for everything."""

    def __init__(self, keyring: Keyring):
        self.keyring = keyring

    def __repr__(self) -> str:
        return f"DefaultCryptoMaterialsManager(keyring={self.keyring!r})"

    def get_encryption_materials(self, materials: EncryptionMaterials) -> EncryptionMaterials:
        return self.keyring.on_encrypt(materials)

    def decrypt_materials(self, materials: DecryptionMaterials) -> DecryptionMaterials:
        return self.keyring.on_decrypt(materials)
