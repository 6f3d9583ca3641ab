"""Key files and key options: making key files, reading them (with a warning when others
can read a secret one), and turning a set of key options into one keyring.

Used by every shell that takes keys as options: the CLI, the fsspec filesystem, batch
jobs."""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import stat
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from .core.keyrings import AesKeyring, Keyring, KmsKeyring, MultiKeyring, RsaKeyring
from .errors import ConfigurationError, InvalidKeyError

__all__ = [
    "KeyFileWarning",
    "KeyOptions",
    "build_keyrings",
    "read_aes_key",
    "write_aes_key",
    "write_rsa_key_pair",
]


class KeyFileWarning(UserWarning):
    """A key file others can read."""


def _write_private(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600 from the start (never briefly world-readable)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)


def write_aes_key(path: str | os.PathLike[str]) -> None:
    """Write 32 random bytes to a new file with mode 0600."""
    _write_private(Path(path), os.urandom(32))


def write_rsa_key_pair(
    private_path: str | os.PathLike[str], public_path: str | os.PathLike[str], bits: int = 3072
) -> None:
    """Write a new RSA key pair: private key PKCS#8 PEM (0600), public key PEM."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    if bits < 2048:
        raise ConfigurationError("RSA keys must be at least 2048 bits")
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    _write_private(
        Path(private_path),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    Path(public_path).write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def _read_key_file(path: str | os.PathLike[str], what: str, *, secret: bool) -> bytes:
    """A key file's bytes, with a warning when others could read a secret one or replace
    any one (a public key swapped for an attacker's would encrypt to them)."""
    p = Path(path)
    try:
        mode = p.stat().st_mode
        data = p.read_bytes()
    except OSError as exc:
        raise InvalidKeyError(f"cannot read {what} {p}: {exc.strerror}") from None
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        warnings.warn(
            f"{what} {p} can be changed by other users; restrict it with: chmod go-w {p}",
            KeyFileWarning,
            stacklevel=3,
        )
    if secret and mode & (stat.S_IRGRP | stat.S_IROTH):
        warnings.warn(
            f"{what} {p} is readable by other users; restrict it with: chmod 600 {p}",
            KeyFileWarning,
            stacklevel=3,
        )
    return data


def _read_secret_file(path: str | os.PathLike[str], what: str) -> bytes:
    return _read_key_file(path, what, secret=True)


def read_aes_key(path: str | os.PathLike[str]) -> bytes:
    """Read an AES-256 key file: 32 raw bytes, or the same in base64 (one line)."""
    data = _read_secret_file(path, "AES key file")
    if len(data) == 32:
        return data
    try:
        decoded = base64.b64decode(data.strip(), validate=True)
    except (binascii.Error, ValueError):
        decoded = b""
    if len(decoded) == 32:
        return decoded
    raise InvalidKeyError(
        f"{path} is not an AES key: expected 32 raw bytes (as `s3cse keygen aes` writes) or "
        f"the same in base64, found {len(data)} bytes"
    )


class KeyOptions:
    """The key options every command shares, parsed."""

    def __init__(
        self,
        *,
        kms_key_ids: Sequence[str] = (),
        aes_keys: Sequence[str] = (),
        rsa_private_keys: Sequence[str] = (),
        rsa_public_keys: Sequence[str] = (),
        matdesc: str | Mapping[str, str] | None = None,
        kms_client: Any = None,
        matdesc_option: str = "--matdesc",
        kms_discovery: bool = False,
        kms_discovery_accounts: Sequence[str] = (),
        kms_discovery_key_arns: Sequence[str] = (),
        order: Sequence[tuple[str, str]] = (),
    ):
        self.kms_key_ids = list(kms_key_ids)
        #: (kind, value) of the keys in the order the user gave them ("kms", "aes",
        #: "rsa-private", "rsa-public"); the first one given encrypts. Keys not in it
        #: follow in the fixed order KMS, AES, RSA private, RSA public.
        self.order = list(order)
        self.aes_keys = list(aes_keys)
        self.rsa_private_keys = list(rsa_private_keys)
        self.rsa_public_keys = list(rsa_public_keys)
        self.material_description = parse_json_map(matdesc, matdesc_option)
        self.matdesc_option = matdesc_option
        self.kms_client = kms_client
        self.kms_discovery_accounts = list(kms_discovery_accounts)
        self.kms_discovery_key_arns = list(kms_discovery_key_arns)
        #: Discovery is only ever asked for, never a fallback: it accepts an object
        #: wrapped under any KMS key the caller may use, a stranger's included. A filter
        #: implies it.
        self.kms_discovery = bool(
            kms_discovery or self.kms_discovery_accounts or self.kms_discovery_key_arns
        )

    @property
    def empty(self) -> bool:
        return not (
            self.kms_key_ids
            or self.aes_keys
            or self.rsa_private_keys
            or self.rsa_public_keys
            or self.kms_discovery
        )

    @property
    def uses_kms(self) -> bool:
        """Whether a KMS client is needed."""
        return bool(self.kms_key_ids or self.kms_discovery)

    def _option(self, kind: str) -> str:
        """The option that gives a key of ``kind``, as the interface in use names it."""
        if self.matdesc_option.startswith("--"):
            return f"--{kind}-key"
        return f"{kind.replace('-', '_')}_key_file"

    @contextlib.contextmanager
    def _naming(self, kind: str, path: str, private: bool = False) -> Iterator[None]:
        """Key errors name the file and the option, not the keyring's parameters."""
        try:
            yield
        except ConfigurationError as exc:
            if kind == "rsa-public" and (private or "private key" in exc.message):
                reason = (
                    f"it holds a private key; give it with {self._option('rsa-private')} "
                    "(which also encrypts), or give the public key"
                )
            elif kind == "rsa-public":
                reason = "it is not an RSA public key (PEM or DER, SubjectPublicKeyInfo)"
            else:
                reason = exc.message.replace("private_key ", "it ", 1)
            raise InvalidKeyError(f"{self._option(kind)} {path}: {reason}") from None

    def _given(self) -> list[tuple[str, str]]:
        """(kind, value) of every key, the encrypting one first."""
        fixed = (
            [("kms", k) for k in self.kms_key_ids]
            + [("aes", p) for p in self.aes_keys]
            + [("rsa-private", p) for p in self.rsa_private_keys]
            + [("rsa-public", p) for p in self.rsa_public_keys]
        )
        first = {given: i for i, given in reversed(list(enumerate(self.order)))}
        return sorted(fixed, key=lambda given: first.get(given, len(first)))

    def describe_encrypting_key(self) -> str | None:
        """What encrypts new objects, in words (None when only discovery was given)."""
        given = self._given()
        if not given:
            return None
        kind, value = given[0]
        return {
            "kms": f"KMS key {value}",
            "aes": f"AES key file {value}",
            "rsa-private": f"RSA key pair {value}",
            "rsa-public": f"RSA public key {value}",
        }[kind]

    def keyrings(self) -> list[Keyring]:
        """One keyring per key given, the first given first (it encrypts); without an
        order, KMS, AES, RSA private, RSA public."""
        rings: list[Keyring] = []
        for kind, value in self._given():
            if kind == "kms":
                rings.append(KmsKeyring(value, kms_client=self.kms_client))
            elif kind == "aes":
                rings.append(AesKeyring(read_aes_key(value), self.material_description))
            elif kind == "rsa-private":
                data = _read_secret_file(value, "RSA private key file")
                with self._naming("rsa-private", value):
                    rings.append(
                        RsaKeyring(private_key=data, material_description=self.material_description)
                    )
            else:
                data = _read_key_file(value, "RSA public key file", secret=False)
                with self._naming("rsa-public", value, b"PRIVATE KEY-----" in data):
                    rings.append(
                        RsaKeyring(public_key=data, material_description=self.material_description)
                    )
        if self.kms_discovery:
            rings.append(
                KmsKeyring.discovery(
                    self.kms_client,
                    accounts=self.kms_discovery_accounts or None,
                    key_arns=self.kms_discovery_key_arns or None,
                )
            )
        return rings


def build_keyrings(options: KeyOptions) -> Keyring | None:
    """The keyring for these options (None when no key was given): the first key
    writes, every key reads; a KMS discovery keyring only when asked for."""
    rings = options.keyrings()
    if not rings:
        return None
    if len(rings) == 1:
        return rings[0]
    return MultiKeyring(generator=rings[0], children=rings[1:])


def parse_json_map(value: str | Mapping[str, str] | None, option: str) -> dict[str, str]:
    """A map of strings given as JSON text (on a command line) or as a mapping."""
    if not value:
        return {}
    if isinstance(value, Mapping):
        parsed: Any = dict(value)
    else:
        try:
            parsed = json.loads(value)
        except ValueError:
            raise ConfigurationError(
                f'{option} must be a JSON object, e.g. \'{{"kid": "1"}}\''
            ) from None
    if not isinstance(parsed, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in parsed.items()
    ):
        raise ConfigurationError(f"{option} must be a JSON object of strings")
    return parsed
