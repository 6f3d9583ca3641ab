"""Envelope encryption of one object, bytes and dicts in, bytes and dicts out.

This is the public API for people who move bytes themselves, and what every
shell (boto3 client, transfers, CLI) drives:

* :func:`begin_encryption` gives an :class:`ObjectEncryptor`: the metadata to
  store, and a streaming cipher for the content (or its parts).
* :func:`begin_decryption` checks the metadata, the commitment policy and the
  legacy switches *before* any key is unwrapped, then gives an
  :class:`ObjectDecryptor` for the content (or, with
  :func:`begin_ranged_decryption`, a byte range of it).
* :func:`encrypt` / :func:`decrypt` do the same for a whole object in memory.
"""

from __future__ import annotations

import array
import dataclasses
import hmac
import os
from collections.abc import Callable, Mapping

from cryptography.hazmat.primitives.poly1305 import Poly1305

from ..errors import (
    CipherStateError,
    ConfigurationError,
    EncryptionContextMismatchError,
    IntegrityError,
    KeyringError,
    LegacyAlgorithmDisabledError,
    MalformedMetadataError,
    RangeNotAllowedError,
    SourceChangedError,
)
from . import kdf
from .ciphers import (
    TAG_LENGTH,
    CbcDecryptor,
    CtrDecryptor,
    GcmDecryptor,
    GcmEncryptor,
    MultipartEncryptor,
    RangePlan,
    gcm_counter_block,
)
from .keyrings.base import Keyring
from .materials import (
    CryptoMaterialsManager,
    DecryptionMaterials,
    DefaultCryptoMaterialsManager,
    EncryptionMaterials,
)
from .metadata import (
    ContentMetadata,
    FormatVersion,
    encode_metadata,
    parse_metadata,
)
from .suites import (
    AlgorithmSuite,
    CommitmentPolicy,
    check_decrypt_allowed,
    check_encrypt_suite,
    check_plaintext_length,
    default_suite_for,
)

__all__ = [
    "CryptoConfig",
    "EncryptedObject",
    "ObjectDecryptor",
    "ObjectEncryptor",
    "begin_decryption",
    "begin_encryption",
    "begin_ranged_decryption",
    "can_unwrap",
    "decrypt",
    "encrypt",
    "rewrap",
]

_V3_IV = b"\x01" * 12


@dataclasses.dataclass(frozen=True)
class CryptoConfig:
    """The security settings shared by every operation of a client.

    ``encryption_algorithm`` defaults to what the policy writes (V3 unless the
    policy forbids committing encryption). Conflicts fail here, at construction.
    """

    commitment_policy: CommitmentPolicy | str = CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT
    encryption_algorithm: AlgorithmSuite | None = None
    enable_legacy_wrapping: bool = False
    enable_legacy_unauthenticated_modes: bool = False

    def __post_init__(self) -> None:
        policy = CommitmentPolicy.parse(self.commitment_policy)
        object.__setattr__(self, "commitment_policy", policy)
        suite = self.encryption_algorithm
        if suite is None:
            suite = default_suite_for(policy)
        elif not isinstance(suite, AlgorithmSuite):
            raise ConfigurationError(
                f"encryption_algorithm must be an AlgorithmSuite, not {type(suite).__name__}"
            )
        check_encrypt_suite(suite, policy)
        object.__setattr__(self, "encryption_algorithm", suite)

    @property
    def policy(self) -> CommitmentPolicy:
        assert isinstance(self.commitment_policy, CommitmentPolicy)
        return self.commitment_policy

    @property
    def suite(self) -> AlgorithmSuite:
        assert self.encryption_algorithm is not None
        return self.encryption_algorithm


MaterialsSource = Keyring | CryptoMaterialsManager


def as_cmm(source: MaterialsSource) -> CryptoMaterialsManager:
    """A CMM for ``source`` (a keyring gets the default CMM)."""
    if isinstance(source, CryptoMaterialsManager):
        return source
    if isinstance(source, Keyring):
        return DefaultCryptoMaterialsManager(source)
    raise ConfigurationError(
        f"expected a keyring or a CryptoMaterialsManager, got {type(source).__name__}"
    )


# ---------------------------------------------------------------- encryption


class _ReplayGuard:
    """Checks that a replay after :meth:`ObjectEncryptor.rewind` feeds the same plaintext.

    The first pass records how its plaintext was cut and a Poly1305 tag of each piece,
    under a random key that never leaves this object; a replayed piece must have the same
    length and tag *before* it is encrypted again. Unlike a CRC, a keyed tag cannot be
    matched by a deliberately chosen change: whoever controls the source learns nothing of
    the key (the tags stay in memory, and the first mismatch ends the upload).
    """

    def __init__(self) -> None:
        self._key = os.urandom(32)
        self._lengths = array.array("Q")
        self._tags = bytearray()
        self._index = 0
        self._finished_length: int | None = None  # plaintext length of a completed pass
        self._length = 0
        self._last_appended = False

    def rewind(self) -> None:
        self._index = self._length = 0

    def check(self, data: bytes | bytearray | memoryview) -> None:
        tag = Poly1305.generate_tag(self._key, data)
        i = self._index
        if i < len(self._lengths):
            if self._lengths[i] != len(data):
                raise CipherStateError(
                    f"a replay after rewind() must cut the plaintext as the first pass did: "
                    f"piece {i} was {self._lengths[i]} bytes, now {len(data)}"
                )
            if not hmac.compare_digest(bytes(self._tags[16 * i : 16 * i + 16]), tag):
                raise SourceChangedError(
                    f"the upload source changed between passes over it (bytes from "
                    f"{self._length} differ); refusing to encrypt different plaintext under "
                    "the same key and IV"
                )
        elif self._finished_length is not None:
            raise SourceChangedError(
                f"the upload source grew between passes over it (the first pass had "
                f"{self._finished_length} bytes); refusing to encrypt it under the same IV"
            )
        appended = i >= len(self._lengths)
        if appended:
            self._lengths.append(len(data))
            self._tags += tag
        self._last_appended = appended
        self._index += 1
        self._length += len(data)

    def undo(self, data: bytes | bytearray | memoryview) -> None:
        """Forget the last piece: the cipher refused it, so it was never encrypted."""
        self._index -= 1
        self._length -= len(data)
        if self._last_appended:
            self._lengths.pop()
            del self._tags[-16:]
            self._last_appended = False

    @property
    def started(self) -> bool:
        return self._length > 0 or bool(self._lengths)

    def finish(self) -> None:
        if self._finished_length is None:
            self._finished_length = self._length
        elif self._length != self._finished_length:
            raise SourceChangedError(
                f"the upload source shrank between passes over it ({self._finished_length} "
                f"bytes, now {self._length}); refusing to tag a different plaintext under the "
                "same IV"
            )


class ObjectEncryptor:
    """One object's encryption: the metadata to store and the content cipher.

    ``metadata`` goes into the object's user metadata; ``instruction_file`` (when
    asked for) is the JSON map to store as ``<key>.instruction``. Feed plaintext
    with ``update``/``update_into`` and append ``finalize()`` (the tag), or use
    :meth:`multipart` to produce the ciphertext part by part.
    """

    def __init__(
        self,
        content: ContentMetadata,
        content_key: bytes,
        iv: bytes,
        aad: bytes,
        instruction_file: bool,
    ):
        self.content_metadata = content
        self.metadata, self.instruction_file = encode_metadata(
            content, instruction_file=instruction_file
        )
        self._make_cipher: Callable[[], GcmEncryptor] = lambda: GcmEncryptor(content_key, iv, aad)
        self._cipher = self._make_cipher()
        self._guard = _ReplayGuard()
        self._multipart = False

    def move_metadata_to_instruction_file(self) -> None:
        """Store the crypto metadata in an instruction file instead of the object's
        metadata (before anything is written; the content is the same either way)."""
        self.content_metadata = dataclasses.replace(
            self.content_metadata, from_instruction_file=True
        )
        self.metadata, self.instruction_file = encode_metadata(
            self.content_metadata, instruction_file=True
        )

    def rewind(self) -> None:
        """Start the content again from byte 0, to resend *the same plaintext* (an HTTP
        retry or a checksum pass): the same key and IV give the same ciphertext.

        What follows is checked against the first pass, piece by piece, before it is
        encrypted: it must be cut at the same places, or :class:`CipherStateError` is
        raised; a piece that differs raises :class:`SourceChangedError`, and so does a
        replay that ends earlier or goes on longer than a completed first pass.
        """
        if self._multipart:
            raise CipherStateError("a multipart encryption cannot be rewound")
        self._cipher = self._make_cipher()
        self._guard.rewind()

    def __repr__(self) -> str:
        return (
            f"ObjectEncryptor(V{int(self.content_metadata.version)}, "
            f"{self.content_metadata.wrap_algorithm.value})"
        )

    @property
    def suite(self) -> AlgorithmSuite:
        return self.content_metadata.suite

    @staticmethod
    def ciphertext_length(plaintext_length: int) -> int:
        """The stored size of a plaintext of ``plaintext_length`` bytes."""
        return plaintext_length + TAG_LENGTH

    def update(self, data: bytes | bytearray | memoryview) -> bytes:
        self._check_usable()
        self._guard.check(data)
        try:
            return self._cipher.update(data)
        except BaseException:
            self._guard.undo(data)
            raise

    def update_into(self, data: bytes | bytearray | memoryview, out: bytearray | memoryview) -> int:
        self._check_usable()
        self._guard.check(data)
        try:
            return self._cipher.update_into(data, out)
        except BaseException:
            self._guard.undo(data)
            raise

    def finalize(self) -> bytes:
        """Finish the content and return the 16-byte tag that ends the ciphertext."""
        self._check_usable()
        self._guard.finish()
        return self._cipher.finalize()

    def _check_usable(self) -> None:
        if self._multipart:
            raise CipherStateError("this encryptor is producing multipart parts; use those")
        if self._cipher.finished:
            raise CipherStateError(
                "this encryptor has already been finalized; rewind() to replay the same content"
            )

    def multipart(self) -> MultipartEncryptor:
        """Switch to part-by-part encryption (use instead of update/finalize)."""
        if self._guard.started or self._cipher.finished:
            raise CipherStateError(
                "multipart() must come before any update(): this encryptor has started a "
                "stream already"
            )
        self._multipart = True
        return MultipartEncryptor(self._cipher)


def begin_encryption(
    keyring: MaterialsSource,
    config: CryptoConfig | None = None,
    *,
    encryption_context: Mapping[str, str] | None = None,
    instruction_file: bool = False,
    plaintext_length: int | None = None,
) -> ObjectEncryptor:
    """Get a data key from ``keyring`` and return the encryptor for one new object.

    ``plaintext_length``, when known, is checked against the GCM limit before any
    key is made and recorded in V2 metadata as ``x-amz-unencrypted-content-length``.
    """
    config = config or CryptoConfig()
    if plaintext_length is not None:
        check_plaintext_length(plaintext_length)
    suite = config.suite
    request = EncryptionMaterials(suite=suite, encryption_context=dict(encryption_context or {}))
    materials = as_cmm(keyring).get_encryption_materials(request)
    data_key = materials.plaintext_data_key
    if (
        data_key is None
        or materials.encrypted_data_key is None
        or materials.wrap_algorithm is None
        or len(data_key) != 32
    ):
        raise KeyringError("the keyring returned incomplete encryption materials")
    if suite.is_committing:
        message_id = _nonzero_random(kdf.MESSAGE_ID_LENGTH)
        content_key = kdf.derive_content_key(data_key, message_id)
        commitment: bytes | None = kdf.derive_commitment(data_key, message_id)
        iv, aad, stored_iv = _V3_IV, suite.id_bytes, message_id
        version = FormatVersion.V3
    else:
        stored_iv = iv = _nonzero_random(suite.iv_length)
        content_key, commitment, aad = bytes(data_key), None, b""
        version = FormatVersion.V2
    _wipe(data_key)
    materials.plaintext_data_key = None
    content = ContentMetadata(
        version=version,
        suite=suite,
        wrap_algorithm=materials.wrap_algorithm,
        encrypted_data_key=materials.encrypted_data_key,
        iv=stored_iv,
        material_description=materials.material_description,
        key_commitment=commitment,
        unencrypted_content_length=plaintext_length,
        from_instruction_file=instruction_file,
    )
    return ObjectEncryptor(content, content_key, iv, aad, instruction_file)


def _wipe(key: bytes | bytearray) -> None:
    """Overwrite a data key we own, once it is no longer needed (best effort: immutable
    ``bytes`` copies, such as the one in a KMS response, live until collected)."""
    if isinstance(key, bytearray):
        key[:] = bytes(len(key))


def _nonzero_random(n: int) -> bytes:
    value = os.urandom(n)
    while not any(value):  # all-zero IVs are refused; astronomically rare, but never used
        value = os.urandom(n)
    return value


# ---------------------------------------------------------------- decryption


class ObjectDecryptor:
    """One object's content decryption (GCM, legacy CBC, or a CTR range).

    For GCM, bytes from ``update`` are unauthenticated until ``finalize``
    returns without raising :class:`~s3cse.IntegrityError`.
    """

    def __init__(
        self,
        content: ContentMetadata,
        make_cipher: Callable[[], GcmDecryptor | CbcDecryptor | CtrDecryptor],
        *,
        authenticated: bool,
        make_range: Callable[[int, int, int], CtrDecryptor] | None = None,
    ):
        self.content_metadata = content
        self.authenticated = authenticated
        #: True once ``finalize`` verified the whole object's tag.
        self.verified = False
        self._make_cipher = make_cipher
        self._make_range = make_range
        self._cipher = make_cipher()

    def decrypt_verified_range(
        self, ciphertext: bytes | bytearray | memoryview, offset: int
    ) -> bytes:
        """Decrypt ``ciphertext``, the object's bytes from ``offset`` on, for random access
        *after* this decryptor verified the whole object (``finalize`` succeeded): the
        bytes must be the ones verified (e.g. a local copy), which the caller guarantees."""
        if not self.verified or self._make_range is None:
            raise CipherStateError(
                "random access needs an AES-GCM object whose tag this decryptor verified first"
            )
        skip = offset % 16
        cipher = self._make_range(offset // 16, skip, len(ciphertext))
        if skip:
            cipher.update(bytes(skip))  # the part of the first block before ``offset``
        return cipher.update(ciphertext)

    def fresh(self) -> ObjectDecryptor:
        """Another decryptor for the same content from its first byte, without a second
        key unwrap (for a verify pass followed by a decrypt pass)."""
        return ObjectDecryptor(
            self.content_metadata, self._make_cipher, authenticated=self.authenticated
        )

    def __repr__(self) -> str:
        return f"ObjectDecryptor(V{int(self.content_metadata.version)}, {self.suite.name})"

    @property
    def suite(self) -> AlgorithmSuite:
        return self.content_metadata.suite

    def plaintext_length(self, ciphertext_length: int) -> int | None:
        """The plaintext size of the whole object (None for CBC, known only at the end)."""
        if self.suite.cipher == "GCM":
            return max(0, ciphertext_length - TAG_LENGTH)
        return self.content_metadata.unencrypted_content_length

    def update(self, data: bytes | bytearray | memoryview) -> bytes:
        return self._cipher.update(data)

    def update_into(self, data: bytes | bytearray | memoryview, out: bytearray | memoryview) -> int:
        """Decrypt into ``out`` (at least ``len(data) + 31`` bytes); return bytes written."""
        return self._cipher.update_into(data, out)

    def finalize(self) -> bytes:
        """Verify (GCM) and return any last plaintext; raises IntegrityError on failure."""
        last = self._cipher.finalize()
        self.verified = self.authenticated
        return last


def _resolve(
    metadata: ContentMetadata | Mapping[str, str],
    instruction_file: Mapping[str, str] | None,
) -> ContentMetadata:
    if isinstance(metadata, ContentMetadata):
        return metadata
    return parse_metadata(metadata, instruction_file)


def _unwrap_data_key(
    keyring: MaterialsSource,
    content: ContentMetadata,
    config: CryptoConfig,
    encryption_context: Mapping[str, str] | None,
) -> tuple[bytes | bytearray, str | None]:
    """Policy and switch checks first (no key is touched before), then unwrap: (data key,
    the message a content failure must carry instead of its own, if any)."""
    check_decrypt_allowed(content.suite, config.policy)
    if content.suite.is_legacy and not config.enable_legacy_unauthenticated_modes:
        raise LegacyAlgorithmDisabledError(
            f"the object is encrypted with legacy unauthenticated AES-CBC ({content.suite.name}); "
            "reading it needs enable_legacy_unauthenticated_modes=True",
            switch="enable_legacy_unauthenticated_modes",
        )
    if content.wrap_algorithm.is_legacy and not config.enable_legacy_wrapping:
        raise LegacyAlgorithmDisabledError(
            f"the object's data key is wrapped with the legacy algorithm "
            f"{content.wrap_algorithm.value}; reading it needs enable_legacy_wrapping=True",
            switch="enable_legacy_wrapping",
        )
    if encryption_context and content.wrap_algorithm.key_family != "kms":
        # A read that checks a context must never pass on an object that binds none: with
        # a MultiKeyring, a substituted raw-key object would pass the tenant check the
        # application believes it makes. (Java ignores the context here; this is stricter.)
        raise EncryptionContextMismatchError(
            f"this read asks for the encryption context {sorted(encryption_context)} (keys), "
            f"but the object's data key is wrapped with {content.wrap_algorithm.value}, a raw "
            "key that binds no encryption context; read it without EncryptionContext if it is "
            "the object you meant (raw-key objects are told apart by material description)"
        )
    request = DecryptionMaterials(
        metadata=content,
        encryption_context=dict(encryption_context or {}),
        enable_legacy_wrapping=config.enable_legacy_wrapping,
    )
    materials = as_cmm(keyring).decrypt_materials(request)
    data_key = materials.plaintext_data_key
    materials.plaintext_data_key = None
    if data_key is None:
        raise KeyringError("the keyring returned no data key")
    return data_key, materials.content_failure_message


def _content_key(
    keyring: MaterialsSource,
    content: ContentMetadata,
    config: CryptoConfig,
    encryption_context: Mapping[str, str] | None,
) -> tuple[bytes, str | None]:
    """Unwrap, check the commitment (V3), then derive the content key: (content key, the
    message a legacy content failure must carry, see DecryptionMaterials)."""
    data_key, failure_message = _unwrap_data_key(keyring, content, config, encryption_context)
    try:
        if content.suite.is_committing:
            assert content.key_commitment is not None
            key = kdf.verify_commitment_and_derive(data_key, content.iv, content.key_commitment)
            return key, failure_message
        if content.suite.cipher == "GCM" and len(data_key) != 32:
            raise MalformedMetadataError("GCM objects need a 32-byte data key")
        return bytes(data_key), failure_message
    finally:
        _wipe(data_key)


def begin_decryption(
    keyring: MaterialsSource,
    metadata: ContentMetadata | Mapping[str, str],
    config: CryptoConfig | None = None,
    *,
    instruction_file: Mapping[str, str] | None = None,
    encryption_context: Mapping[str, str] | None = None,
) -> ObjectDecryptor:
    """Check the object's metadata against the policy and switches, unwrap its data
    key and return the decryptor for its whole content."""
    config = config or CryptoConfig()
    content = _resolve(metadata, instruction_file)
    key, failure_message = _content_key(keyring, content, config, encryption_context)
    if content.suite.cipher == "CBC":
        return ObjectDecryptor(
            content, lambda: CbcDecryptor(key, content.iv, failure_message), authenticated=False
        )
    iv = _V3_IV if content.suite.is_committing else content.iv
    aad = content.suite.id_bytes if content.suite.is_committing else b""
    return ObjectDecryptor(
        content,
        lambda: GcmDecryptor(key, iv, aad),
        authenticated=True,
        make_range=lambda block, skip, limit: CtrDecryptor(
            key, gcm_counter_block(iv, block), skip=skip, limit=limit
        ),
    )


def begin_ranged_decryption(
    keyring: MaterialsSource,
    metadata: ContentMetadata | Mapping[str, str],
    plan: RangePlan,
    config: CryptoConfig | None = None,
    *,
    instruction_file: Mapping[str, str] | None = None,
    encryption_context: Mapping[str, str] | None = None,
) -> ObjectDecryptor:
    """Decrypt the ciphertext bytes ``plan.fetch_range`` of a GCM object into exactly
    the plaintext range planned. Unauthenticated, hence behind the legacy switch."""
    config = config or CryptoConfig()
    if not config.enable_legacy_unauthenticated_modes:
        raise RangeNotAllowedError(
            "ranged reads cannot be authenticated (the GCM tag covers the whole object); "
            "they need enable_legacy_unauthenticated_modes=True"
        )
    content = _resolve(metadata, instruction_file)
    if content.suite.cipher != "GCM":
        raise RangeNotAllowedError(
            f"ranged reads are supported for AES-GCM objects only, not {content.suite.name}; "
            "read the whole object"
        )
    key, _ = _content_key(keyring, content, config, encryption_context)
    iv = _V3_IV if content.suite.is_committing else content.iv
    ranged = dataclasses.replace(content, suite=content.suite.ranged_counterpart)
    counter = gcm_counter_block(iv, plan.block_index)
    return ObjectDecryptor(
        ranged,
        lambda: CtrDecryptor(key, counter, skip=plan.skip, limit=plan.length),
        authenticated=False,
    )


# ---------------------------------------------------------------- re-encryption


def can_unwrap(
    keyring: MaterialsSource,
    metadata: ContentMetadata,
    config: CryptoConfig | None = None,
    *,
    encryption_context: Mapping[str, str] | None = None,
) -> bool:
    """True if ``keyring`` unwraps the object's data key (e.g. it is already rotated)."""
    try:
        _content_key(keyring, metadata, config or CryptoConfig(), encryption_context)
    except KeyringError:
        return False
    except IntegrityError:
        return False
    return True


def rewrap(
    old_keyring: MaterialsSource,
    new_keyring: MaterialsSource,
    metadata: ContentMetadata | Mapping[str, str],
    config: CryptoConfig | None = None,
    *,
    instruction_file: Mapping[str, str] | None = None,
    encryption_context: Mapping[str, str] | None = None,
    new_encryption_context: Mapping[str, str] | None = None,
    to_instruction_file: bool | None = None,
) -> ObjectRewrap:
    """Unwrap the object's data key with ``old_keyring`` and wrap the same key with
    ``new_keyring``: key rotation without touching the content.

    The V3 commitment is checked before the key is rewrapped (a forged key is never
    blessed by a rotation), and stays valid because the data key is unchanged.
    """
    config = config or CryptoConfig()
    content = _resolve(metadata, instruction_file)
    if content.version is FormatVersion.V1 or content.suite.cipher != "GCM":
        raise ConfigurationError(
            f"{content.suite.name} (V{int(content.version)}) objects cannot be re-keyed in "
            "place: the format can only store AES-GCM content under a current wrap; copy the "
            "object (decrypt and re-encrypt) to rewrite it as V3"
        )
    data_key, _ = _unwrap_data_key(old_keyring, content, config, encryption_context)
    if content.suite.is_committing:
        assert content.key_commitment is not None
        kdf.verify_commitment_and_derive(data_key, content.iv, content.key_commitment)
    request = EncryptionMaterials(
        suite=content.suite,
        encryption_context=dict(new_encryption_context or {}),
        plaintext_data_key=data_key,
    )
    materials = as_cmm(new_keyring).get_encryption_materials(request)
    if (
        materials.plaintext_data_key is None
        or not hmac.compare_digest(materials.plaintext_data_key, data_key)
        or materials.encrypted_data_key is None
        or materials.wrap_algorithm is None
    ):
        raise KeyringError("the new keyring did not wrap the existing data key")
    _wipe(data_key)
    materials.plaintext_data_key = None
    into_file = (
        content.from_instruction_file if to_instruction_file is None else to_instruction_file
    )
    rewrapped = dataclasses.replace(
        content,
        wrap_algorithm=materials.wrap_algorithm,
        encrypted_data_key=materials.encrypted_data_key,
        material_description=materials.material_description,
        from_instruction_file=into_file,
        unencrypted_content_length=None if into_file else content.unencrypted_content_length,
    )
    object_metadata, file_fields = encode_metadata(rewrapped, instruction_file=into_file)
    return ObjectRewrap(rewrapped, object_metadata, file_fields)


@dataclasses.dataclass(frozen=True)
class ObjectRewrap:
    """The result of :func:`rewrap`: the new metadata to store (content unchanged)."""

    content_metadata: ContentMetadata
    metadata: dict[str, str]
    instruction_file: dict[str, str] | None


# ---------------------------------------------------------------- whole objects


@dataclasses.dataclass(frozen=True)
class EncryptedObject:
    """The result of :func:`encrypt`: what to store."""

    ciphertext: bytes = dataclasses.field(repr=False)
    metadata: dict[str, str]
    instruction_file: dict[str, str] | None = None


def encrypt(
    plaintext: bytes | bytearray | memoryview,
    keyring: MaterialsSource,
    config: CryptoConfig | None = None,
    *,
    encryption_context: Mapping[str, str] | None = None,
    instruction_file: bool = False,
) -> EncryptedObject:
    """Encrypt a whole object held in memory."""
    encryptor = begin_encryption(
        keyring,
        config,
        encryption_context=encryption_context,
        instruction_file=instruction_file,
        plaintext_length=len(plaintext),
    )
    ciphertext = encryptor.update(plaintext) + encryptor.finalize()
    return EncryptedObject(ciphertext, encryptor.metadata, encryptor.instruction_file)


def decrypt(
    ciphertext: bytes | bytearray | memoryview,
    metadata: ContentMetadata | Mapping[str, str],
    keyring: MaterialsSource,
    config: CryptoConfig | None = None,
    *,
    instruction_file: Mapping[str, str] | None = None,
    encryption_context: Mapping[str, str] | None = None,
) -> bytes:
    """Decrypt and authenticate a whole object held in memory; no plaintext on failure."""
    decryptor = begin_decryption(
        keyring,
        metadata,
        config,
        instruction_file=instruction_file,
        encryption_context=encryption_context,
    )
    plaintext = decryptor.update(ciphertext)
    return plaintext + decryptor.finalize()
