"""RSA master keys: RSA-OAEP-SHA1 wrap of the pseudo-key; legacy OAEP-SHA256 and V1 PKCS#1 v1.5.

A keyring built from the public key alone encrypts (the uploader never needs the
private key) and refuses to decrypt with :class:`MissingPrivateKeyError`.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ...errors import (
    ConfigurationError,
    DataKeyUnwrapError,
    InvalidKeyError,
    MissingPrivateKeyError,
)
from ..materials import DecryptionMaterials, EncryptionMaterials
from ..metadata import WrapAlgorithm, cek_algorithm_name
from .base import (
    Keyring,
    check_material_description,
    check_unwrapped_length,
    raw_key_data_key,
    record_raw_wrap,
)

__all__ = ["RsaKeyring"]

_MIN_BITS = 2048
# One message for every unwrap failure: a caller must not tell bad padding from a wrong key.
# SHA-1 here is OAEP's hash, mandated by the format (RSA-OAEP-SHA1), not a signature.
_UNWRAP_FAILED = (
    "could not unwrap the data key with the configured RSA private key: wrong key, or the "
    "wrapped key was altered"
)


def _load_public(value: rsa.RSAPublicKey | bytes) -> rsa.RSAPublicKey:
    if isinstance(value, rsa.RSAPublicKey):
        return value
    if isinstance(value, rsa.RSAPrivateKey):
        raise InvalidKeyError("public_key= was given a private key; pass it as private_key=")
    if not isinstance(value, bytes | bytearray):
        raise InvalidKeyError(
            f"public_key must be an RSAPublicKey or PEM/DER bytes, not {type(value).__name__}"
        )
    data = bytes(value)
    try:
        key = (
            serialization.load_pem_public_key(data)
            if data.lstrip().startswith(b"-----")
            else serialization.load_der_public_key(data)
        )
    except (ValueError, TypeError):
        raise InvalidKeyError(
            "public_key is not an RSA public key in PEM or DER form (SubjectPublicKeyInfo)"
        ) from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise InvalidKeyError(f"public_key is a {type(key).__name__}, not an RSA key")
    return key


def _load_private(value: rsa.RSAPrivateKey | bytes, password: bytes | None) -> rsa.RSAPrivateKey:
    if isinstance(value, rsa.RSAPrivateKey):
        return value
    if not isinstance(value, bytes | bytearray):
        raise InvalidKeyError(
            f"private_key must be an RSAPrivateKey or PEM/DER bytes, not {type(value).__name__}"
        )
    data = bytes(value)
    try:
        key = (
            serialization.load_pem_private_key(data, password=password)
            if data.lstrip().startswith(b"-----")
            else serialization.load_der_private_key(data, password=password)
        )
    except TypeError as exc:
        raise InvalidKeyError(f"private_key could not be loaded: {exc}") from None
    except ValueError:
        raise InvalidKeyError(
            "private_key is not an RSA private key in PEM or DER form (PKCS#8 or PKCS#1), "
            "or its password is wrong"
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise InvalidKeyError(f"private_key is a {type(key).__name__}, not an RSA key")
    return key


class RsaKeyring(Keyring):
    """An RSA key pair; the public key alone is enough to encrypt."""

    key_family = "rsa"

    def __init__(
        self,
        public_key: rsa.RSAPublicKey | bytes | None = None,
        private_key: rsa.RSAPrivateKey | bytes | None = None,
        material_description: Mapping[str, str] | None = None,
        *,
        password: bytes | None = None,
    ):
        if public_key is None and private_key is None:
            raise ConfigurationError("RsaKeyring needs a public_key, a private_key, or both")
        self._private = _load_private(private_key, password) if private_key is not None else None
        if public_key is not None:
            self._public = _load_public(public_key)
            if self._private is not None and (
                self._private.public_key().public_numbers() != self._public.public_numbers()
            ):
                raise InvalidKeyError("public_key and private_key are not one key pair")
        else:
            assert self._private is not None
            self._public = self._private.public_key()
        if self._public.key_size < _MIN_BITS:
            raise InvalidKeyError(
                f"RSA keys must be at least {_MIN_BITS} bits, got {self._public.key_size}"
            )
        self.material_description = check_material_description(material_description)

    @property
    def can_decrypt(self) -> bool:
        """False for a keyring built from the public key alone."""
        return self._private is not None

    def __repr__(self) -> str:
        kind = "key pair" if self._private is not None else "public key only"
        return (
            f"RsaKeyring(<{self._public.key_size}-bit RSA {kind}>, "
            f"material_description={self.material_description!r})"
        )

    def on_encrypt(self, materials: EncryptionMaterials) -> EncryptionMaterials:
        data_key = raw_key_data_key(materials, "RSA keys")
        name = cek_algorithm_name(materials.suite).encode("ascii")
        pseudo_key = bytearray([len(data_key)]) + data_key + name
        wrapped = self._public.encrypt(bytes(pseudo_key), _oaep(hashes.SHA1()))
        pseudo_key[:] = bytes(len(pseudo_key))
        return record_raw_wrap(
            materials, data_key, wrapped, WrapAlgorithm.RSA_OAEP_SHA1, self.material_description
        )

    def on_decrypt(self, materials: DecryptionMaterials) -> DecryptionMaterials:
        meta = materials.metadata
        self._refuse_other_family(meta)
        if self._private is None:
            raise MissingPrivateKeyError(
                "this RsaKeyring was built from a public key only, which can encrypt but not "
                "decrypt; give it the private key (private_key=...) to read objects"
            )
        edk = meta.encrypted_data_key
        wrap = meta.wrap_algorithm
        if wrap is WrapAlgorithm.RSA_OAEP_SHA1:
            pseudo_key = self._decrypt(edk, _oaep(hashes.SHA1()))
            expected_name = cek_algorithm_name(meta.suite).encode("ascii")
            length = pseudo_key[0] if pseudo_key else -1
            data_key = pseudo_key[1 : 1 + length] if length > 0 else b""
            name = pseudo_key[1 + length :] if length > 0 else b""
            if len(data_key) != length or not hmac.compare_digest(name, expected_name):
                raise DataKeyUnwrapError(_UNWRAP_FAILED)
            legacy = False
        elif wrap is WrapAlgorithm.RSA_OAEP_SHA256:
            # Java's "RSA/ECB/OAEPWithSHA-256AndMGF1Padding" uses MGF1 with SHA-1 under the
            # default provider and MGF1 with SHA-256 under others; both occur in the wild.
            try:
                data_key = self._decrypt(edk, _oaep(hashes.SHA256(), mgf=hashes.SHA1()))
            except DataKeyUnwrapError:
                data_key = self._decrypt(edk, _oaep(hashes.SHA256()))
            legacy = True
        else:  # V1: PKCS#1 v1.5
            # OpenSSL's implicit rejection turns bad padding into a random "key" of random
            # length; when that length fits, the CBC content fails next: it must fail alike.
            materials.content_failure_message = _UNWRAP_FAILED
            data_key = self._decrypt(edk, padding.PKCS1v15())
            legacy = True
        try:
            materials.plaintext_data_key = check_unwrapped_length(
                data_key, legacy=legacy, what="RSA keyring"
            )
        except DataKeyUnwrapError:
            raise DataKeyUnwrapError(_UNWRAP_FAILED) from None
        return materials

    def _decrypt(self, edk: bytes, pad: padding.AsymmetricPadding) -> bytes:
        assert self._private is not None
        try:
            return self._private.decrypt(edk, pad)
        except ValueError:
            raise DataKeyUnwrapError(_UNWRAP_FAILED) from None


def _oaep(algorithm: hashes.HashAlgorithm, mgf: hashes.HashAlgorithm | None = None) -> padding.OAEP:
    return padding.OAEP(mgf=padding.MGF1(mgf or algorithm), algorithm=algorithm, label=None)
