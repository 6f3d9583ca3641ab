"""The five batch operations on one object: census, rewrap, upgrade, encrypt, verify.
Each returns a :class:`Record` whatever happens to the object; none raises for it."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import threading
import urllib.parse
from collections.abc import Mapping
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError

from .. import _rewrap, _s3args, transfer
from .._download import plaintext_body
from .._objects import ObjectStore, delete_instruction_file, read_content_metadata
from .._upload import put_object
from ..core import metadata as md
from ..core.envelope import CryptoConfig, MaterialsSource, as_cmm, can_unwrap
from ..core.suites import CommitmentPolicy
from ..errors import (
    ConfigurationError,
    IntegrityError,
    NotEncryptedError,
    S3CSEError,
    UnexpectedResponseError,
    WriteConflictError,
)
from ._tasks import Task

__all__ = ["OPERATIONS", "Operation", "Record", "Worker"]

log = logging.getLogger(__name__)

Operation = Literal["census", "rewrap", "upgrade", "encrypt", "verify"]
OPERATIONS: tuple[Operation, ...] = ("census", "rewrap", "upgrade", "encrypt", "verify")

Status = Literal["succeeded", "skipped", "conflict", "throttled", "failed"]
_THROTTLED = {
    "ThrottlingException",
    "Throttling",
    "SlowDown",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
}
_CONFLICT = {"PreconditionFailed", "ConditionalRequestConflict", "412", "409"}


@dataclasses.dataclass(frozen=True)
class Record:
    """What one task came to. ``status``: succeeded (``message`` says what was done),
    skipped (nothing to do: already done, not the current version, ...), conflict
    (another writer changed the object; nothing was overwritten), throttled (S3 or KMS
    said slow down), failed. ``census``: what census found (format, wrap, key, where).
    ``outcome``: what was found or done, as one word for programs (``rewrapped``,
    ``already-done``, ``not-encrypted``, ``instruction-file``, ``not-current``, ...)."""

    bucket: str
    key: str
    version_id: str | None
    status: Status
    message: str
    error_code: str = ""
    bytes: int = 0
    census: dict[str, Any] | None = None
    outcome: str = ""

    @property
    def done(self) -> bool:
        """Finished for good: a rerun of the job skips it (others are retried)."""
        return self.status in ("succeeded", "skipped")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, line: str) -> Record:
        """A checkpoint line; fields a later version added are ignored."""
        fields = json.loads(line)
        if not isinstance(fields, dict):
            raise ValueError("a checkpoint line is a JSON object")
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in fields.items() if k in names})

    @property
    def task(self) -> Task:
        return Task(self.bucket, self.key, self.version_id)


@dataclasses.dataclass
class Worker:
    """Everything one process needs to run tasks: the S3 client, the keys that read
    (``keyring``) and the key that writes (``new_keyring``; None: the reading keys' first
    one), and the job's options. Thread-safe: one Worker serves a whole pool.

    ``request_args``: what every request of a rewrap carries (SSE-C arguments,
    ``RequestPayer``, ``ExpectedBucketOwner``, ``SSEKMSEncryptionContext``); rewrap and
    census take them. ``instruction_file_suffix``: the name of the instruction files read."""

    operation: Operation
    s3: Any
    keyring: MaterialsSource | None = None
    new_keyring: MaterialsSource | None = None
    encryption_context: Mapping[str, str] | None = None
    new_encryption_context: Mapping[str, str] | None = None
    legacy_wrapping: bool = False
    legacy_unauthenticated: bool = False
    verify: bool = False
    dryrun: bool = False
    #: What the reading keys may decrypt: by default V1/V2 objects too (what upgrade is
    #: for), V3 objects always.
    commitment_policy: CommitmentPolicy | str = CommitmentPolicy.REQUIRE_ENCRYPT_ALLOW_DECRYPT
    request_args: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    instruction_file_suffix: str = md.INSTRUCTION_FILE_SUFFIX
    #: Set to stop the rewrites under way at their next part (their uploads aborted).
    cancel: threading.Event = dataclasses.field(default_factory=threading.Event, repr=False)
    _reader: ObjectStore | None = dataclasses.field(default=None, repr=False)
    _writer: ObjectStore | None = dataclasses.field(default=None, repr=False)

    def __post_init__(self) -> None:
        refused = missing_keys(
            self.operation, self.keyring is not None, self.new_keyring is not None
        )
        if refused:
            raise ConfigurationError(
                refused.replace("(keys)", "(keyring)").replace("(to_keys)", "(new_keyring)")
            )
        if self.request_args and self.operation not in ("census", "rewrap"):
            raise ConfigurationError(
                f"request_args are taken by census and rewrap, not by {self.operation}"
            )
        reading = self.keyring or (self.new_keyring if self.operation == "encrypt" else None)
        if reading is not None:
            # Reads: V1/V2 objects (what upgrade exists for), legacy ones only behind
            # their switches; plaintext streams into the new encryption before its tag
            # is checked, and nothing is replaced until it is (see upgrade).
            self._reader = ObjectStore(
                s3=self.s3,
                cmm=as_cmm(reading),
                config=CryptoConfig(
                    commitment_policy=self.commitment_policy,
                    enable_legacy_wrapping=self.legacy_wrapping,
                    enable_legacy_unauthenticated_modes=self.legacy_unauthenticated,
                ),
                instruction_file_suffix=self.instruction_file_suffix,
            )
        writing = self.new_keyring or self.keyring
        if writing is not None and self.operation in ("upgrade", "encrypt"):
            # The object is replaced in place: its key must go in with it, never in a
            # second write that a failure could leave undone.
            self._writer = ObjectStore(
                s3=self.s3,
                cmm=as_cmm(writing),
                config=CryptoConfig(),
                auto_instruction_file=False,
            )

    # ------------------------------------------------------------ one task

    def run(self, task: Task) -> Record:
        """The operation on ``task``'s object; every failure is a Record, never raised."""
        try:
            record: Record = getattr(self, f"_{self.operation}")(task)
            return record
        except S3CSEError as exc:
            return self._failure(task, exc)
        except ClientError as exc:
            return self._failure(task, exc)
        except _Cancelled:
            return _record(
                task, "failed", "stopped before it finished; nothing replaced", "Stopped"
            )
        except (BotoCoreError, OSError, ValueError) as exc:  # one object, not the job
            return _record(task, "failed", f"{type(exc).__name__}: {exc}", type(exc).__name__)
        except Exception as exc:  # a store's odd answer, a bug: this object, not the job
            log.debug("batch %s of %s", self.operation, task, exc_info=True)
            return _record(task, "failed", f"{type(exc).__name__}: {exc}", type(exc).__name__)

    def _failure(self, task: Task, exc: Exception) -> Record:
        if isinstance(exc, WriteConflictError):
            return _record(task, "conflict", exc.message, "Conflict")
        if isinstance(exc, ClientError):
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
            if code in _CONFLICT or status in ("409", "412"):
                return _record(
                    task,
                    "conflict",
                    "another writer changed the object; nothing was overwritten",
                    "Conflict",
                )
            if code in _THROTTLED or status in ("429", "503"):
                return _record(task, "throttled", str(exc), code or "Throttling")
            return _record(task, "failed", str(exc), code or status)
        assert isinstance(exc, S3CSEError)
        # Every failed authentication (tag, truncation, commitment) under one code.
        code = "IntegrityError" if isinstance(exc, IntegrityError) else type(exc).__name__
        return _record(task, "failed", exc.message, code)

    def _current(self, task: Task) -> tuple[dict[str, Any], Record | None]:
        """HEAD of the current version; a Record instead when the task names another."""
        args = _s3args.forward("head", self.request_args)
        if self.operation == "rewrap":
            args["ChecksumMode"] = "ENABLED"  # a metadata rewrite keeps the checksum's kind
        head = dict(self.s3.head_object(Bucket=task.bucket, Key=task.key, **args))
        if task.version_id and head.get("VersionId") not in (None, task.version_id):
            return head, _record(
                task,
                "skipped",
                "not the current version: older versions keep their old key and format",
                outcome="not-current",
            )
        return head, None

    def _object_itself(self, task: Task) -> tuple[dict[str, Any], Record | None]:
        """As :meth:`_current`, and a Record too when the key is the instruction file of
        an object beside it (which goes with that object, never on its own)."""
        head, other = self._current(task)
        if other is None and self._is_instruction_file(task, head):
            other = _instruction_file(task)
        return head, other

    def _content(self, task: Task, head: Mapping[str, Any]) -> md.ContentMetadata:
        return read_content_metadata(
            self.s3,
            task.bucket,
            task.key,
            head.get("Metadata", {}),
            self.instruction_file_suffix,
            self.request_args,
        )

    def _authenticate(
        self, task: Task, head: Mapping[str, Any], content: md.ContentMetadata
    ) -> None:
        """Read the object HEAD saw and check its tag with the reading keys."""
        assert self._reader is not None
        _rewrap.authenticate(
            self._reader,
            task.bucket,
            task.key,
            content,
            str(head.get("ETag") or ""),
            self.encryption_context,
            {},
        )

    def _is_instruction_file(self, task: Task, head: Mapping[str, Any]) -> bool:
        metadata = {k.lower(): v for k, v in head.get("Metadata", {}).items()}
        access = {
            k: v
            for k, v in _s3args.forward("ranged_get", self.request_args).items()
            if k != "VersionId"
        }
        return _rewrap.is_instruction_file(self.s3, task.bucket, task.key, metadata, access)

    # ------------------------------------------------------------ the operations

    def _census(self, task: Task) -> Record:
        head, other = self._current(task)
        if other is not None:
            return other
        size = int(head.get("ContentLength") or 0)
        found: dict[str, Any]
        if self._is_instruction_file(task, head):
            found = {"format": "instruction file", "location": "-", "wrap": "-", "key": "-"}
        else:
            try:
                content = self._content(task, head)
            except NotEncryptedError:
                found = {"format": "not encrypted", "location": "-", "wrap": "-", "key": "-"}
            except S3CSEError as exc:
                return dataclasses.replace(
                    self._failure(task, exc), census={"format": "unparseable"}, bytes=size
                )
            else:
                found = describe_for_census(content)
        found["bytes"] = size
        label = ", ".join(str(found[k]) for k in ("format", "wrap", "key", "location"))
        return _record(task, "succeeded", label, bytes=size, census=found, outcome="counted")

    def _rewrap(self, task: Task) -> Record:
        head, other = self._current(task)
        if other is not None:
            return other
        assert self.new_keyring is not None and self._reader is not None
        try:
            status = _rewrap.reencrypt(
                self._reader,
                task.bucket,
                task.key,
                self.new_keyring,
                encryption_context=self.encryption_context,
                new_encryption_context=self.new_encryption_context,
                extra=self.request_args,
                verify=self.verify,
                dryrun=self.dryrun,
                head=head,
            )
        except NotEncryptedError:
            return _not_encrypted(task)
        size = int(head.get("ContentLength") or 0)
        if status == "instruction-file":
            return _instruction_file(task)
        if status == "skipped":
            return _record(task, "skipped", "already under the new key", outcome="already-done")
        return _record(
            task, "succeeded", _done("re-wrapped", self.dryrun), bytes=size, outcome="rewrapped"
        )

    def _verify(self, task: Task) -> Record:
        head, other = self._object_itself(task)
        if other is not None:
            return other
        size = int(head.get("ContentLength") or 0)
        try:
            content = self._content(task, head)
        except NotEncryptedError:
            return _record(task, "failed", "not encrypted", "NotEncrypted", bytes=size)
        self._authenticate(task, head, content)
        return _record(task, "succeeded", "authenticated", bytes=size, outcome="authenticated")

    def _upgrade(self, task: Task) -> Record:
        head, other = self._object_itself(task)
        if other is not None:
            return other
        try:
            content = self._content(task, head)
        except NotEncryptedError:
            return _not_encrypted(task)
        assert self._reader is not None and self._writer is not None
        target = self.new_keyring or self.keyring
        assert target is not None
        if content.version == md.FormatVersion.V3 and can_unwrap(
            target,
            content,
            self._reader.config,
            encryption_context=self.new_encryption_context or self.encryption_context,
        ):
            return _record(
                task, "skipped", "already V3 under the target key", outcome="already-done"
            )
        size = int(head.get("ContentLength") or 0)
        if self.dryrun:
            return _record(
                task,
                "succeeded",
                _done(f"upgraded from V{int(content.version)}", True),
                outcome="upgraded",
            )
        # The key is unwrapped before the GET: a wrong key costs no download.
        decryptor = self._reader.begin_decryptor(
            task.bucket, task.key, content, self.encryption_context
        )
        response = self._get_whole(task, head)
        announced = response.get("ContentLength")
        try:
            # Delayed authentication: plaintext streams into the new encryption, and the
            # tag is checked at its end, before anything replaces the object.
            body = plaintext_body(
                response["Body"],
                None if announced is None else int(announced),
                decryptor,
                task.bucket,
                task.key,
                delayed=True,
                buffer_size=0,
            )
        except BaseException:
            with contextlib.suppress(Exception):
                response["Body"].close()
            raise
        context = self.new_encryption_context or self.encryption_context
        self._replace(task, head, body, response, context, size=content.plaintext_length(size))
        if content.from_instruction_file:
            # The new object holds its key in its metadata, so the old file is stale; but
            # only while the object is still ours (another writer's may need its file).
            with contextlib.suppress(ClientError):  # the upgrade is done either way
                now = self.s3.head_object(Bucket=task.bucket, Key=task.key).get("Metadata", {})
                if not md.needs_instruction_file({k.lower(): v for k, v in now.items()}):
                    delete_instruction_file(
                        self.s3, task.bucket, task.key, {}, self.instruction_file_suffix
                    )
        return _record(
            task,
            "succeeded",
            f"upgraded from V{int(content.version)} to V3",
            bytes=size,
            outcome="upgraded",
        )

    def _encrypt(self, task: Task) -> Record:
        head, other = self._object_itself(task)
        if other is not None:
            return other
        size = int(head.get("ContentLength") or 0)
        try:
            content = self._content(task, head)
        except NotEncryptedError:
            pass
        else:
            metadata = {k.lower(): v for k, v in head.get("Metadata", {}).items()}
            if md.needs_instruction_file(metadata):
                # Only a file beside it says it is encrypted, and anyone who can write to
                # the bucket can plant one next to plaintext: believe it once a key of
                # this job authenticates the content.
                try:
                    self._authenticate(task, head, content)
                except S3CSEError as exc:
                    return _record(
                        task,
                        "failed",
                        "an instruction file says it is encrypted, but no key of this job "
                        f"authenticates it ({exc.message}): it may be plaintext beside a "
                        "planted instruction file; look at it before anything else",
                        "Ambiguous",
                        outcome="ambiguous",
                    )
            return _record(task, "skipped", "already encrypted", outcome="already-done")
        if self.dryrun:
            return _record(task, "succeeded", _done("encrypted", True), outcome="encrypted")
        # Plaintext has no tag to catch a short body: the answer must be the whole object.
        response = self._get_whole(task, head)
        context = self.new_encryption_context or self.encryption_context
        self._replace(task, head, response["Body"], response, context, size=size)
        return _record(task, "succeeded", "encrypted in place", bytes=size, outcome="encrypted")

    def _get_whole(self, task: Task, head: Mapping[str, Any]) -> dict[str, Any]:
        """GET of the object HEAD saw (IfMatch), refused unless it is all of it: no
        Content-Range, and as many bytes as HEAD said."""
        response = dict(self.s3.get_object(Bucket=task.bucket, Key=task.key, IfMatch=head["ETag"]))
        announced, expected = response.get("ContentLength"), head.get("ContentLength")
        if response.get("ContentRange") or (
            announced is not None and expected is not None and int(announced) != int(expected)
        ):
            with contextlib.suppress(Exception):
                response["Body"].close()
            raise UnexpectedResponseError(
                f"S3 answered a request for the whole object (of {expected} bytes) with "
                f"{announced} bytes and Content-Range {response.get('ContentRange')!r}; "
                "nothing replaced"
            ).at(task.bucket, task.key)
        return response

    def _replace(
        self,
        task: Task,
        head: Mapping[str, Any],
        body: Any,
        response: Mapping[str, Any],
        context: Mapping[str, str] | None,
        *,
        size: int | None,
    ) -> None:
        """Write the plaintext ``body`` (read from ``response``) over the object,
        encrypted, on the condition that the object is still the one HEAD saw, keeping
        its attributes, user metadata and tags."""
        assert self._writer is not None
        with contextlib.closing(body):  # whatever fails below, the GET's connection goes back
            user = {
                k: v
                for k, v in (head.get("Metadata") or {}).items()
                if k.lower() not in md.crypto_metadata_keys()
            }
            extra: dict[str, Any] = {
                **_rewrap.rewrite_arguments(head, {}),
                "Metadata": user,
                "IfMatch": head["ETag"],
            }
            extra.pop("ChecksumAlgorithm", None)  # the new ciphertext's checksum is S3's
            if context:
                extra["EncryptionContext"] = dict(context)
            if int(response.get("TagCount") or 0):
                tags = self.s3.get_object_tagging(Bucket=task.bucket, Key=task.key)["TagSet"]
                extra["Tagging"] = urllib.parse.urlencode([(t["Key"], t["Value"]) for t in tags])
            if size is not None and size <= _WHOLE:
                # Read to its end first: a delayed-authentication body checks its tag
                # there, so nothing unauthenticated is written; one PUT, no multipart.
                plaintext = body.read()
                if self.cancel.is_set():
                    raise _Cancelled
                put_object(
                    self._writer,
                    {"Bucket": task.bucket, "Key": task.key, "Body": plaintext, **extra},
                )
                return

            def stop_if_cancelled(_: int) -> None:
                if self.cancel.is_set():
                    raise _Cancelled  # the multipart upload is aborted

            transfer.upload(
                self._writer,
                body,
                task.bucket,
                task.key,
                extra_args=extra,
                callback=stop_if_cancelled,
                config=None,
            )


class _Cancelled(Exception):
    """The job was stopped while this object was being rewritten."""


#: Objects up to this plaintext size are rewritten with one PUT.
_WHOLE = 8 * 1024 * 1024


def missing_keys(operation: str, reading: bool, writing: bool) -> str | None:
    """Why ``operation`` cannot run with the keys given (``reading``: keys that read,
    ``writing``: a new key), in the JobSpec's terms (keys, to_keys); None: it can."""
    if operation not in OPERATIONS:
        return f"operation {operation!r} is not one of {', '.join(OPERATIONS)}"
    if operation == "rewrap" and not writing:
        return "rewrap needs the new key (to_keys)"
    if operation in ("rewrap", "upgrade", "verify") and not reading:
        return f"{operation} needs the keys that read (keys)"
    if operation == "encrypt" and not (reading or writing):
        return "encrypt needs the key to encrypt under (to_keys)"
    return None


def describe_for_census(content: md.ContentMetadata) -> dict[str, Any]:
    """Census's grouping of one object: format (V1 CBC, V1 GCM, V2, V3), wrap, the key
    (KMS key id or material description) and where the metadata is."""
    version = int(content.version)
    label = f"V{version}"
    if version == 1:
        label += f" {content.suite.cipher}"
    if content.kms_encryption_context is not None:
        key = content.kms_key_id or "(KMS key id inside the wrapped key)"
    else:
        key = json.dumps(dict(content.material_description), sort_keys=True)
    return {
        "format": label,
        "wrap": content.wrap_algorithm.value,
        "key": key,
        "location": "instruction file" if content.from_instruction_file else "metadata",
    }


def _done(what: str, dryrun: bool) -> str:
    return f"(dryrun) would be {what}" if dryrun else what


def _record(
    task: Task,
    status: Status,
    message: str,
    error_code: str = "",
    *,
    bytes: int = 0,
    census: dict[str, Any] | None = None,
    outcome: str = "",
) -> Record:
    return Record(
        task.bucket,
        task.key,
        task.version_id,
        status,
        message,
        error_code,
        bytes,
        census,
        outcome or status,
    )


def _not_encrypted(task: Task) -> Record:
    return _record(
        task, "skipped", "not encrypted (encrypt it with batch encrypt)", outcome="not-encrypted"
    )


def _instruction_file(task: Task) -> Record:
    return _record(
        task, "skipped", "the instruction file of an object beside it", outcome="instruction-file"
    )
