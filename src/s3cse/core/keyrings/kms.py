"""AWS KMS master keys: kms+context wrap; legacy ``kms`` unwrap; discovery mode.

The keyring's only network calls go through the KMS client it was given (or one
it creates with boto3 on first use); nothing else in the core touches a network.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ...errors import (
    ConfigurationError,
    DataKeyUnwrapError,
    EncryptionContextMismatchError,
    MalformedMetadataError,
    NoMatchingKeyringError,
)
from ..materials import DecryptionMaterials, EncryptionMaterials
from ..metadata import KMS_CONTEXT_CEK_ALG, KMS_CONTEXT_KEY_ID, WrapAlgorithm, cek_algorithm_name
from .base import Keyring, check_unwrapped_length

if TYPE_CHECKING:
    from mypy_boto3_kms import KMSClient

__all__ = ["RESERVED_CONTEXT_KEY", "KmsKeyring"]

#: The encryption-context key the format reserves for the content algorithm.
RESERVED_CONTEXT_KEY = KMS_CONTEXT_CEK_ALG
#: Written into the matdesc by the legacy V1 Java client; not part of the context check.
_LEGACY_KEY_ID_ENTRY = KMS_CONTEXT_KEY_ID
# KMS answers that mean "this key/context cannot open this blob" (or not for you):
# reported as DataKeyUnwrapError with the KMS code; others (throttling, network)
# pass through unchanged, so botocore's retries and the caller's handling apply.
_UNWRAP_FAILURE_CODES = {
    "InvalidCiphertextException": "the wrapped key or its stored encryption context was altered, or another key wrapped it",
    "IncorrectKeyException": "the data key was wrapped by a different KMS key",
    "InvalidKeyUsageException": "the KMS key cannot be used to decrypt",
    "AccessDeniedException": "you lack kms:Decrypt on the key that wrapped the data key, or the wrapped key was altered",
    "NotFoundException": "the KMS key that wrapped the data key does not exist (or the wrapped key was altered)",
    "DisabledException": "the KMS key is disabled; enable it to read this object",
    "KMSInvalidStateException": "the KMS key is not usable (pending deletion or import)",
}


def _resolve(result: Any) -> Any:
    """An aiobotocore KMS client returns awaitables: run them on the async client's loop."""
    if inspect.isawaitable(result):
        from ..._bridge import run_awaitable

        return run_awaitable(result)
    return result


def _check_context(context: Mapping[str, str] | None) -> dict[str, str]:
    if context is None:
        return {}
    if not isinstance(context, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in context.items()
    ):
        raise ConfigurationError("an encryption context must be a dict of str to str")
    return dict(context)


def _arn_account(arn: str) -> str | None:
    parts = arn.split(":")
    return parts[4] if len(parts) >= 6 and parts[0] == "arn" else None


class KmsKeyring(Keyring):
    """A KMS key: GenerateDataKey on encrypt, Decrypt with the stored context on decrypt."""

    key_family = "kms"

    def __init__(
        self,
        kms_key_id: str,
        kms_client: KMSClient | None = None,
        *,
        grant_tokens: Iterable[str] | None = None,
    ):
        if not isinstance(kms_key_id, str) or not kms_key_id.strip():
            raise ConfigurationError(
                "KmsKeyring needs a KMS key id, ARN or alias (use KmsKeyring.discovery() "
                "to decrypt with any key you may use)"
            )
        self.kms_key_id: str | None = kms_key_id
        self._init(kms_client, grant_tokens)
        self._allowed_key_arns: frozenset[str] | None = None
        self._allowed_accounts: frozenset[str] | None = None

    def _init(self, kms_client: KMSClient | None, grant_tokens: Iterable[str] | None) -> None:
        self._client = kms_client
        self._client_lock = threading.Lock()
        self._grant_tokens = list(grant_tokens or ())

    @classmethod
    def discovery(
        cls,
        kms_client: KMSClient | None = None,
        *,
        key_arns: Iterable[str] | None = None,
        accounts: Iterable[str] | None = None,
        grant_tokens: Iterable[str] | None = None,
    ) -> KmsKeyring:
        """A decrypt-only keyring that uses whichever KMS key wrapped the object.

        ``key_arns`` and ``accounts`` limit which keys are accepted; KMS reports the
        key it used and a key outside the limits is refused.
        """
        self = cls.__new__(cls)
        self.kms_key_id = None
        self._init(kms_client, grant_tokens)
        self._allowed_key_arns = frozenset(key_arns) if key_arns is not None else None
        self._allowed_accounts = frozenset(accounts) if accounts is not None else None
        return self

    @property
    def is_discovery(self) -> bool:
        return self.kms_key_id is None

    def __repr__(self) -> str:
        if self.kms_key_id is not None:
            return f"KmsKeyring(kms_key_id={self.kms_key_id!r})"
        limits = []
        if self._allowed_key_arns is not None:
            limits.append(f"key_arns={sorted(self._allowed_key_arns)!r}")
        if self._allowed_accounts is not None:
            limits.append(f"accounts={sorted(self._allowed_accounts)!r}")
        return f"KmsKeyring.discovery({', '.join(limits)})"

    @property
    def client(self) -> KMSClient:
        """The KMS client (created with boto3 on first use when none was given)."""
        with self._client_lock:
            if self._client is None:
                import boto3

                self._client = boto3.client("kms")
            return self._client

    def on_encrypt(self, materials: EncryptionMaterials) -> EncryptionMaterials:
        if self.kms_key_id is None:
            raise ConfigurationError(
                "a discovery KmsKeyring can only decrypt; give KmsKeyring a kms_key_id to encrypt"
            )
        context = _check_context(materials.encryption_context)
        if RESERVED_CONTEXT_KEY in context:
            raise ConfigurationError(
                f"the encryption context key {RESERVED_CONTEXT_KEY!r} is reserved by the format; "
                "remove it from EncryptionContext"
            )
        context[RESERVED_CONTEXT_KEY] = cek_algorithm_name(materials.suite)
        kwargs: dict[str, Any] = {"KeyId": self.kms_key_id, "EncryptionContext": context}
        if self._grant_tokens:
            kwargs["GrantTokens"] = self._grant_tokens
        if materials.plaintext_data_key is not None:
            # Re-encryption: wrap the object's existing data key under this KMS key.
            wrapped = _resolve(
                self.client.encrypt(Plaintext=bytes(materials.plaintext_data_key), **kwargs)
            )
            materials.encrypted_data_key = wrapped["CiphertextBlob"]
        else:
            generated = _resolve(self.client.generate_data_key(KeySpec="AES_256", **kwargs))
            materials.plaintext_data_key = check_unwrapped_length(
                generated["Plaintext"], legacy=False, what="KMS GenerateDataKey"
            )
            materials.encrypted_data_key = generated["CiphertextBlob"]
        materials.wrap_algorithm = WrapAlgorithm.KMS_CONTEXT
        materials.material_description = context
        return materials

    def on_decrypt(self, materials: DecryptionMaterials) -> DecryptionMaterials:
        meta = materials.metadata
        self._refuse_other_family(meta)
        stored = dict(meta.material_description)
        if meta.wrap_algorithm is WrapAlgorithm.KMS_CONTEXT:
            expected = cek_algorithm_name(meta.suite)
            found = stored.get(RESERVED_CONTEXT_KEY)
            if found != expected:
                raise MalformedMetadataError(
                    f"the stored encryption context names content algorithm {found!r} under "
                    f"{RESERVED_CONTEXT_KEY!r}, but the object uses {expected!r}: the metadata "
                    "was altered",
                    field=RESERVED_CONTEXT_KEY,
                )
        check_request_context(stored, materials.encryption_context)
        kwargs: dict[str, Any] = {
            "CiphertextBlob": meta.encrypted_data_key,
            "EncryptionContext": stored,
        }
        if self.kms_key_id is not None:
            kwargs["KeyId"] = self.kms_key_id
        if self._grant_tokens:
            kwargs["GrantTokens"] = self._grant_tokens
        from botocore.exceptions import ClientError

        try:
            response = _resolve(self.client.decrypt(**kwargs))
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in _UNWRAP_FAILURE_CODES:
                reason = _UNWRAP_FAILURE_CODES[code]
                said = str(exc.response.get("Error", {}).get("Message", ""))
                if code == "NotFoundException" or "does not exist" in said:
                    # KMS answers AccessDenied for a key that is gone as for one not yours,
                    # and says which in its message.
                    reason = (
                        "the KMS key that wrapped the data key does not exist (it was deleted, "
                        "or it belonged to a KMS whose keys were lost); no permission change "
                        "brings it back"
                    )
                raise DataKeyUnwrapError(
                    f"KMS refused to decrypt the data key ({code}) with "
                    f"{self.kms_key_id or 'the key that wrapped it'}: {reason}"
                ) from exc
            raise
        key_arn = response.get("KeyId", "")
        if self.kms_key_id is None and not self._allowed(key_arn):
            raise NoMatchingKeyringError(
                f"the object's data key is wrapped by KMS key {key_arn}, which this discovery "
                "keyring's key_arns/accounts do not allow"
            )
        materials.plaintext_data_key = check_unwrapped_length(
            response["Plaintext"],
            legacy=meta.wrap_algorithm is WrapAlgorithm.KMS,
            what="KMS Decrypt",
        )
        return materials

    def _allowed(self, key_arn: str) -> bool:
        if self._allowed_key_arns is not None and key_arn not in self._allowed_key_arns:
            return False
        return self._allowed_accounts is None or _arn_account(key_arn) in self._allowed_accounts


def check_request_context(stored: Mapping[str, str], requested: Mapping[str, str]) -> None:
    """The stored context, less the format's own entries, must equal the request's.

    The error shows both key sets, never a data key.
    """
    stored_user = {
        k: v for k, v in stored.items() if k not in (RESERVED_CONTEXT_KEY, _LEGACY_KEY_ID_ENTRY)
    }
    requested = _check_context(requested)
    if stored_user != requested:
        raise EncryptionContextMismatchError(
            "the encryption context given for this request does not match the one stored "
            f"with the object: stored keys {sorted(stored_user)}, given keys {sorted(requested)}"
            + (" (same keys, different values)" if set(stored_user) == set(requested) else "")
        )
