"""V3 commitment check order (the known-answer vectors are in test_known_answers.py)."""

from __future__ import annotations

import pytest

from s3cse.core import kdf


def test_wrong_commitment_fails_before_derivation(monkeypatch):
    import s3cse

    called = []
    monkeypatch.setattr(kdf, "derive_content_key", lambda *a: called.append(a) or b"")
    with pytest.raises(s3cse.CommitmentMismatchError):
        kdf.verify_commitment_and_derive(b"\x00" * 32, b"\x01" * 28, b"\x02" * 28)
    assert called == []
