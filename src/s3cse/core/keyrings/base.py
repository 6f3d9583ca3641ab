"""The keyring interface."""

from __future__ import annotations

import abc
from collections.abc import Mapping

from ...errors import ConfigurationError, DataKeyUnwrapError, NoMatchingKeyringError
from ..materials import DecryptionMaterials, EncryptionMaterials
from ..metadata import ContentMetadata

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
            f"which a {type(self).__name__} cannot unwrap; configure a keyring for that key "
            "(a MultiKeyring holds several)"
        )


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
