"""A pytest plugin: no key bytes in any error message or s3cse log line, suite-wide.

While the whole suite runs it records every master key handed to an AesKeyring, every
data key and content key that reaches the KDF or a content cipher, every S3CSEError
raised, and every record logged under ``s3cse``. At the end it looks for each key, raw,
in hex and in base64, in every message and log line, and fails the run on a hit.
"""

from __future__ import annotations

import base64
import logging
from typing import Any

import pytest

SECRETS: set[bytes] = set()
ERRORS: list[Any] = []
LOG_LINES: list[str] = []
RESULT: dict[str, Any] = {}


class _Capture(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        LOG_LINES.append(self.format(record))


def _record(key: Any) -> None:
    if isinstance(key, bytes | bytearray) and len(key) >= 16:
        SECRETS.add(bytes(key))


def install() -> None:
    import s3cse
    from s3cse.core import ciphers, kdf
    from s3cse.core.keyrings import aes

    original_hkdf = kdf._hkdf

    def hkdf(data_key: Any, message_id: bytes, info: bytes, length: int) -> bytes:
        _record(data_key)
        out = original_hkdf(data_key, message_id, info, length)
        _record(out)
        return out

    kdf._hkdf = hkdf  # type: ignore[assignment]
    for cls in (
        ciphers.GcmEncryptor,
        ciphers.GcmDecryptor,
        ciphers.CbcDecryptor,
        ciphers.CtrDecryptor,
    ):
        init = cls.__init__

        def wrapped(self: Any, key: Any, *args: Any, __init: Any = init, **kwargs: Any) -> None:
            _record(key)
            __init(self, key, *args, **kwargs)

        cls.__init__ = wrapped  # type: ignore[method-assign]
    aes_init = aes.AesKeyring.__init__

    def aes_wrapped(self: Any, key: Any, *args: Any, **kwargs: Any) -> None:
        _record(key)
        aes_init(self, key, *args, **kwargs)

    aes.AesKeyring.__init__ = aes_wrapped  # type: ignore[method-assign]
    error_init = s3cse.S3CSEError.__init__

    def error_wrapped(self: Any, *args: Any, **kwargs: Any) -> None:
        error_init(self, *args, **kwargs)
        ERRORS.append(self)

    s3cse.S3CSEError.__init__ = error_wrapped  # type: ignore[method-assign]
    handler = _Capture()
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    logger = logging.getLogger("s3cse")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)


def _forms(secret: bytes) -> list[str]:
    forms = [
        secret.hex(),
        secret.hex().upper(),
        base64.b64encode(secret).decode(),
        base64.b64encode(secret).decode().rstrip("="),
    ]
    if len(set(secret)) > 1:
        # Raw text forms of a test key made of one repeated byte (b'"' * 32) are just a run
        # of one character, which attacker-chosen values quoted in messages contain too;
        # such keys are still looked for in hex and base64.
        forms += [repr(secret)[2:-1], secret.decode("latin-1")]
    return forms


def scan() -> list[str]:
    texts = [str(e) for e in ERRORS] + [repr(e) for e in ERRORS] + LOG_LINES
    haystack = "\n".join(texts)
    leaks = []
    for secret in SECRETS:
        for form in _forms(secret):
            if form and form in haystack:
                where = next((t for t in texts if form in t), "")
                leaks.append(f"key {secret[:4].hex()}... found in: {where[:200]}")
                break
    RESULT.update(secrets=len(SECRETS), errors=len(ERRORS), logs=len(LOG_LINES), leaks=leaks)
    return leaks


def pytest_configure(config: pytest.Config) -> None:
    install()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if scan() and session.exitstatus == 0:
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not RESULT:
        return
    terminalreporter.write_line(
        f"secret scan: {RESULT['secrets']} keys checked against {RESULT['errors']} error "
        f"messages and {RESULT['logs']} s3cse log lines: "
        + ("no leaks" if not RESULT["leaks"] else f"{len(RESULT['leaks'])} LEAKS")
    )
    for leak in RESULT["leaks"][:20]:
        terminalreporter.write_line(f"  {leak}")
