"""Raw AES master keys: AES/GCM wrap; legacy AESWrap (RFC 3394) and V1 AES-ECB unwrap."""

from __future__ import annotations

import os
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap

from ...errors import DataKeyUnwrapError, InvalidKeyError
from ..materials import DecryptionMaterials, EncryptionMaterials
from ..metadata import WrapAlgorithm, cek_algorithm_name
from .base import (
    DATA_KEY_LENGTH,
    Keyring,
    check_material_description,
    check_unwrapped_length,
    raw_key_data_key,
    record_raw_wrap,
)

__all__ = ["AesKeyring"]

_GCM_IV_LENGTH = 12
_WRAPPED_LENGTH = _GCM_IV_LENGTH + DATA_KEY_LENGTH + 16


class AesKeyring(Keyring):
    """A symmetric master key held by the caller (16, 24 or 32 bytes; 32 recommended).

    Data keys are wrapped with AES-GCM under the master key, bound to the content
    algorithm. ``material_description`` is stored with each object and selects
    this key when several are configured in a :class:`MultiKeyring`.
    """

    key_family = "aes"

    def __init__(self, key: bytes, material_description: Mapping[str, str] | None = None):
        if not isinstance(key, bytes | bytearray | memoryview):
            raise InvalidKeyError(f"an AES master key must be bytes, not {type(key).__name__}")
        if len(key) not in (16, 24, 32):
            raise InvalidKeyError(
                f"an AES master key must be 16, 24 or 32 bytes long, got {len(key)} bytes"
            )
        self._key = bytes(key)
        self.material_description = check_material_description(material_description)

    def __repr__(self) -> str:
        return (
            f"AesKeyring(key=<{len(self._key) * 8}-bit AES key>, "
            f"material_description={self.material_description!r})"
        )

    def on_encrypt(self, materials: EncryptionMaterials) -> EncryptionMaterials:
        data_key = raw_key_data_key(materials, "raw AES keys")
        iv = os.urandom(_GCM_IV_LENGTH)
        aad = cek_algorithm_name(materials.suite).encode("ascii")
        wrapped = iv + AESGCM(self._key).encrypt(iv, data_key, aad)
        return record_raw_wrap(
            materials, data_key, wrapped, WrapAlgorithm.AES_GCM, self.material_description
        )

    def on_decrypt(self, materials: DecryptionMaterials) -> DecryptionMaterials:
        meta = materials.metadata
        self._refuse_other_family(meta)
        edk = meta.encrypted_data_key
        wrap = meta.wrap_algorithm
        if wrap is WrapAlgorithm.AES_GCM:
            if len(edk) != _WRAPPED_LENGTH:
                raise DataKeyUnwrapError(
                    f"the AES/GCM-wrapped data key is {len(edk)} bytes, expected "
                    f"{_WRAPPED_LENGTH}: the metadata was altered"
                )
            aad = cek_algorithm_name(meta.suite).encode("ascii")
            try:
                iv, sealed = edk[:_GCM_IV_LENGTH], edk[_GCM_IV_LENGTH:]
                data_key = AESGCM(self._key).decrypt(iv, sealed, aad)
            except InvalidTag:
                raise DataKeyUnwrapError(
                    "could not unwrap the data key with the configured AES key: wrong key, "
                    "or the wrapped key or its algorithm was altered"
                ) from None
            legacy = False
        elif wrap is WrapAlgorithm.AES_WRAP:
            try:
                data_key = aes_key_unwrap(self._key, edk)
            except (InvalidUnwrap, ValueError):
                raise DataKeyUnwrapError(
                    "could not unwrap the AESWrap data key with the configured AES key: wrong "
                    "key, or the wrapped key was altered"
                ) from None
            legacy = True
        else:  # V1: AES-ECB with PKCS#7 padding
            data_key = self._unwrap_v1_ecb(edk)
            legacy = True
        materials.plaintext_data_key = check_unwrapped_length(
            data_key, legacy=legacy, what="AES keyring"
        )
        return materials

    def _unwrap_v1_ecb(self, edk: bytes) -> bytes:
        failure = DataKeyUnwrapError(
            "could not unwrap the V1 data key with the configured AES key: wrong key, or the "
            "wrapped key was altered"
        )
        if not edk or len(edk) % 16:
            raise failure
        decryptor = Cipher(algorithms.AES(self._key), modes.ECB()).decryptor()  # noqa: S305
        unpadder = padding.PKCS7(128).unpadder()
        try:
            padded = decryptor.update(edk) + decryptor.finalize()
            return unpadder.update(padded) + unpadder.finalize()
        except ValueError:
            raise failure from None
