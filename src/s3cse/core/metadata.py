"""The crypto metadata codec: V1/V2/V3 object metadata and instruction files.

Parsing is strict: the format family is detected from the keys present, keys of
two families at once are refused (header spoofing), V3 fields that must live in
the object are refused when found in an instruction file, and every field is
checked for presence, base64 and length before anything is decrypted.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import email.errors
import email.header
import enum
import json
from collections.abc import Mapping
from typing import Any

from ..errors import (
    DuplicateMetadataError,
    MalformedMetadataError,
    MixedFormatMetadataError,
    NotEncryptedError,
    S3CSEError,
)
from .kdf import COMMITMENT_LENGTH, MESSAGE_ID_LENGTH
from .suites import AlgorithmSuite

__all__ = [
    "INSTRUCTION_FILE_MARKER",
    "INSTRUCTION_FILE_SUFFIX",
    "ContentMetadata",
    "FormatVersion",
    "WrapAlgorithm",
    "cek_algorithm_name",
    "decode_instruction_file",
    "encode_instruction_file",
    "encode_metadata",
    "has_crypto_metadata",
    "metadata_name_meaning",
    "needs_instruction_file",
    "parse_metadata",
]

INSTRUCTION_FILE_SUFFIX = ".instruction"
#: S3 user metadata every instruction file object carries (``x-amz-meta-x-amz-crypto-instr-file``).
INSTRUCTION_FILE_MARKER = {"x-amz-crypto-instr-file": ""}

# Metadata key names (as S3 returns them in a response's Metadata: lower case, no prefix).
KEY_V1 = "x-amz-key"
KEY_V2 = "x-amz-key-v2"
IV = "x-amz-iv"
MATDESC = "x-amz-matdesc"
WRAP_ALG = "x-amz-wrap-alg"
CEK_ALG = "x-amz-cek-alg"
TAG_LEN = "x-amz-tag-len"
UNENCRYPTED_LENGTH = "x-amz-unencrypted-content-length"
V3_KEY = "x-amz-3"
V3_WRAP = "x-amz-w"
V3_CEK = "x-amz-c"
V3_COMMITMENT = "x-amz-d"
V3_MESSAGE_ID = "x-amz-i"
V3_MATDESC = "x-amz-m"
V3_CONTEXT = "x-amz-t"

_V1_ONLY = frozenset({KEY_V1})
_V2_ONLY = frozenset({KEY_V2, WRAP_ALG, CEK_ALG, TAG_LEN})
_V1_V2_SHARED = frozenset({IV, MATDESC})
_V3_KEYS = frozenset(
    {V3_KEY, V3_WRAP, V3_CEK, V3_COMMITMENT, V3_MESSAGE_ID, V3_MATDESC, V3_CONTEXT}
)
# V3 fields that always stay in the object's own metadata.
_V3_OBJECT_ONLY = frozenset({V3_CEK, V3_COMMITMENT, V3_MESSAGE_ID})
_V3_FILE_KEYS = frozenset({V3_KEY, V3_WRAP, V3_MATDESC, V3_CONTEXT})
_ALL_CRYPTO_KEYS = _V1_ONLY | _V2_ONLY | _V1_V2_SHARED | _V3_KEYS | {UNENCRYPTED_LENGTH}

#: The KMS encryption-context entry the format adds (the content algorithm it binds).
KMS_CONTEXT_CEK_ALG = "aws:x-amz-cek-alg"
#: The entry naming the KMS key in the context of legacy ``kms`` wraps.
KMS_CONTEXT_KEY_ID = "kms_cmk_id"
_RESERVED_CONTEXT_KEYS = frozenset({KMS_CONTEXT_CEK_ALG, KMS_CONTEXT_KEY_ID})

_GCM_TAG_LENGTH = AlgorithmSuite.AES_256_GCM_HKDF_SHA512_COMMIT_KEY.tag_length

_CEK_GCM = "AES/GCM/NoPadding"
_CEK_CBC = "AES/CBC/PKCS5Padding"
_V3_CEK_VALUE = str(AlgorithmSuite.AES_256_GCM_HKDF_SHA512_COMMIT_KEY.value)  # "115"


class FormatVersion(enum.IntEnum):
    """The metadata format family of an object."""

    V1 = 1
    V2 = 2
    V3 = 3


class WrapAlgorithm(enum.Enum):
    """How the data key is wrapped, by its V2 name (``x-amz-wrap-alg``)."""

    KMS_CONTEXT = "kms+context"
    AES_GCM = "AES/GCM"
    RSA_OAEP_SHA1 = "RSA-OAEP-SHA1"
    KMS = "kms"
    AES_WRAP = "AESWrap"
    RSA_OAEP_SHA256 = "RSA/ECB/OAEPWithSHA-256AndMGF1Padding"
    #: V1 objects name no wrap algorithm: AES-ECB for an AES master key, RSA PKCS#1 v1.5 for RSA.
    V1_IMPLIED = "V1 (implied by the master key type)"

    @property
    def is_legacy(self) -> bool:
        """Legacy wraps are decrypt-only, behind ``enable_legacy_wrapping``."""
        return self not in (
            WrapAlgorithm.KMS_CONTEXT,
            WrapAlgorithm.AES_GCM,
            WrapAlgorithm.RSA_OAEP_SHA1,
        )

    @property
    def v3_code(self) -> str:
        """The code stored in ``x-amz-w`` (current wraps only)."""
        try:
            return _V3_WRAP_CODES_BY_ALG[self]
        except KeyError:
            raise MalformedMetadataError(
                f"wrap algorithm {self.value} has no V3 code", field=V3_WRAP
            ) from None

    @property
    def key_family(self) -> str:
        """``"kms"``, ``"aes"``, ``"rsa"`` or ``"v1"`` (AES or RSA, chosen by the master key)."""
        return {
            WrapAlgorithm.KMS_CONTEXT: "kms",
            WrapAlgorithm.KMS: "kms",
            WrapAlgorithm.AES_GCM: "aes",
            WrapAlgorithm.AES_WRAP: "aes",
            WrapAlgorithm.RSA_OAEP_SHA1: "rsa",
            WrapAlgorithm.RSA_OAEP_SHA256: "rsa",
            WrapAlgorithm.V1_IMPLIED: "v1",
        }[self]


_V3_WRAP_CODES_BY_ALG = {
    WrapAlgorithm.KMS_CONTEXT: "12",
    WrapAlgorithm.AES_GCM: "02",
    WrapAlgorithm.RSA_OAEP_SHA1: "22",
}
_V3_WRAP_ALGS_BY_CODE = {code: alg for alg, code in _V3_WRAP_CODES_BY_ALG.items()}
_V2_WRAP_ALGS_BY_NAME = {
    alg.value: alg for alg in WrapAlgorithm if alg is not WrapAlgorithm.V1_IMPLIED
}


_NAME_MEANINGS = {
    V3_KEY: "the object's data key, wrapped (encrypted) by the master key",
    V3_WRAP: "how the data key is wrapped: 02 AES-GCM, 12 KMS, 22 RSA-OAEP",
    V3_CEK: "the content cipher: 115 is AES-256-GCM with a key commitment (V3)",
    V3_COMMITMENT: "the key commitment: ties the data key to this object's content key",
    V3_MESSAGE_ID: "a random id from which the content key and IV are derived",
    V3_MATDESC: "the material description: which AES/RSA master key wrapped the data key",
    V3_CONTEXT: "the KMS encryption context, bound into the wrapped data key",
    KEY_V2: "the object's data key, wrapped by the master key (V2)",
    KEY_V1: "the object's data key, wrapped by the master key (V1, legacy)",
    IV: "the content cipher's IV (nonce)",
    MATDESC: "the material description (AES/RSA) or KMS encryption context",
    WRAP_ALG: "how the data key is wrapped (V2)",
    CEK_ALG: "the content cipher (V2)",
    TAG_LEN: "the GCM authentication tag's length in bits",
    UNENCRYPTED_LENGTH: "the plaintext length (a hint, not authenticated)",
}


def metadata_name_meaning(name: str) -> str | None:
    """What a crypto metadata name (with or without ``x-amz-meta-``) holds, in one line;
    None for a name that is not the format's (the user's own metadata)."""
    name = name.lower()
    if name.startswith("x-amz-meta-"):
        name = name[len("x-amz-meta-") :]
    return _NAME_MEANINGS.get(name)


def cek_algorithm_name(suite: AlgorithmSuite) -> str:
    """The content algorithm's name as bound into wraps and KMS contexts.

    ``AES/GCM/NoPadding`` (V2), ``AES/CBC/PKCS5Padding`` (V1), ``115`` (V3).
    """
    if suite.is_committing:
        return _V3_CEK_VALUE
    if suite.cipher == "CBC":
        return _CEK_CBC
    return _CEK_GCM


@dataclasses.dataclass(frozen=True)
class ContentMetadata:
    """Everything the format stores about one encrypted object, parsed and checked.

    ``material_description`` is the raw keys' material description, or for KMS
    wraps the whole stored encryption context (including ``aws:x-amz-cek-alg``).
    ``iv`` is the IV for V1/V2 and the 28-byte message id for V3.
    """

    version: FormatVersion
    suite: AlgorithmSuite
    wrap_algorithm: WrapAlgorithm
    encrypted_data_key: bytes = dataclasses.field(repr=False)
    iv: bytes
    material_description: Mapping[str, str]
    key_commitment: bytes | None = None
    unencrypted_content_length: int | None = None
    from_instruction_file: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "material_description", dict(self.material_description))

    def plaintext_length(self, stored_length: int) -> int | None:
        """The plaintext size of this object when S3 stores ``stored_length`` bytes of it,
        without a key: GCM appends a 16-byte tag; CBC pads, so its size is known only from
        ``x-amz-unencrypted-content-length`` (None when that is absent)."""
        if self.suite.cipher == "GCM":
            return max(0, stored_length - self.suite.tag_length)
        return self.unencrypted_content_length

    @property
    def kms_encryption_context(self) -> dict[str, str] | None:
        """For KMS wraps: the caller's encryption context, without the entries the format
        itself adds (``aws:x-amz-cek-alg``, and ``kms_cmk_id`` of legacy objects); else None."""
        if self.wrap_algorithm.key_family != "kms":
            return None
        return {
            k: v for k, v in self.material_description.items() if k not in _RESERVED_CONTEXT_KEYS
        }

    @property
    def kms_key_id(self) -> str | None:
        """The KMS key named in the stored context (legacy ``kms`` wraps name it); None when
        the key is known only inside the wrapped key (KMS reports it on decrypt)."""
        if self.wrap_algorithm.key_family != "kms":
            return None
        return self.material_description.get(KMS_CONTEXT_KEY_ID)

    def describe(self, stored_length: int | None = None) -> dict[str, Any]:
        """A JSON-friendly summary without secrets (for ``inspect``, ``ls`` and logs);
        with ``stored_length``, also the ciphertext and plaintext sizes."""
        info: dict[str, Any] = {
            "format": f"V{int(self.version)}",
            "suite": self.suite.name,
            "suite_id": f"0x{self.suite.value:04X}",
            "wrap_algorithm": self.wrap_algorithm.value,
            "key_commitment_present": self.key_commitment is not None,
            "encrypted_data_key_length": len(self.encrypted_data_key),
            "metadata_location": "instruction file" if self.from_instruction_file else "object",
            "unencrypted_content_length": self.unencrypted_content_length,
        }
        context = self.kms_encryption_context
        if context is None:
            info["material_description"] = dict(self.material_description)
        else:
            info["encryption_context"] = context
            info["kms_key_id"] = (
                self.kms_key_id or "(inside the wrapped key; KMS reports it on decrypt)"
            )
        if stored_length is not None:
            info["ciphertext_size"] = stored_length
            info["plaintext_size"] = self.plaintext_length(stored_length)
        return info


def likely_plaintext_length(stored_length: int) -> int:
    """The plaintext size of an object S3 stores in ``stored_length`` bytes, assuming the
    AES-GCM content of every object written today (V2, V3): for progress estimates made
    before the object's metadata is read. :meth:`ContentMetadata.plaintext_length` knows."""
    return max(0, stored_length - _GCM_TAG_LENGTH)


# ---------------------------------------------------------------- decoding values


def decode_metadata_value(value: str) -> str:
    """Undo the encodings S3 applies to non-ASCII user metadata values.

    S3 returns such values either RFC 2047-encoded (``=?UTF-8?B?...?=``) or as
    their UTF-8 bytes shown as Latin-1 characters. ASCII values are unchanged.
    """
    stripped = value.strip()
    if stripped.startswith("=?") and stripped.endswith("?="):  # the whole value is encoded
        try:
            return str(email.header.make_header(email.header.decode_header(value)))
        except (ValueError, LookupError, UnicodeDecodeError, email.errors.HeaderParseError):
            return value
    if value.isascii():
        return value
    try:
        return value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return value


def _normalise(metadata: Mapping[str, str], *, from_s3: bool = True) -> dict[str, str]:
    """Lower-case names without ``x-amz-meta-``; values as S3 meant them (S3 encodes
    object metadata, never instruction-file JSON, so only ``from_s3`` values are decoded)."""
    out: dict[str, str] = {}
    for name, value in metadata.items():
        if not isinstance(name, str):
            raise MalformedMetadataError("a metadata name is not a string")
        # ASCII-only lowering: str.lower() maps e.g. the Kelvin sign to "k", which would
        # make a name no other reader knows into one of ours.
        key = name.lower() if name.isascii() else name
        if key.startswith("x-amz-meta-"):
            key = key[len("x-amz-meta-") :]
        if not isinstance(value, str):
            raise MalformedMetadataError(f"metadata value of {key} is not a string", field=key)
        if key in out and key in _ALL_CRYPTO_KEYS:
            # e.g. x-amz-meta-x-amz-3 beside x-amz-3: other readers see two names, not one.
            raise DuplicateMetadataError(
                f"the crypto metadata field {key} arrives under two names; refusing to choose "
                "between them",
                field=key,
            )
        out[key] = decode_metadata_value(value) if from_s3 else value
    return out


def _shown(value: object, limit: int = 40) -> str:
    """An attacker's value as an error message may show it: quoted, and cut short."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 5]}...' ({len(str(value))} characters)"


def _required(fields: Mapping[str, str], name: str) -> str:
    value = fields.get(name)
    if value is None:
        raise MalformedMetadataError(f"crypto metadata field {name} is missing", field=name)
    return value


def _wrap_algorithm(
    table: Mapping[str, WrapAlgorithm], fields: Mapping[str, str], name: str, what: str
) -> WrapAlgorithm:
    value = _required(fields, name)
    try:
        return table[value]
    except KeyError:
        raise MalformedMetadataError(
            f"unknown {what} {_shown(value)} in {name}; expected one of {', '.join(sorted(table))}",
            field=name,
        ) from None


def _b64(fields: Mapping[str, str], name: str, *, length: int | None = None) -> bytes:
    raw = _required(fields, name)
    try:
        value = base64.b64decode(raw.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise MalformedMetadataError(
            f"crypto metadata field {name} is not valid base64", field=name
        ) from None
    if not value:
        raise MalformedMetadataError(f"crypto metadata field {name} is empty", field=name)
    if length is not None and len(value) != length:
        raise MalformedMetadataError(
            f"crypto metadata field {name} holds {len(value)} bytes, expected {length}",
            field=name,
        )
    return value


def _json_map(fields: Mapping[str, str], name: str) -> dict[str, str]:
    raw = fields.get(name)
    if raw is None:
        return {}
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        raise MalformedMetadataError(
            f"crypto metadata field {name} is not valid JSON", field=name
        ) from None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise MalformedMetadataError(
            f"crypto metadata field {name} must be a JSON object of strings", field=name
        )
    return value


def _length(fields: Mapping[str, str]) -> int | None:
    raw = fields.get(UNENCRYPTED_LENGTH)
    if raw is None:
        return None
    # No plaintext is longer than 2^36 bytes: 20 digits are plenty, and int() of an
    # attacker's 5,000-digit string would raise a bare ValueError (Python's digit limit).
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 20):
        raise MalformedMetadataError(
            f"crypto metadata field {UNENCRYPTED_LENGTH} is not a non-negative integer of at "
            f"most 20 digits (found {len(raw)} characters)",
            field=UNENCRYPTED_LENGTH,
        )
    return int(raw)


# ---------------------------------------------------------------- detection


def has_crypto_metadata(metadata: Mapping[str, str]) -> bool:
    """True if any crypto metadata key is present in ``metadata``."""
    return bool(set(_normalise(metadata)) & (_ALL_CRYPTO_KEYS - {UNENCRYPTED_LENGTH}))


def needs_instruction_file(object_metadata: Mapping[str, str]) -> bool:
    """True if the wrapped data key is not in the object's metadata.

    That is the case for V1/V2 instruction-file objects (no crypto keys at all)
    and V3 instruction-file objects (``x-amz-c``/``x-amz-d``/``x-amz-i`` only).
    """
    keys = set(_normalise(object_metadata))
    return not keys & {KEY_V1, KEY_V2, V3_KEY}


def _check_single_family(keys: set[str], where: str) -> None:
    families = []
    if keys & _V1_ONLY:
        families.append("V1")
    if keys & _V2_ONLY:
        families.append("V2")
    if keys & _V3_KEYS:
        families.append("V3")
    if len(families) > 1 or ("V3" in families and keys & _V1_V2_SHARED):
        found = sorted(keys & (_ALL_CRYPTO_KEYS - {UNENCRYPTED_LENGTH}))
        raise MixedFormatMetadataError(
            f"{where} mixes crypto metadata of more than one format version "
            f"({', '.join(found)}); refusing to guess which one is genuine"
        )


def parse_metadata(
    object_metadata: Mapping[str, str],
    instruction_file: Mapping[str, str] | None = None,
) -> ContentMetadata:
    """Parse and check an object's crypto metadata (and its instruction file, if any).

    ``object_metadata`` is the ``Metadata`` of a HeadObject/GetObject response (or
    the ``x-amz-meta-*`` headers). ``instruction_file`` is the decoded JSON of
    ``<key>.instruction`` when :func:`needs_instruction_file` said so. Whatever the
    input, the only errors are :class:`S3CSEError` subclasses.
    """
    try:
        return _parse_metadata(object_metadata, instruction_file)
    except S3CSEError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError, OverflowError) as exc:
        # A parser bug must not become a crash of a bulk job: name it and go on.
        raise MalformedMetadataError(
            f"the crypto metadata could not be parsed ({type(exc).__name__})"
        ) from None


def _parse_metadata(
    object_metadata: Mapping[str, str],
    instruction_file: Mapping[str, str] | None,
) -> ContentMetadata:
    obj = _normalise(object_metadata)
    obj_keys = set(obj) & _ALL_CRYPTO_KEYS
    _check_single_family(obj_keys, "the object's metadata")
    file = _normalise(instruction_file, from_s3=False) if instruction_file is not None else None
    file_keys = set(file) & _ALL_CRYPTO_KEYS if file is not None else set()
    if file is not None:
        _check_single_family(file_keys, "the instruction file")

    if obj_keys & _V3_KEYS:
        return _parse_v3(obj, file)
    if obj_keys & {KEY_V1, KEY_V2}:
        if file_keys - {UNENCRYPTED_LENGTH}:
            raise DuplicateMetadataError(
                "crypto metadata is present both in the object and in its instruction "
                "file; refusing to choose between them"
            )
        return _parse_v1_v2(obj, from_file=False)
    if obj_keys - {UNENCRYPTED_LENGTH}:
        raise MalformedMetadataError(
            "the object's crypto metadata has no wrapped data key "
            f"(neither {KEY_V1} nor {KEY_V2} nor {V3_KEY})",
            field=KEY_V2,
        )
    if file is None or not file_keys:
        raise NotEncryptedError(
            "the object has no client-side encryption metadata"
            + (" and its instruction file holds none" if file is not None else "")
        )
    if file_keys & _V3_KEYS:
        raise MalformedMetadataError(
            "the instruction file holds V3 fields but the object lacks x-amz-c, x-amz-d and "
            "x-amz-i, which V3 keeps in the object's own metadata",
            field=V3_CEK,
        )
    return _parse_v1_v2(file, from_file=True)


def _parse_v1_v2(fields: Mapping[str, str], *, from_file: bool) -> ContentMetadata:
    if KEY_V1 in fields:
        edk = _b64(fields, KEY_V1)
        suite = AlgorithmSuite.AES_256_CBC_IV16_NO_KDF
        return ContentMetadata(
            version=FormatVersion.V1,
            suite=suite,
            wrap_algorithm=WrapAlgorithm.V1_IMPLIED,
            encrypted_data_key=edk,
            iv=_b64(fields, IV, length=suite.iv_length),
            material_description=_json_map(fields, MATDESC),
            unencrypted_content_length=_length(fields),
            from_instruction_file=from_file,
        )
    edk = _b64(fields, KEY_V2)
    cek = fields.get(CEK_ALG)
    if cek == _CEK_GCM:
        suite = AlgorithmSuite.AES_256_GCM_IV12_TAG16_NO_KDF
        if fields.get(TAG_LEN) != "128":
            raise MalformedMetadataError(
                f"{TAG_LEN} must be 128 for {_CEK_GCM}, found {_shown(fields.get(TAG_LEN))}",
                field=TAG_LEN,
            )
    elif cek == _CEK_CBC:
        suite = AlgorithmSuite.AES_256_CBC_IV16_NO_KDF
        if TAG_LEN in fields:
            raise MalformedMetadataError(
                f"{TAG_LEN} is present but the content algorithm {_CEK_CBC} has no tag",
                field=TAG_LEN,
            )
    elif cek is None:
        raise MalformedMetadataError(f"crypto metadata field {CEK_ALG} is missing", field=CEK_ALG)
    else:
        raise MalformedMetadataError(
            f"unknown content algorithm {_shown(cek)} in {CEK_ALG}; expected {_CEK_GCM} or {_CEK_CBC}",
            field=CEK_ALG,
        )
    wrap = _wrap_algorithm(_V2_WRAP_ALGS_BY_NAME, fields, WRAP_ALG, "wrap algorithm")
    return ContentMetadata(
        version=FormatVersion.V2,
        suite=suite,
        wrap_algorithm=wrap,
        encrypted_data_key=edk,
        iv=_b64(fields, IV, length=suite.iv_length),
        material_description=_json_map(fields, MATDESC),
        unencrypted_content_length=_length(fields),
        from_instruction_file=from_file,
    )


def _parse_v3(obj: Mapping[str, str], file: Mapping[str, str] | None) -> ContentMetadata:
    if V3_KEY in obj:
        if file is not None and set(file) & (_ALL_CRYPTO_KEYS - {UNENCRYPTED_LENGTH}):
            raise DuplicateMetadataError(
                "crypto metadata is present both in the object and in its instruction "
                "file; refusing to choose between them"
            )
        wrapped: Mapping[str, str] = obj
        from_file = False
    else:
        if file is None:
            raise MalformedMetadataError(
                f"V3 object without {V3_KEY}: its instruction file is needed", field=V3_KEY
            )
        misplaced = sorted(set(file) & _V3_OBJECT_ONLY)
        if misplaced:
            raise MalformedMetadataError(
                f"the instruction file holds {', '.join(misplaced)}, which V3 keeps only in "
                "the object's own metadata: the instruction file was tampered with",
                field=misplaced[0],
            )
        stray = sorted(set(obj) & (_V3_FILE_KEYS - {V3_KEY}))
        if stray:
            raise DuplicateMetadataError(
                f"{', '.join(stray)} found in the object's metadata although its data key "
                "is in the instruction file"
            )
        wrapped = file
        from_file = True
    cek = _required(obj, V3_CEK)
    if cek != _V3_CEK_VALUE:
        raise MalformedMetadataError(
            f"unknown V3 content algorithm {_shown(cek)} in {V3_CEK}; expected {_V3_CEK_VALUE}",
            field=V3_CEK,
        )
    wrap = _wrap_algorithm(_V3_WRAP_ALGS_BY_CODE, wrapped, V3_WRAP, "V3 wrap algorithm code")
    # KMS wraps keep their encryption context in x-amz-t, raw keys their description in
    # x-amz-m: the other name beside them is a forgery, never a second source.
    if wrap.key_family == "kms":
        own, other, what = V3_CONTEXT, V3_MATDESC, "encryption context"
    else:
        own, other, what = V3_MATDESC, V3_CONTEXT, "material description"
    if other in wrapped:
        raise MalformedMetadataError(
            f"{other} found on an object wrapped with {wrap.value}, which stores its {what} "
            f"in {own}",
            field=other,
        )
    description = _json_map(wrapped, own)
    suite = AlgorithmSuite.AES_256_GCM_HKDF_SHA512_COMMIT_KEY
    return ContentMetadata(
        version=FormatVersion.V3,
        suite=suite,
        wrap_algorithm=wrap,
        encrypted_data_key=_b64(wrapped, V3_KEY),
        iv=_b64(obj, V3_MESSAGE_ID, length=MESSAGE_ID_LENGTH),
        material_description=description,
        key_commitment=_b64(obj, V3_COMMITMENT, length=COMMITMENT_LENGTH),
        unencrypted_content_length=_length(obj if UNENCRYPTED_LENGTH in obj else wrapped),
        from_instruction_file=from_file,
    )


# ---------------------------------------------------------------- encoding


def _b64encode(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def _json_encode(value: Mapping[str, str]) -> str:
    # ASCII-safe: S3 metadata values must be ASCII to survive every client unchanged.
    return json.dumps(dict(value), separators=(",", ":"), ensure_ascii=True)


def encode_metadata(
    content: ContentMetadata, *, instruction_file: bool = False
) -> tuple[dict[str, str], dict[str, str] | None]:
    """Return ``(object_metadata, instruction_file_or_None)`` for a V2 or V3 object.

    In instruction-file mode V2 puts everything in the file; V3 keeps ``x-amz-c``,
    ``x-amz-d`` and ``x-amz-i`` in the object. The plaintext length is never written
    into an instruction file (the official Python client refuses such files).
    """
    if content.version is FormatVersion.V1:
        raise MalformedMetadataError("V1 metadata is read-only; s3cse writes V2 or V3")
    if content.wrap_algorithm.is_legacy:
        raise MalformedMetadataError(
            f"wrap algorithm {content.wrap_algorithm.value} is decrypt-only"
        )
    if content.version is FormatVersion.V2:
        fields = {
            KEY_V2: _b64encode(content.encrypted_data_key),
            IV: _b64encode(content.iv),
            MATDESC: _json_encode(content.material_description),
            WRAP_ALG: content.wrap_algorithm.value,
            CEK_ALG: cek_algorithm_name(content.suite),
            TAG_LEN: "128",
        }
        if instruction_file:
            return {}, fields
        if content.unencrypted_content_length is not None:
            fields[UNENCRYPTED_LENGTH] = str(content.unencrypted_content_length)
        return fields, None
    if content.key_commitment is None:
        raise MalformedMetadataError("V3 metadata needs a key commitment", field=V3_COMMITMENT)
    object_fields = {
        V3_CEK: _V3_CEK_VALUE,
        V3_COMMITMENT: _b64encode(content.key_commitment),
        V3_MESSAGE_ID: _b64encode(content.iv),
    }
    description_key = V3_CONTEXT if content.wrap_algorithm.key_family == "kms" else V3_MATDESC
    wrapped_fields = {
        V3_KEY: _b64encode(content.encrypted_data_key),
        V3_WRAP: content.wrap_algorithm.v3_code,
        description_key: _json_encode(content.material_description),
    }
    if instruction_file:
        return object_fields, wrapped_fields
    return {**object_fields, **wrapped_fields}, None


def encode_instruction_file(fields: Mapping[str, str]) -> bytes:
    """The body of an instruction file object: a JSON object of strings."""
    return json.dumps(dict(fields), separators=(",", ":"), ensure_ascii=True).encode("ascii")


def decode_instruction_file(body: bytes) -> dict[str, str]:
    """Parse an instruction file body; raise MalformedMetadataError if it is not one."""

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        names = [name for name, _ in pairs]
        if len(set(names)) != len(names):
            raise MalformedMetadataError("the instruction file names a field twice")
        return dict(pairs)

    try:
        value = json.loads(body.decode("utf-8"), object_pairs_hook=no_duplicates)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        if isinstance(exc, MalformedMetadataError):
            raise
        raise MalformedMetadataError("the instruction file is not valid JSON") from None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise MalformedMetadataError("the instruction file must be a JSON object of strings")
    return value


def crypto_metadata_keys() -> frozenset[str]:
    """Every metadata name the format reserves (user metadata may not use them)."""
    return _ALL_CRYPTO_KEYS | {"x-amz-crypto-instr-file"}
