"""Build legacy objects (V1, and V2 with legacy wraps) independently of s3cse's writer,
straight from the primitives, so the legacy read paths are checked against the format."""

from __future__ import annotations

import base64
import json
import os

from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.asymmetric import padding as asym
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import aes_key_wrap


def b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def cbc_encrypt(key: bytes, iv: bytes, plaintext: bytes) -> bytes:
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plaintext) + padder.finalize()
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return enc.update(padded) + enc.finalize()


def v1_aes_object(
    master: bytes, plaintext: bytes, data_key_len: int = 32, matdesc: dict | None = None
):
    data_key = os.urandom(data_key_len)
    padder = padding.PKCS7(128).padder()
    enc = Cipher(algorithms.AES(master), modes.ECB()).encryptor()
    wrapped = enc.update(padder.update(data_key) + padder.finalize()) + enc.finalize()
    iv = os.urandom(16)
    meta = {
        "x-amz-key": b64(wrapped),
        "x-amz-iv": b64(iv),
        "x-amz-matdesc": json.dumps(matdesc or {}),
        "x-amz-unencrypted-content-length": str(len(plaintext)),
    }
    return cbc_encrypt(data_key, iv, plaintext), meta


def v1_rsa_object(public: rsa.RSAPublicKey, plaintext: bytes):
    data_key = os.urandom(32)
    wrapped = public.encrypt(data_key, asym.PKCS1v15())
    iv = os.urandom(16)
    meta = {"x-amz-key": b64(wrapped), "x-amz-iv": b64(iv), "x-amz-matdesc": "{}"}
    return cbc_encrypt(data_key, iv, plaintext), meta


def _gcm_content(data_key: bytes, plaintext: bytes) -> tuple[bytes, bytes]:
    iv = os.urandom(12)
    return AESGCM(data_key).encrypt(iv, plaintext, None), iv


def v2_meta(wrapped: bytes, iv: bytes, wrap_alg: str, matdesc: dict, cbc: bool = False) -> dict:
    meta = {
        "x-amz-key-v2": b64(wrapped),
        "x-amz-iv": b64(iv),
        "x-amz-matdesc": json.dumps(matdesc),
        "x-amz-wrap-alg": wrap_alg,
        "x-amz-cek-alg": "AES/CBC/PKCS5Padding" if cbc else "AES/GCM/NoPadding",
    }
    if not cbc:
        meta["x-amz-tag-len"] = "128"
    return meta


def v2_aeswrap_object(master: bytes, plaintext: bytes):
    data_key = os.urandom(32)
    ct, iv = _gcm_content(data_key, plaintext)
    return ct, v2_meta(aes_key_wrap(master, data_key), iv, "AESWrap", {})


def v2_rsa_oaep_sha256_object(public: rsa.RSAPublicKey, plaintext: bytes, mgf_sha1: bool = True):
    data_key = os.urandom(32)
    mgf = hashes.SHA1() if mgf_sha1 else hashes.SHA256()
    wrapped = public.encrypt(
        data_key, asym.OAEP(mgf=asym.MGF1(mgf), algorithm=hashes.SHA256(), label=None)
    )
    ct, iv = _gcm_content(data_key, plaintext)
    return ct, v2_meta(wrapped, iv, "RSA/ECB/OAEPWithSHA-256AndMGF1Padding", {})


def v2_kms_legacy_object(kms, key_arn: str, plaintext: bytes, cbc: bool = False):
    matdesc = {"kms_cmk_id": key_arn}
    resp = kms.generate_data_key(KeyId=key_arn, KeySpec="AES_256", EncryptionContext=matdesc)
    data_key = resp["Plaintext"]
    if cbc:
        iv = os.urandom(16)
        ct = cbc_encrypt(data_key, iv, plaintext)
    else:
        ct, iv = _gcm_content(data_key, plaintext)
    return ct, v2_meta(resp["CiphertextBlob"], iv, "kms", matdesc, cbc=cbc)


def v2_gcm_object_with_raw_aes_gcm_wrap(master: bytes, plaintext: bytes):
    """A V2 AES/GCM-wrapped object built from primitives (what the Java V2 client writes)."""
    data_key = os.urandom(32)
    wrap_iv = os.urandom(12)
    wrapped = wrap_iv + AESGCM(master).encrypt(wrap_iv, data_key, b"AES/GCM/NoPadding")
    ct, iv = _gcm_content(data_key, plaintext)
    return ct, v2_meta(wrapped, iv, "AES/GCM", {})
