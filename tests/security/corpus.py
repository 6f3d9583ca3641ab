"""The tamper corpus: objects with exactly one defect each, built from good objects.

Every case names the defect and the error classes that count as "its specific
error". Cases are generated for each format (V1, V2, V3), each keyring type (AES,
RSA, KMS) and each metadata strategy (object metadata, instruction file).
"""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Iterator

import s3cse

E = s3cse


@dataclasses.dataclass
class Case:
    name: str
    metadata: dict[str, str]
    instruction: dict[str, str] | None
    body: bytes
    expected: tuple[type[Exception], ...]


@dataclasses.dataclass
class Good:
    """A well-formed stored object: its metadata, instruction file (or None) and body."""

    version: int
    keyring: str
    metadata: dict[str, str]
    instruction: dict[str, str] | None
    body: bytes

    @property
    def fields(self) -> dict[str, str]:
        return {**self.metadata, **(self.instruction or {})}


def flip(value: str, index: int = 0) -> str:
    raw = bytearray(base64.b64decode(value))
    raw[index % len(raw)] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


def truncate(value: str) -> str:
    raw = base64.b64decode(value)
    return base64.b64encode(raw[:-1]).decode()


def hex_encode(value: str) -> str:
    return base64.b64decode(value).hex()


B64_FIELDS = {"x-amz-key", "x-amz-key-v2", "x-amz-iv", "x-amz-3", "x-amz-d", "x-amz-i"}
# Edits that cannot change what decrypts (not authenticated, not used to decrypt): the
# plaintext length hint. They are checked separately: the object must still decrypt.
BENIGN = {"x-amz-unencrypted-content-length"}

MALFORMED = (E.MalformedMetadataError,)
INTEGRITY = (E.IntegrityError,)
KEY = (E.KeyringError,)
LEGACY = (E.LegacyAlgorithmDisabledError, E.CommitmentPolicyError)
# An instruction file beside complete object metadata is never read (that saves a GET on
# every read), so it cannot influence decryption: such a case must yield the genuine
# plaintext, or DuplicateMetadataError when the file is read (V3 with x-amz-3 absent).
NOT_CONSULTED = (E.DuplicateMetadataError, type(None))


def _where(good: Good, field: str) -> str:
    return (
        "instruction" if good.instruction is not None and field in good.instruction else "metadata"
    )


def _with(
    good: Good, field: str, value: str | None
) -> tuple[dict[str, str], dict[str, str] | None]:
    meta = dict(good.metadata)
    instr = dict(good.instruction) if good.instruction is not None else None
    target = instr if _where(good, field) == "instruction" and instr is not None else meta
    if value is None:
        target.pop(field, None)
    else:
        target[field] = value
    return meta, instr


def _field_error(good: Good, field: str, kind: str) -> tuple[type[Exception], ...]:
    """The specific error for a defect in ``field`` of kind removed/empty/flipped/..."""
    if good.version == 1:
        return LEGACY  # default mode never reads V1 at all
    if kind in ("removed", "empty", "re-encoded", "truncated") and field not in (
        "x-amz-matdesc",
        "x-amz-m",
        "x-amz-t",
    ):
        if kind in ("truncated", "re-encoded") and field in ("x-amz-key-v2", "x-amz-3"):
            return KEY + MALFORMED  # hex digits are valid base64: a longer, garbled key blob
        if (
            kind == "removed"
            and field in ("x-amz-key-v2", "x-amz-3")
            and good.instruction is not None
        ):
            return (*MALFORMED, E.NotEncryptedError)
        return MALFORMED
    if field in ("x-amz-matdesc", "x-amz-m", "x-amz-t"):
        if good.keyring == "kms":
            return MALFORMED + KEY  # reserved key missing, or KMS refuses the context
        if kind == "empty":
            return (*MALFORMED, E.NoMatchingKeyringError)  # "" is not JSON; dropped by some stores
        return (E.NoMatchingKeyringError,)
    # bit flips and swaps of binary fields
    if field in ("x-amz-d", "x-amz-i") or (good.version == 3 and field == "x-amz-3"):
        return (E.CommitmentMismatchError, *KEY)
    if field == "x-amz-iv":
        return INTEGRITY
    return KEY + INTEGRITY


def cases_for(good: Good, other: Good, other_version: Good | None) -> Iterator[Case]:
    label = f"V{good.version}/{good.keyring}/{'instruction' if good.instruction is not None else 'metadata'}"
    fields = sorted(k for k in good.fields if k not in BENIGN)
    for field in fields:
        meta, instr = _with(good, field, None)
        yield Case(
            f"{label}: {field} removed",
            meta,
            instr,
            good.body,
            _field_error(good, field, "removed"),
        )
        meta, instr = _with(good, field, "")
        yield Case(
            f"{label}: {field} empty", meta, instr, good.body, _field_error(good, field, "empty")
        )
        value = good.fields[field]
        if field in B64_FIELDS:
            meta, instr = _with(good, field, hex_encode(value))
            yield Case(
                f"{label}: {field} re-encoded as hex",
                meta,
                instr,
                good.body,
                _field_error(good, field, "re-encoded"),
            )
            for index in (0, -1):
                meta, instr = _with(good, field, flip(value, index))
                yield Case(
                    f"{label}: {field} bit flipped at {index}",
                    meta,
                    instr,
                    good.body,
                    _field_error(good, field, "flipped"),
                )
            meta, instr = _with(good, field, truncate(value))
            yield Case(
                f"{label}: {field} truncated",
                meta,
                instr,
                good.body,
                _field_error(good, field, "truncated"),
            )
        elif field in ("x-amz-matdesc", "x-amz-m", "x-amz-t"):
            meta, instr = _with(good, field, "{not json")
            yield Case(
                f"{label}: {field} not JSON",
                meta,
                instr,
                good.body,
                MALFORMED if good.version != 1 else LEGACY,
            )
            changed = json.loads(value)
            changed["injected"] = "1"
            meta, instr = _with(good, field, json.dumps(changed))
            yield Case(
                f"{label}: {field} entry added",
                meta,
                instr,
                good.body,
                _field_error(good, field, "changed"),
            )
        else:
            meta, instr = _with(good, field, value + "x")
            yield Case(
                f"{label}: {field} value changed",
                meta,
                instr,
                good.body,
                MALFORMED if good.version != 1 else LEGACY,
            )
        if (
            field in other.fields
            and other.fields[field] != value
            and field
            not in ("x-amz-c", "x-amz-w", "x-amz-wrap-alg", "x-amz-cek-alg", "x-amz-tag-len")
        ):
            meta, instr = _with(good, field, other.fields[field])
            yield Case(
                f"{label}: {field} swapped from another object",
                meta,
                instr,
                good.body,
                _field_error(good, field, "swapped"),
            )
    if good.version != 1:
        # wrap and content algorithm changes
        if good.version == 2:
            for new in ("AESWrap", "kms", "RSA/ECB/OAEPWithSHA-256AndMGF1Padding"):
                meta, instr = _with(good, "x-amz-wrap-alg", new)
                yield Case(
                    f"{label}: wrap algorithm changed to {new}",
                    meta,
                    instr,
                    good.body,
                    LEGACY + KEY,
                )
            meta, instr = _with(good, "x-amz-cek-alg", "AES/CTR/NoPadding")
            yield Case(f"{label}: content algorithm GCM -> CTR", meta, instr, good.body, MALFORMED)
            meta, instr = _with(good, "x-amz-cek-alg", "AES/CBC/PKCS5Padding")
            yield Case(
                f"{label}: content algorithm GCM -> CBC", meta, instr, good.body, MALFORMED + LEGACY
            )
        else:
            for code in ("02", "12", "22"):
                if code != good.fields["x-amz-w"]:
                    meta, instr = _with(good, "x-amz-w", code)
                    yield Case(
                        f"{label}: wrap code changed to {code}",
                        meta,
                        instr,
                        good.body,
                        MALFORMED + KEY,
                    )
            meta, instr = _with(good, "x-amz-c", "116")
            yield Case(f"{label}: content suite changed to 116", meta, instr, good.body, MALFORMED)
        # fields of the other version planted beside the real ones
        if other_version is not None:
            extra = {k: v for k, v in other_version.fields.items() if k not in good.fields}
            # With the data key in an instruction file, a complete set of the other version's
            # fields in the object is a metadata swap: its key does not open this body.
            expected = (
                (E.MixedFormatMetadataError,)
                if good.instruction is None
                else (E.MixedFormatMetadataError, E.DuplicateMetadataError, *INTEGRITY)
            )
            yield Case(
                f"{label}: V{other_version.version} fields added to the object",
                {**good.metadata, **extra},
                good.instruction,
                good.body,
                expected,
            )
    # ciphertext defects
    body = good.body
    body_cases = [
        ("truncated by 1", body[:-1]),
        ("truncated by 16", body[:-16]),
        ("extended by 1", body + b"\x00"),
        ("extended by 16", body + bytes(16)),
        ("tag flipped", body[:-1] + bytes([body[-1] ^ 1])),
        ("first byte flipped", bytes([body[0] ^ 1]) + body[1:]),
        ("empty body", b""),
    ]
    for name, mutated in body_cases:
        yield Case(
            f"{label}: ciphertext {name}",
            good.metadata,
            good.instruction,
            mutated,
            INTEGRITY if good.version != 1 else LEGACY,
        )
    # instruction-file defects
    if good.instruction is not None:
        if other.instruction is not None:
            yield Case(
                f"{label}: instruction file swapped with another object's",
                good.metadata,
                other.instruction,
                good.body,
                (E.CommitmentMismatchError, *KEY)
                if good.version == 3
                else (INTEGRITY + KEY if good.version == 2 else LEGACY),
            )
        yield Case(
            f"{label}: instruction file missing",
            good.metadata,
            None,
            good.body,
            MALFORMED if good.version == 3 else (E.NotEncryptedError,),
        )
        dup_meta = {**good.metadata, **good.instruction}
        yield Case(
            f"{label}: metadata duplicated in object and instruction file",
            dup_meta,
            good.instruction,
            good.body,
            NOT_CONSULTED if good.version != 1 else (*LEGACY, E.DuplicateMetadataError),
        )
        if good.version == 3:
            planted = {**good.instruction, "x-amz-d": good.metadata["x-amz-d"]}
            yield Case(
                f"{label}: x-amz-d planted in the instruction file",
                good.metadata,
                planted,
                good.body,
                MALFORMED,
            )
    else:
        stray = (
            {"x-amz-key-v2": "AAAA", "x-amz-iv": "AAAA"}
            if good.version != 3
            else {"x-amz-3": "AAAA", "x-amz-w": "02"}
        )
        yield Case(
            f"{label}: a second copy of the metadata in an instruction file",
            good.metadata,
            stray,
            good.body,
            NOT_CONSULTED if good.version != 1 else (*LEGACY, E.DuplicateMetadataError),
        )


def benign_cases(good: Good) -> Iterator[Case]:
    for field in sorted(BENIGN & set(good.fields)):
        meta, instr = _with(good, field, "12345")
        yield Case(
            f"V{good.version}/{good.keyring}: {field} changed (not authenticated, unused for GCM)",
            meta,
            instr,
            good.body,
            (),
        )
