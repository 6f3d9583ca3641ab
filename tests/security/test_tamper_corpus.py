"""Hostile objects: the tamper corpus, stored in the real local S3 and read through
EncryptionClient. Every case must fail with its specific error, raise nothing outside
S3CSEError, and release no plaintext (get_object raises before returning a body)."""

from __future__ import annotations

import concurrent.futures
import json
from typing import Any

import pytest

import s3cse
from tests.stores import lower_keys
from tests.unit import legacy_objects as lo

from .conftest import CORPUS_REPORT
from .corpus import Case, Good, benign_cases, cases_for

MASTER = b"\x61" * 32
PLAINTEXT = b"corpus plaintext that must never leak " * 40


def store(
    s3: Any,
    bucket: str,
    key: str,
    metadata: dict[str, str],
    instruction: dict[str, str] | None,
    body: bytes,
) -> None:
    # S3 metadata values must be non-empty ASCII; an emptied value is as good as removed.
    s3.put_object(
        Bucket=bucket, Key=key, Body=body, Metadata={k: v for k, v in metadata.items() if v}
    )
    if instruction is not None:
        s3.put_object(
            Bucket=bucket, Key=key + ".instruction", Body=json.dumps(instruction).encode()
        )


def read_back(
    s3: Any, bucket: str, key: str
) -> tuple[dict[str, str], dict[str, str] | None, bytes]:
    obj = s3.get_object(Bucket=bucket, Key=key)
    metadata = lower_keys(obj["Metadata"])
    try:
        instruction = json.loads(
            s3.get_object(Bucket=bucket, Key=key + ".instruction")["Body"].read()
        )
    except s3.exceptions.NoSuchKey:
        instruction = None
    return metadata, instruction, obj["Body"].read()


@pytest.fixture(scope="module")
def keyrings(kms, kms_key_arn, rsa_pem):
    aes = s3cse.AesKeyring(MASTER, {"kid": "corpus-aes"})
    rsa = s3cse.RsaKeyring(private_key=rsa_pem[0], material_description={"kid": "corpus-rsa"})
    kms_ring = s3cse.KmsKeyring(kms_key_arn, kms_client=kms)
    return {
        "aes": (aes, s3cse.MultiKeyring(children=[aes])),
        "rsa": (rsa, s3cse.MultiKeyring(children=[rsa])),
        "kms": (kms_ring, kms_ring),
    }


def make_goods(
    s3, bucket, kms, kms_key_arn, rsa_pem, keyrings
) -> dict[tuple[int, str, bool, int], Good]:
    from cryptography.hazmat.primitives import serialization

    goods = {}
    public = serialization.load_pem_private_key(rsa_pem[0], None).public_key()
    for version in (1, 2, 3):
        for name in ("aes", "rsa", "kms"):
            for use_file in (False, True):
                for n in (0, 1):
                    key = f"good/v{version}-{name}-{use_file}-{n}"
                    if version == 1:
                        if name == "aes":
                            body, meta = lo.v1_aes_object(
                                MASTER, PLAINTEXT, matdesc={"kid": "corpus-aes"}
                            )
                        elif name == "rsa":
                            body, meta = lo.v1_rsa_object(public, PLAINTEXT)
                            meta["x-amz-matdesc"] = json.dumps({"kid": "corpus-rsa"})
                        else:
                            body, meta = lo.v2_kms_legacy_object(
                                kms, kms_key_arn, PLAINTEXT, cbc=True
                            )
                        if use_file:
                            store(s3, bucket, key, {}, meta, body)
                        else:
                            store(s3, bucket, key, meta, None, body)
                    else:
                        policy = (
                            "FORBID_ENCRYPT_ALLOW_DECRYPT"
                            if version == 2
                            else "REQUIRE_ENCRYPT_REQUIRE_DECRYPT"
                        )
                        client = s3cse.EncryptionClient(
                            s3,
                            keyring=keyrings[name][0],
                            commitment_policy=policy,
                            instruction_file_put=use_file,
                        )
                        client.put_object(Bucket=bucket, Key=key, Body=PLAINTEXT)
                    meta, instr, body = read_back(s3, bucket, key)
                    goods[(version, name, use_file, n)] = Good(version, name, meta, instr, body)
    return goods


def test_tamper_corpus(s3, bucket, kms, kms_key_arn, rsa_pem, keyrings):
    goods = make_goods(s3, bucket, kms, kms_key_arn, rsa_pem, keyrings)
    cases: list[tuple[Good, Case]] = []
    benign: list[tuple[Good, Case]] = []
    for (version, name, use_file, n), good in goods.items():
        if n:
            continue
        other = goods[(version, name, use_file, 1)]
        other_version = (
            goods.get((2 if version == 3 else 3, name, use_file, 0)) if version != 1 else None
        )
        cases += [(good, c) for c in cases_for(good, other, other_version)]
        benign += [(good, c) for c in benign_cases(good)]

    def client_for(good: Good) -> s3cse.EncryptionClient:
        policy = (
            "REQUIRE_ENCRYPT_REQUIRE_DECRYPT"
            if good.version == 3
            else "REQUIRE_ENCRYPT_ALLOW_DECRYPT"
        )
        return s3cse.EncryptionClient(
            s3, keyring=keyrings[good.keyring][1], commitment_policy=policy
        )

    def run(index: int, good: Good, case: Case) -> str | None:
        key = f"case/{index}"
        store(s3, bucket, key, case.metadata, case.instruction, case.body)
        expected = case.expected
        if good.version == 1:  # never readable in default mode; parsing may fail first
            expected = (
                *expected,
                s3cse.MalformedMetadataError,
                s3cse.NotEncryptedError,
                s3cse.LegacyAlgorithmDisabledError,
                s3cse.CommitmentPolicyError,
            )
        try:
            response = client_for(good).get_object(Bucket=bucket, Key=key)
        except s3cse.S3CSEError as exc:
            if not isinstance(exc, expected):
                return f"{case.name}: raised {type(exc).__name__} ({exc}), expected one of {[e.__name__ for e in expected]}"
            if PLAINTEXT[:16] in str(exc).encode():
                return f"{case.name}: plaintext in the error message"
            return None
        except Exception as exc:
            return f"{case.name}: raised {type(exc).__name__} outside S3CSEError: {exc}"
        data = response["Body"].read()
        if not expected or type(None) in expected:
            return (
                None
                if data == PLAINTEXT
                else f"{case.name}: returned plaintext that is not the genuine one"
            )
        return f"{case.name}: was accepted and returned {len(data)} bytes"

    all_cases = cases + benign
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        failures = [
            f for f in pool.map(lambda item: run(item[0], *item[1]), enumerate(all_cases)) if f
        ]
    ignored = sum(1 for _, c in cases if type(None) in c.expected)
    CORPUS_REPORT.update(
        cases=len(cases), passed=len(cases) - len(failures), benign=len(benign), ignored=ignored
    )
    assert len(cases) > 500
    assert not failures, f"{len(failures)} of {len(all_cases)} cases failed:\n" + "\n".join(
        failures[:40]
    )
