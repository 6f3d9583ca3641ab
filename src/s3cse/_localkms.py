"""The local KMS: moto's server, with its symmetric keys and aliases kept on disk.

moto keeps KMS keys in memory, so a restarted ``moto_server`` has new keys and everything
wrapped under the old ones is unreadable for good. This runs moto's server in-process
and writes every key (id, ARN, key material, state) and alias to a state file (mode
0600) after each call that changes them, and loads them back at start, so an object
written before ``s3cse local stop`` reads after ``s3cse local start``.

This is a local stand-in for development: the key material is on disk, in the clear,
under ``$S3CSE_HOME``, protected by file permissions only. Asymmetric and HMAC keys are
not kept (s3cse uses symmetric keys only).

    python -m s3cse._localkms --port 4566 --state ~/.local/share/s3cse/local/kms/keys.json
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import signal
import tempfile
import threading
from pathlib import Path
from typing import Any

#: KmsBackend methods after which the state file is written again.
_CHANGING = (
    "create_key",
    "create_alias",
    "update_alias",
    "delete_alias",
    "enable_key",
    "disable_key",
    "schedule_key_deletion",
    "cancel_key_deletion",
    "update_key_description",
    "delete_key",
)
_KEPT_FIELDS = ("description", "key_usage", "key_state", "enabled", "creation_date", "origin")


def _write_private(path: Path, data: str) -> None:
    """Replace ``path`` atomically with ``data``, readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".keys-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def snapshot(backends: Any) -> dict[str, Any]:
    """Every symmetric key and alias of every (account, region) moto KMS backend."""
    keys = []
    for account, by_region in list(backends.items()):
        for region, backend in list(by_region.items()):
            for key in list(backend.keys.values()):
                if getattr(key, "key_spec", "SYMMETRIC_DEFAULT") != "SYMMETRIC_DEFAULT":
                    continue
                keys.append(
                    {
                        "account": account,
                        "region": region,
                        "id": key.id,
                        "material": base64.b64encode(key.key_material).decode(),
                        "aliases": sorted(key.aliases),
                        "deletion_date": (
                            key.deletion_date.isoformat() if key.deletion_date else None
                        ),
                        **{name: getattr(key, name, None) for name in _KEPT_FIELDS},
                    }
                )
    return {"version": 1, "keys": keys}


def restore(backends: Any, state: dict[str, Any]) -> int:
    """Recreate the keys and aliases of ``state`` (as :func:`snapshot` made it)."""
    import datetime

    restored = 0
    for saved in state.get("keys", []):
        backend = backends[saved["account"]][saved["region"]]
        key = backend.create_key(
            None, saved.get("key_usage") or "ENCRYPT_DECRYPT", "SYMMETRIC_DEFAULT",
            saved.get("description") or "", None,
        )  # fmt: skip
        del backend.keys[key.id]
        key.arn = key.arn.replace(key.id, saved["id"])
        key.id = saved["id"]
        key.key_material = base64.b64decode(saved["material"])
        for name in _KEPT_FIELDS:
            if saved.get(name) is not None:
                setattr(key, name, saved[name])
        if saved.get("deletion_date"):
            key.deletion_date = datetime.datetime.fromisoformat(saved["deletion_date"])
        backend.keys[key.id] = key
        for alias in saved.get("aliases", []):
            backend.create_alias(key.id, alias)
        restored += 1
    return restored


def _persisting(backends: Any, state_file: Path) -> None:
    """Make every changing KmsBackend call write the state file afterwards."""
    from moto.kms.models import KmsBackend

    lock = threading.Lock()

    def save() -> None:
        with lock:
            _write_private(state_file, json.dumps(snapshot(backends), indent=1))

    for name in _CHANGING:
        original = getattr(KmsBackend, name, None)
        if original is None:
            continue

        def changed(self: Any, *args: Any, __original: Any = original, **kwargs: Any) -> Any:
            result = __original(self, *args, **kwargs)
            save()
            return result

        setattr(KmsBackend, name, changed)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="moto's KMS with keys kept in a file")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state", required=True, help="the state file (created, mode 0600)")
    args = parser.parse_args(argv)

    from moto.kms.models import kms_backends
    from moto.server import ThreadedMotoServer

    state_file = Path(args.state)
    if state_file.exists():
        try:
            restore(kms_backends, json.loads(state_file.read_text()))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            # Never start without them (a new key under the old alias would hide the
            # loss) and never overwrite the file: it holds the only copy of the keys.
            raise SystemExit(
                f"s3cse local KMS: cannot read its keys from {state_file} ({exc!r}); repair "
                "the file, or move it away to start with new keys (objects encrypted under "
                "the old ones then stay unreadable)"
            ) from None
    _persisting(kms_backends, state_file)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=args.port, verbose=False)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server.start()
    try:
        stop.wait()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
