"""Known-answer vectors for V3 key derivation and commitment.

Sources are cited per vector; see tests/vectors/README.md.
"""

from __future__ import annotations

import base64

import pytest

from s3cse.core import kdf

VECTORS = [
    # shared/FORMAT.md, from the Go client's tests (aws/amazon-s3-encryption-client-go).
    pytest.param(
        "lP6AbIQTmptyb/+WQq+ubDw+w7na0T1LGSByZGuaono=",
        "sE9zLb4tsEBJkvEhLMZFxMj9oZJBbQ6ZOgOqHA==",
        "6JOSx47RkdyfciJkNauuC4RpkMcWZY4a+i1RzQ==",
        "0bd256e569a37d67567f522c38dbe32fdd0c1e28333dec1324197b54325eade6",
        id="format-md-go",
    ),
]


@pytest.mark.parametrize("data_key,message_id,commitment,content_key", VECTORS)
def test_v3_derivation_known_answers(data_key, message_id, commitment, content_key):
    dk = base64.b64decode(data_key)
    mid = base64.b64decode(message_id)
    assert kdf.derive_commitment(dk, mid) == base64.b64decode(commitment)
    assert kdf.derive_content_key(dk, mid).hex() == content_key
    assert kdf.verify_commitment_and_derive(dk, mid, base64.b64decode(commitment)).hex() == content_key


def test_wrong_commitment_fails_before_derivation(monkeypatch):
    import s3cse

    called = []
    monkeypatch.setattr(kdf, "derive_content_key", lambda *a: called.append(a) or b"")
    with pytest.raises(s3cse.CommitmentMismatchError):
        kdf.verify_commitment_and_derive(b"\x00" * 32, b"\x01" * 28, b"\x02" * 28)
    assert called == []
