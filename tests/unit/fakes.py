"""A small in-process stand-in for the KMS API, for unit tests of the sans-IO core.

It honours what the keyrings rely on: the ciphertext blob is bound to the key and
the encryption context (AES-GCM with the context as AAD), Decrypt with another key
id or context fails with the KMS error codes, and the response names the key ARN.
Integration tests use the real moto server instead.
"""

from __future__ import annotations

import json
import os
from typing import Any

from botocore.exceptions import ClientError
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

ACCOUNT = "111122223333"


def _error(code: str, op: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}}, op)


class FakeKms:
    def __init__(self) -> None:
        self.keys: dict[str, bytes] = {}
        self.aliases: dict[str, str] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def create_key(self, alias: str | None = None) -> str:
        key_id = os.urandom(8).hex()
        arn = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/{key_id}"
        self.keys[arn] = AESGCM.generate_key(256)
        if alias:
            self.aliases[alias] = arn
        return arn

    def _arn(self, key_id: str) -> str:
        if key_id in self.keys:
            return key_id
        if key_id in self.aliases:
            return self.aliases[key_id]
        for arn in self.keys:
            if arn.endswith("/" + key_id):
                return arn
        raise _error("NotFoundException", "Decrypt")

    @staticmethod
    def _aad(context: dict[str, str]) -> bytes:
        return json.dumps(context, sort_keys=True).encode()

    def generate_data_key(
        self, *, KeyId: str, KeySpec: str, EncryptionContext: dict[str, str], **kw: Any
    ) -> dict[str, Any]:
        self.calls.append(
            ("GenerateDataKey", {"KeyId": KeyId, "EncryptionContext": EncryptionContext})
        )
        arn = self._arn(KeyId)
        assert KeySpec == "AES_256"
        plaintext = os.urandom(32)
        iv = os.urandom(12)
        blob = (
            arn.encode()
            + b"|"
            + iv
            + AESGCM(self.keys[arn]).encrypt(iv, plaintext, self._aad(EncryptionContext))
        )
        return {"Plaintext": plaintext, "CiphertextBlob": blob, "KeyId": arn}

    def encrypt(
        self,
        *,
        KeyId: str,
        Plaintext: bytes,
        EncryptionContext: dict[str, str] | None = None,
        **kw: Any,
    ) -> dict[str, Any]:
        self.calls.append(("Encrypt", {"KeyId": KeyId, "EncryptionContext": EncryptionContext}))
        arn = self._arn(KeyId)
        iv = os.urandom(12)
        blob = (
            arn.encode()
            + b"|"
            + iv
            + AESGCM(self.keys[arn]).encrypt(iv, Plaintext, self._aad(EncryptionContext or {}))
        )
        return {"CiphertextBlob": blob, "KeyId": arn}

    def decrypt(
        self,
        *,
        CiphertextBlob: bytes,
        EncryptionContext: dict[str, str] | None = None,
        KeyId: str | None = None,
        **kw: Any,
    ) -> dict[str, Any]:
        self.calls.append(("Decrypt", {"KeyId": KeyId, "EncryptionContext": EncryptionContext}))
        arn_bytes, sep, rest = CiphertextBlob.partition(b"|")
        arn = arn_bytes.decode(errors="replace")
        if not sep or arn not in self.keys or len(rest) < 28:
            raise _error("InvalidCiphertextException", "Decrypt")
        if KeyId is not None and self._arn(KeyId) != arn:
            raise _error("IncorrectKeyException", "Decrypt")
        try:
            plaintext = AESGCM(self.keys[arn]).decrypt(
                rest[:12], rest[12:], self._aad(EncryptionContext or {})
            )
        except Exception:
            raise _error("InvalidCiphertextException", "Decrypt") from None
        return {"Plaintext": plaintext, "KeyId": arn}
