"""The keyring interface."""

from __future__ import annotations

import abc
import os
from collections.abc import Mapping

from ...errors import ConfigurationError, DataKeyUnwrapError, NoMatchingKeyringError
from ..materials import DecryptionMaterials, EncryptionMaterials
from ..metadata import ContentMetadata, WrapAlgorithm

__all__ = ["DATA_KEY_LENGTH", "Keyring"]

#: Every object s3cse writes gets a fresh AES-256 data key.
DATA_KEY_LENGTH = 32


class Keyring(abc.ABC):
    """Wraps fresh data keys on encrypt and unwraps stored ones on decrypt."""

    #: ``"aes"``, ``"rsa"`` or ``"kms"``: which wrap algorithms this keyring handles.
    key_family: str = ""

    @abc.abstractmethod
    def on_encrypt(self, materials: EncryptionMaterials) -> EncryptionMaterials:
        """Return ``materials`` with a new plaintext data key and its wrapped form."""

    @abc.abstractmethod
    def on_decrypt(self, materials: DecryptionMaterials) -> DecryptionMaterials:
        """Return ``materials`` with the plaintext data key recovered."""

    def matches(self, metadata: ContentMetadata) -> bool:
        """True if this keyring is a candidate for the object (used by MultiKeyring)."""
        family = metadata.wrap_algorithm.key_family
        return family == self.key_family or (family == "v1" and self.key_family in ("aes", "rsa"))

    def _refuse_other_family(self, metadata: ContentMetadata) -> None:
        family = metadata.wrap_algorithm.key_family
        if family == self.key_family or (family == "v1" and self.key_family in ("aes", "rsa")):
            return
        raise NoMatchingKeyringError(
            f"the object's data key is wrapped with {metadata.wrap_algorithm.value}, "
            f"which the {type(self).__name__} given cannot unwrap; "
            "configure a keyring for that key (a MultiKeyring holds several)"
        )


def raw_key_data_key(materials: EncryptionMaterials, keys: str) -> bytes | bytearray:
    """The data key a raw-key keyring (``keys``: "raw AES keys", "RSA keys") wraps: the
    one already in ``materials`` (a MultiKeyring's generator made it), else a new one.
    An encryption context is refused: only KMS binds one to the wrapped key."""
    if materials.encryption_context:
        raise ConfigurationError(
            f"an encryption context applies to KMS keyrings only; describe {keys} with "
            "material_description"
        )
    return materials.plaintext_data_key or bytearray(os.urandom(DATA_KEY_LENGTH))


def record_raw_wrap(
    materials: EncryptionMaterials,
    data_key: bytes | bytearray,
    encrypted_data_key: bytes,
    wrap_algorithm: WrapAlgorithm,
    material_description: Mapping[str, str],
) -> EncryptionMaterials:
    """Complete ``materials`` with a raw-key keyring's wrap of ``data_key``."""
    materials.plaintext_data_key = data_key
    materials.encrypted_data_key = encrypted_data_key
    materials.wrap_algorithm = wrap_algorithm
    materials.material_description = dict(material_description)
    return materials


def check_material_description(description: Mapping[str, str] | None) -> dict[str, str]:
    """Validate a user material description: a map of strings to strings."""
    if description is None:
        return {}
    if not isinstance(description, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in description.items()
    ):
        raise ConfigurationError("a material description must be a dict of str to str")
    return dict(description)


def check_unwrapped_length(data_key: bytes, *, legacy: bool, what: str) -> bytes:
    """Accept 32-byte data keys; V1 objects may also carry 16- and 24-byte ones."""
    allowed = (16, 24, 32) if legacy else (DATA_KEY_LENGTH,)
    if len(data_key) not in allowed:
        raise DataKeyUnwrapError(
            f"the data key unwrapped by the {what} has an invalid length; the wrapped key "
            "was altered or belongs to another format"
        )
    return data_key
