"""Public known-answer vectors (tests/vectors/s3ec_vectors.json, each with its source)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

import s3cse
from s3cse.core import kdf
from s3cse.core.ciphers import CbcDecryptor, GcmDecryptor, GcmEncryptor

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "s3ec_vectors.json").read_text())
LEGACY = s3cse.CryptoConfig(
    commitment_policy="REQUIRE_ENCRYPT_ALLOW_DECRYPT",
    enable_legacy_wrapping=True,
    enable_legacy_unauthenticated_modes=True,
)


def raw(entry: dict[str, Any], name: str) -> bytes:
    if f"{name}_hex" in entry:
        return bytes.fromhex(entry[f"{name}_hex"])
    if f"{name}_b64" in entry:
        return base64.b64decode(entry[f"{name}_b64"])
    return entry[f"{name}_text"].encode()


class StaticKms:
    """Like the Go client's mocked KMS: Decrypt answers the vector's data key."""

    def __init__(self, plaintext: bytes):
        self.plaintext = plaintext
        self.requests: list[dict[str, Any]] = []

    def decrypt(self, **kwargs: Any) -> dict[str, Any]:
        self.requests.append(kwargs)
        return {"Plaintext": self.plaintext, "KeyId": "arn:aws:kms:us-east-1:111122223333:key/test"}


def ids(entries):
    return [e["id"] for e in entries]


@pytest.mark.parametrize(
    "entry", VECTORS["kdf"] + VECTORS["v3_content"], ids=ids(VECTORS["kdf"] + VECTORS["v3_content"])
)
def test_kdf_vectors(entry):
    data_key, message_id = raw(entry, "data_key"), raw(entry, "message_id")
    assert kdf.derive_content_key(data_key, message_id) == raw(entry, "derived_key")
    assert kdf.derive_commitment(data_key, message_id) == raw(entry, "commitment")


@pytest.mark.parametrize("entry", VECTORS["v3_content"], ids=ids(VECTORS["v3_content"]))
def test_v3_content_vectors(entry):
    key = raw(entry, "derived_key")
    dec = GcmDecryptor(key, b"\x01" * 12, b"\x00\x73")
    out = dec.update(raw(entry, "ciphertext") + raw(entry, "tag"))
    if entry["must_decrypt"]:
        assert out + dec.finalize() == raw(entry, "plaintext")
    else:
        with pytest.raises(s3cse.IntegrityError):
            dec.finalize()


def body(entry):
    return raw(entry, "body")


@pytest.mark.parametrize("entry", VECTORS["objects"], ids=ids(VECTORS["objects"]))
def test_object_vectors(entry):
    if "aes_master_key_b64" in entry:
        keyring: s3cse.Keyring = s3cse.AesKeyring(raw(entry, "aes_master_key"))
        kms = None
    else:
        kms = StaticKms(raw(entry, "kms_plaintext"))
        keyring = s3cse.KmsKeyring.discovery(kms)  # type: ignore[arg-type]
    config = (
        LEGACY
        if entry.get("legacy")
        else s3cse.CryptoConfig(commitment_policy="REQUIRE_ENCRYPT_ALLOW_DECRYPT")
    )
    assert s3cse.decrypt(body(entry), entry["metadata"], keyring, config) == raw(entry, "plaintext")
    if kms is not None:
        stored = json.loads(entry["metadata"].get("x-amz-t") or entry["metadata"]["x-amz-matdesc"])
        assert kms.requests[0]["EncryptionContext"] == stored
    if entry.get("legacy"):
        with pytest.raises(s3cse.S3CSEError):
            s3cse.decrypt(
                body(entry),
                entry["metadata"],
                keyring,
                s3cse.CryptoConfig(commitment_policy="REQUIRE_ENCRYPT_ALLOW_DECRYPT"),
            )


def test_ruby_raw_aes_object_through_its_instruction_file():
    entry = next(e for e in VECTORS["objects"] if e["id"] == "ruby-v1-raw-aes")
    file = {k: entry["metadata"][k] for k in ("x-amz-key", "x-amz-iv", "x-amz-matdesc")}
    keyring = s3cse.AesKeyring(raw(entry, "aes_master_key"))
    assert s3cse.decrypt(body(entry), {}, keyring, LEGACY, instruction_file=file) == b"secret"


@pytest.mark.parametrize("entry", VECTORS["v3_negative"], ids=ids(VECTORS["v3_negative"]))
def test_v3_negative_vectors(entry):
    keyring = s3cse.KmsKeyring.discovery(StaticKms(raw(entry, "kms_plaintext")))  # type: ignore[arg-type]
    with pytest.raises(getattr(s3cse, entry["error"])):
        s3cse.decrypt(body(entry), entry["metadata"], keyring)


@pytest.mark.parametrize("entry", VECTORS["content"], ids=ids(VECTORS["content"]))
def test_content_vectors(entry):
    key, plaintext, ciphertext = (
        raw(entry, "key"),
        raw(entry, "plaintext"),
        raw(entry, "ciphertext"),
    )
    iv = raw(entry, "iv")
    if entry["cipher"] == "GCM":
        enc = GcmEncryptor(key, iv)
        assert enc.update(plaintext) + enc.finalize() == ciphertext
        dec = GcmDecryptor(key, iv)
    else:
        dec = CbcDecryptor(key, iv)
    assert dec.update(ciphertext) + dec.finalize() == plaintext
