"""Algorithm suites and commitment policies of the S3 encryption format."""

from __future__ import annotations

import enum

from ..errors import CommitmentPolicyError, ConfigurationError, PlaintextTooLargeError

__all__ = [
    "GCM_MAX_PLAINTEXT_LENGTH",
    "AlgorithmSuite",
    "CommitmentPolicy",
    "check_decrypt_allowed",
    "check_plaintext_length",
    "default_suite_for",
]

#: Largest plaintext AES-GCM can protect with one IV (NIST SP 800-38D): 2^36 - 32 bytes.
GCM_MAX_PLAINTEXT_LENGTH = 2**36 - 32


def check_plaintext_length(length: int) -> None:
    """Refuse ``length`` bytes of plaintext (known up front, or counted so far) when it is
    more than one AES-GCM object can protect."""
    if length > GCM_MAX_PLAINTEXT_LENGTH:
        raise PlaintextTooLargeError(
            f"the plaintext is {length} bytes (or more), over the AES-GCM limit of "
            f"{GCM_MAX_PLAINTEXT_LENGTH} bytes (2^36 - 32) for one object; split the data "
            "into several objects"
        )


class AlgorithmSuite(enum.Enum):
    """The content-encryption algorithm suites, by their registered id."""

    AES_256_CBC_IV16_NO_KDF = 0x0070
    AES_256_CTR_IV16_TAG16_NO_KDF = 0x0071
    AES_256_GCM_IV12_TAG16_NO_KDF = 0x0072
    AES_256_GCM_HKDF_SHA512_COMMIT_KEY = 0x0073
    AES_256_CTR_HKDF_SHA512_COMMIT_KEY = 0x0074

    @property
    def cipher(self) -> str:
        """``"CBC"``, ``"CTR"`` or ``"GCM"``."""
        return {0x0070: "CBC", 0x0071: "CTR", 0x0072: "GCM", 0x0073: "GCM", 0x0074: "CTR"}[
            self.value
        ]

    @property
    def iv_length(self) -> int:
        """Bytes of IV (V1/V2) or message id (V3) stored with the object."""
        return {0x0070: 16, 0x0071: 16, 0x0072: 12, 0x0073: 28, 0x0074: 28}[self.value]

    @property
    def tag_length(self) -> int:
        """Bytes of authentication tag appended to the ciphertext (0 for CBC/CTR)."""
        return 16 if self.cipher == "GCM" else 0

    @property
    def is_committing(self) -> bool:
        """True for the V3 suites that derive the content key with HKDF and commit to it."""
        return self in (
            AlgorithmSuite.AES_256_GCM_HKDF_SHA512_COMMIT_KEY,
            AlgorithmSuite.AES_256_CTR_HKDF_SHA512_COMMIT_KEY,
        )

    @property
    def is_legacy(self) -> bool:
        """True for suites that may only be read with ``enable_legacy_unauthenticated_modes``."""
        return self is AlgorithmSuite.AES_256_CBC_IV16_NO_KDF

    @property
    def can_encrypt(self) -> bool:
        """Only the two GCM suites are ever used to write objects."""
        return self.cipher == "GCM"

    @property
    def id_bytes(self) -> bytes:
        """The suite id as two big-endian bytes (V3 AAD and HKDF info prefix)."""
        return self.value.to_bytes(2, "big")

    @property
    def ranged_counterpart(self) -> AlgorithmSuite:
        """The CTR suite that decrypts byte ranges of this GCM suite's objects."""
        if self is AlgorithmSuite.AES_256_GCM_IV12_TAG16_NO_KDF:
            return AlgorithmSuite.AES_256_CTR_IV16_TAG16_NO_KDF
        if self is AlgorithmSuite.AES_256_GCM_HKDF_SHA512_COMMIT_KEY:
            return AlgorithmSuite.AES_256_CTR_HKDF_SHA512_COMMIT_KEY
        raise ConfigurationError(f"{self.name} has no ranged (CTR) counterpart")


class CommitmentPolicy(enum.Enum):
    """Which suites may be written and read. The default is the strictest."""

    REQUIRE_ENCRYPT_REQUIRE_DECRYPT = "REQUIRE_ENCRYPT_REQUIRE_DECRYPT"
    REQUIRE_ENCRYPT_ALLOW_DECRYPT = "REQUIRE_ENCRYPT_ALLOW_DECRYPT"
    FORBID_ENCRYPT_ALLOW_DECRYPT = "FORBID_ENCRYPT_ALLOW_DECRYPT"

    @classmethod
    def parse(cls, value: CommitmentPolicy | str) -> CommitmentPolicy:
        """Accept an enum member or its name (case-insensitive)."""
        if isinstance(value, CommitmentPolicy):
            return value
        try:
            return cls(str(value).strip().upper().replace("-", "_"))
        except ValueError:
            names = ", ".join(p.value for p in cls)
            raise ConfigurationError(
                f"unknown commitment policy {value!r}; use one of {names}"
            ) from None

    @property
    def requires_encrypt(self) -> bool:
        return self is not CommitmentPolicy.FORBID_ENCRYPT_ALLOW_DECRYPT

    @property
    def requires_decrypt(self) -> bool:
        return self is CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT


def default_suite_for(policy: CommitmentPolicy) -> AlgorithmSuite:
    """The suite written under ``policy``: V3 (0x0073) unless encryption must not commit."""
    if policy.requires_encrypt:
        return AlgorithmSuite.AES_256_GCM_HKDF_SHA512_COMMIT_KEY
    return AlgorithmSuite.AES_256_GCM_IV12_TAG16_NO_KDF


def check_encrypt_suite(suite: AlgorithmSuite, policy: CommitmentPolicy) -> None:
    """Raise ConfigurationError unless ``suite`` may be written under ``policy``."""
    if not suite.can_encrypt:
        raise ConfigurationError(
            f"{suite.name} (0x{suite.value:04X}) is decrypt-only; objects are written with "
            "AES_256_GCM_HKDF_SHA512_COMMIT_KEY (V3) or AES_256_GCM_IV12_TAG16_NO_KDF (V2)"
        )
    if policy.requires_encrypt and not suite.is_committing:
        raise ConfigurationError(
            f"commitment policy {policy.value} writes only key-committing objects but "
            f"{suite.name} does not commit; use commitment_policy="
            "FORBID_ENCRYPT_ALLOW_DECRYPT to write V2 objects, or drop the suite setting"
        )
    if not policy.requires_encrypt and suite.is_committing:
        raise ConfigurationError(
            f"commitment policy {policy.value} forbids key-committing encryption but "
            f"{suite.name} commits; use commitment_policy=REQUIRE_ENCRYPT_ALLOW_DECRYPT "
            "or REQUIRE_ENCRYPT_REQUIRE_DECRYPT to write V3 objects"
        )


def check_decrypt_allowed(suite: AlgorithmSuite, policy: CommitmentPolicy) -> None:
    """Raise CommitmentPolicyError if an object of ``suite`` may not be read under ``policy``."""
    if policy.requires_decrypt and not suite.is_committing:
        raise CommitmentPolicyError(
            f"object uses the non-committing suite {suite.name} (0x{suite.value:04X}), "
            f"which commitment policy {policy.value} refuses to read; to read V1/V2 objects "
            "use commitment_policy=REQUIRE_ENCRYPT_ALLOW_DECRYPT"
        )
