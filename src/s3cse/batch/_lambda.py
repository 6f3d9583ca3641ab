"""An AWS Lambda function for S3 Batch Operations: ``s3cse.batch.lambda_handler``.

S3 Batch Operations invokes it with a batch of tasks (invocation schema 1.0 or 2.0) and
records the answer per task in the job's completion report. The job's settings come from
``job.userArguments`` (schema 2.0) or else the function's environment:

============================  ===============================  =========================
userArguments                 environment                      what
============================  ===============================  =========================
operation                     S3CSE_BATCH_OPERATION            census, rewrap, upgrade,
                                                               encrypt or verify
kmsKeyId                      S3CSE_KMS_KEY_ID                 KMS keys that read
                                                               (comma-separated)
aesKeyFile                    S3CSE_AES_KEY_FILE               AES key files that read
rsaPrivateKeyFile             S3CSE_RSA_PRIVATE_KEY_FILE       RSA private keys that read
toKmsKeyId                    S3CSE_TO_KMS_KEY_ID              the new KMS key
toAesKeyFile                  S3CSE_TO_AES_KEY_FILE            the new AES key file
toRsaPublicKeyFile            S3CSE_TO_RSA_PUBLIC_KEY_FILE     the new RSA public key
encryptionContext             S3CSE_ENCRYPTION_CONTEXT         KMS context (JSON)
toEncryptionContext           S3CSE_TO_ENCRYPTION_CONTEXT      new KMS context (JSON)
legacyWrapping                S3CSE_LEGACY_WRAPPING            "true": read legacy wraps
legacyUnauthenticated         S3CSE_LEGACY_UNAUTHENTICATED     "true": read V1 AES-CBC
verify                        S3CSE_VERIFY                     "true": rewrap
                                                               authenticates first
============================  ===============================  =========================

The S3 and KMS clients come from botocore's usual environment (credentials, region,
``AWS_ENDPOINT_URL_S3``, ``AWS_ENDPOINT_URL_KMS``). Results: Succeeded (done, or
nothing to do), TemporaryFailure (throttled, or another writer changed the object: S3
retries it), PermanentFailure (anything else), each with a result string.
"""

from __future__ import annotations

import json
import os
import threading
import urllib.parse
from collections.abc import Mapping
from typing import Any

from ..errors import ConfigurationError
from ._operations import Record, Worker
from ._tasks import Task

__all__ = ["lambda_handler"]

_ARGUMENTS = {  # userArguments name: the environment variable that stands in for it
    "operation": "S3CSE_BATCH_OPERATION",
    "kmsKeyId": "S3CSE_KMS_KEY_ID",
    "aesKeyFile": "S3CSE_AES_KEY_FILE",
    "rsaPrivateKeyFile": "S3CSE_RSA_PRIVATE_KEY_FILE",
    "toKmsKeyId": "S3CSE_TO_KMS_KEY_ID",
    "toAesKeyFile": "S3CSE_TO_AES_KEY_FILE",
    "toRsaPublicKeyFile": "S3CSE_TO_RSA_PUBLIC_KEY_FILE",
    "encryptionContext": "S3CSE_ENCRYPTION_CONTEXT",
    "toEncryptionContext": "S3CSE_TO_ENCRYPTION_CONTEXT",
    "legacyWrapping": "S3CSE_LEGACY_WRAPPING",
    "legacyUnauthenticated": "S3CSE_LEGACY_UNAUTHENTICATED",
    "verify": "S3CSE_VERIFY",
}
_RESULT_CODES = {
    "succeeded": "Succeeded",
    "skipped": "Succeeded",
    "conflict": "TemporaryFailure",
    "throttled": "TemporaryFailure",
    "failed": "PermanentFailure",
}
_workers: dict[str, Worker] = {}  # one per job settings: a warm Lambda reuses its clients
_lock = threading.Lock()


def _settings(event: Mapping[str, Any]) -> dict[str, str]:
    job = event.get("job") or {}
    if not isinstance(job, Mapping):
        raise ConfigurationError("job must be an object")
    given = job.get("userArguments") or {}
    if not isinstance(given, Mapping):
        raise ConfigurationError("job.userArguments must be an object of strings")
    unknown = sorted(set(given) - set(_ARGUMENTS))
    if unknown:
        raise ConfigurationError(
            f"unknown userArguments {', '.join(unknown)}; known: {', '.join(_ARGUMENTS)}"
        )
    values = {}
    for name, variable in _ARGUMENTS.items():
        value = given.get(name, os.environ.get(variable))
        if value not in (None, ""):
            values[name] = str(value)
    return values


def _spec(values: Mapping[str, str]) -> Any:
    from . import JobSpec, KeyRefs  # the package imports this module

    def many(name: str) -> tuple[str, ...]:
        return tuple(v.strip() for v in values.get(name, "").split(",") if v.strip())

    def flag(name: str) -> bool:
        return values.get(name, "").lower() in ("1", "true", "yes")

    def context(name: str) -> dict[str, str] | None:
        if name not in values:
            return None
        try:
            parsed = json.loads(values[name])
        except ValueError as exc:
            raise ConfigurationError(f"{name} is not JSON: {exc}") from None
        if not isinstance(parsed, dict) or not all(isinstance(v, str) for v in parsed.values()):
            raise ConfigurationError(f"{name} must be a JSON object of strings")
        return parsed

    if "operation" not in values:
        raise ConfigurationError(
            "no operation: set userArguments.operation or S3CSE_BATCH_OPERATION"
        )
    return JobSpec(
        values["operation"],  # type: ignore[arg-type]
        keys=KeyRefs(
            kms_key_ids=many("kmsKeyId"),
            aes_key_files=many("aesKeyFile"),
            rsa_private_key_files=many("rsaPrivateKeyFile"),
        ),
        to_keys=KeyRefs(
            kms_key_ids=many("toKmsKeyId"),
            aes_key_files=many("toAesKeyFile"),
            rsa_public_key_files=many("toRsaPublicKeyFile"),
        ),
        encryption_context=context("encryptionContext"),
        new_encryption_context=context("toEncryptionContext"),
        legacy_wrapping=flag("legacyWrapping"),
        legacy_unauthenticated=flag("legacyUnauthenticated"),
        verify=flag("verify"),
    )


def _worker(values: Mapping[str, str]) -> Worker:
    name = json.dumps(values, sort_keys=True)
    with _lock:
        worker = _workers.get(name)
        if worker is None:
            worker = _spec(values).worker()  # clients from botocore's environment
            _workers[name] = worker
        return worker


def _task(entry: Mapping[str, Any]) -> Task:
    bucket = entry.get("s3Bucket") or str(entry.get("s3BucketArn", "")).rpartition(":")[2]
    key = urllib.parse.unquote_plus(str(entry.get("s3Key", "")))  # URL-encoded, as AWS sends it
    if not bucket or not key:
        raise ConfigurationError("a task without s3Bucket (or s3BucketArn) and s3Key")
    return Task(bucket, key, entry.get("s3VersionId") or None)


def lambda_handler(event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
    """Run the job's operation on each task of an S3 Batch Operations invocation."""
    version = str(event.get("invocationSchemaVersion", "1.0"))
    tasks = list(event.get("tasks") or [])
    results = []
    try:
        worker = _worker(_settings(event))
        setup_error = None
    except Exception as exc:  # a bad setting, no region, a key file missing: say so per task
        worker, setup_error = None, f"s3cse setup: {type(exc).__name__}: {exc}"
    for entry in tasks:
        if worker is None:
            code, message = "PermanentFailure", str(setup_error)
        else:
            try:
                if not isinstance(entry, Mapping):
                    raise ConfigurationError("a task that is not an object")
                record: Record = worker.run(_task(entry))
            except Exception as exc:
                code, message = "PermanentFailure", f"{type(exc).__name__}: {exc}"
            else:
                code = _RESULT_CODES[record.status]
                message = f"{record.status}: {record.message}"
                if record.error_code:
                    message += f" ({record.error_code})"
        task_id = entry.get("taskId") if isinstance(entry, Mapping) else None
        results.append({"taskId": task_id, "resultCode": code, "resultString": message[:1024]})
    return {
        "invocationSchemaVersion": version,
        "treatMissingKeysAs": "PermanentFailure",
        "invocationId": event.get("invocationId"),
        "results": results,
    }
