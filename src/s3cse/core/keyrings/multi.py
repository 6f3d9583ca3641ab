"""Several master keys side by side: one generator for writing, many for reading."""

from __future__ import annotations

from collections.abc import Iterable

from ...errors import (
    ConfigurationError,
    DataKeyUnwrapError,
    MissingPrivateKeyError,
    NoMatchingKeyringError,
)
from ..materials import DecryptionMaterials, EncryptionMaterials
from ..metadata import ContentMetadata
from .base import Keyring

__all__ = ["MultiKeyring"]


class MultiKeyring(Keyring):
    """Encrypts with ``generator``; decrypts with whichever member matches the object.

    Raw AES/RSA members match when their material description equals the stored
    one; KMS members match KMS-wrapped objects (KMS itself tells whether its key
    wrapped the data key). Members are tried in order, generator first.
    """

    def __init__(self, generator: Keyring | None = None, children: Iterable[Keyring] = ()):
        self.generator = generator
        self.children = list(children)
        members = ([generator] if generator is not None else []) + self.children
        if not members:
            raise ConfigurationError("MultiKeyring needs a generator or at least one child")
        for member in members:
            if not isinstance(member, Keyring):
                raise ConfigurationError(
                    f"MultiKeyring members must be keyrings, got {type(member).__name__}"
                )
        self._members = members

    def __repr__(self) -> str:
        return f"MultiKeyring(generator={self.generator!r}, children={self.children!r})"

    def matches(self, metadata: ContentMetadata) -> bool:
        return any(self._member_matches(m, metadata) for m in self._members)

    @staticmethod
    def _member_matches(member: Keyring, metadata: ContentMetadata) -> bool:
        if not member.matches(metadata):
            return False
        description = getattr(member, "material_description", None)
        if member.key_family in ("aes", "rsa") and description is not None:
            return dict(description) == dict(metadata.material_description)
        return True

    def on_encrypt(self, materials: EncryptionMaterials) -> EncryptionMaterials:
        if self.generator is None:
            raise ConfigurationError(
                "this MultiKeyring has no generator, so it can only decrypt; "
                "give it generator=<keyring> to encrypt"
            )
        return self.generator.on_encrypt(materials)

    def on_decrypt(self, materials: DecryptionMaterials) -> DecryptionMaterials:
        meta = materials.metadata
        candidates = [m for m in self._members if self._member_matches(m, meta)]
        if not candidates:
            raise NoMatchingKeyringError(
                f"no keyring matches the object (wrap algorithm {meta.wrap_algorithm.value}, "
                f"material description {dict(meta.material_description)!r}); configured: "
                + ", ".join(repr(m) for m in self._members)
            )
        failures: list[str] = []
        for member in candidates:
            try:
                return member.on_decrypt(materials)
            except (DataKeyUnwrapError, MissingPrivateKeyError, NoMatchingKeyringError) as exc:
                failures.append(f"{member!r}: {exc.message}")
        raise NoMatchingKeyringError(
            "none of the matching keyrings could unwrap the data key: " + "; ".join(failures)
        )
