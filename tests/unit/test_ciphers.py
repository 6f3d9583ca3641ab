"""Streaming state machines, multipart sequencing, ranges and configuration checks."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import s3cse
from s3cse.core.ciphers import GcmEncryptor, plan_range
from s3cse.core.suites import GCM_MAX_PLAINTEXT_LENGTH

from .conftest import LEGACY, V3


def test_all_zero_iv_is_refused():
    with pytest.raises(s3cse.ConfigurationError, match="all-zero"):
        GcmEncryptor(b"\x01" * 32, bytes(12))


def test_plaintext_over_gcm_limit_is_refused_before_any_key(aes_keyring):
    with pytest.raises(s3cse.PlaintextTooLargeError, match="2\\^36 - 32"):
        s3cse.begin_encryption(aes_keyring, plaintext_length=GCM_MAX_PLAINTEXT_LENGTH + 1)
    s3cse.begin_encryption(aes_keyring, plaintext_length=GCM_MAX_PLAINTEXT_LENGTH)


def test_streaming_count_limit_is_enforced(aes_keyring):
    enc = s3cse.begin_encryption(aes_keyring)
    enc._cipher._count = GCM_MAX_PLAINTEXT_LENGTH - 1
    enc.update(b"x")
    with pytest.raises(s3cse.PlaintextTooLargeError):
        enc.update(b"x")


def multipart_parts(keyring, data, part_size):
    enc = s3cse.begin_encryption(keyring)
    mp = enc.multipart()
    parts = []
    chunks = [data[i : i + part_size] for i in range(0, len(data), part_size)] or [b""]
    for number, chunk in enumerate(chunks, start=1):
        parts.append(mp.encrypt_part(number, chunk, last=number == len(chunks)))
    return enc, parts


@settings(max_examples=30, deadline=None)
@given(size=st.integers(0, 200), blocks=st.integers(1, 4))
def test_multipart_equals_single_stream(size, blocks):
    keyring = s3cse.AesKeyring(b"\x05" * 32)
    data = bytes(range(size % 256)) * (size // 256 + 1)
    data = data[:size]
    enc, parts = multipart_parts(keyring, data, blocks * 16)
    assert s3cse.decrypt(b"".join(parts), enc.metadata, keyring) == data


def test_multipart_resend_of_the_last_part_returns_identical_ciphertext(aes_keyring):
    mp = s3cse.begin_encryption(aes_keyring).multipart()
    first = mp.encrypt_part(1, b"a" * 32, last=False)
    assert mp.encrypt_part(1, b"a" * 32, last=False) == first  # its upload failed: resend
    second = mp.encrypt_part(2, b"b" * 7, last=True)
    assert mp.encrypt_part(2, b"b" * 7, last=True) == second
    with pytest.raises(s3cse.MultipartSequenceError):
        mp.encrypt_part(1, b"a" * 32, last=False)  # only the part just encrypted comes again
    with pytest.raises(s3cse.MultipartSequenceError):
        mp.encrypt_part(2, b"c" * 7, last=True)  # other bytes under the same part: refused


def test_multipart_order_and_alignment_are_enforced(aes_keyring):
    mp = s3cse.begin_encryption(aes_keyring).multipart()
    with pytest.raises(s3cse.MultipartSequenceError, match="expected part 1, got part 2"):
        mp.encrypt_part(2, bytes(16), last=False)
    with pytest.raises(s3cse.MultipartSequenceError, match="multiple of 16"):
        mp.encrypt_part(1, bytes(17), last=False)
    mp.encrypt_part(1, bytes(32), last=False)
    with pytest.raises(s3cse.MultipartSequenceError, match="expected part 2, got part 1"):
        mp.encrypt_part(1, b"\x01" * 32, last=False)
    assert len(mp.encrypt_part(2, bytes(5), last=True)) == 21
    with pytest.raises(s3cse.MultipartSequenceError, match="after the last part"):
        mp.encrypt_part(3, b"", last=True)


@pytest.mark.parametrize(
    "header,ct_len,expected",
    [
        ("bytes=0-0", 116, (0, 0, 0, 15)),
        ("bytes=5-20", 116, (5, 20, 0, 31)),
        ("bytes=16-31", 116, (16, 31, 16, 31)),
        ("bytes=90-", 116, (90, 99, 80, 99)),
        ("bytes=-10", 116, (90, 99, 80, 99)),
        ("bytes=-1000", 116, (0, 99, 0, 99)),
        ("bytes=50-5000", 116, (50, 99, 48, 99)),
    ],
)
def test_range_plans(header, ct_len, expected):
    plan = plan_range(header, ct_len)
    assert (plan.first, plan.last, plan.fetch_first, plan.fetch_last) == expected


def test_unsatisfiable_and_malformed_ranges():
    assert plan_range("bytes=100-", 116) is None
    assert plan_range("bytes=0-", 16) is None
    assert plan_range("bytes=-0", 116) is None
    for bad in ("bytes=1-2,4-5", "items=0-1", "bytes=-", "bytes=9-3"):
        with pytest.raises(s3cse.ConfigurationError):
            plan_range(bad, 116)


@settings(max_examples=60, deadline=None)
@given(size=st.integers(1, 300), a=st.integers(0, 320), b=st.integers(0, 320), v3=st.booleans())
def test_ranged_decryption_matches_slice(size, a, b, v3):
    keyring = s3cse.AesKeyring(b"\x07" * 32)
    config = (
        LEGACY
        if v3
        else s3cse.CryptoConfig(
            commitment_policy="FORBID_ENCRYPT_ALLOW_DECRYPT",
            enable_legacy_unauthenticated_modes=True,
        )
    )
    data = bytes((i * 7) % 251 for i in range(size))
    obj = s3cse.encrypt(data, keyring, config)
    first, last = min(a, b), max(a, b)
    plan = plan_range(f"bytes={first}-{last}", len(obj.ciphertext))
    if first >= size:
        assert plan is None
        return
    dec = s3cse.begin_ranged_decryption(keyring, obj.metadata, plan, config)
    fetched = obj.ciphertext[plan.fetch_first : plan.fetch_last + 1]
    out = dec.update(fetched[:7]) + dec.update(fetched[7:]) + dec.finalize()
    assert out == data[first : last + 1]
    assert not dec.authenticated


def test_ranged_decryption_needs_the_switch(aes_keyring):
    obj = s3cse.encrypt(b"0123456789", aes_keyring)
    plan = plan_range("bytes=0-3", len(obj.ciphertext))
    with pytest.raises(s3cse.RangeNotAllowedError, match="enable_legacy_unauthenticated_modes"):
        s3cse.begin_ranged_decryption(aes_keyring, obj.metadata, plan, V3)


def test_policy_and_suite_conflicts_fail_at_construction():
    S = s3cse.AlgorithmSuite
    with pytest.raises(s3cse.ConfigurationError, match="FORBID_ENCRYPT_ALLOW_DECRYPT"):
        s3cse.CryptoConfig(encryption_algorithm=S.AES_256_GCM_IV12_TAG16_NO_KDF)
    with pytest.raises(s3cse.ConfigurationError, match="REQUIRE_ENCRYPT"):
        s3cse.CryptoConfig(
            commitment_policy="FORBID_ENCRYPT_ALLOW_DECRYPT",
            encryption_algorithm=S.AES_256_GCM_HKDF_SHA512_COMMIT_KEY,
        )
    with pytest.raises(s3cse.ConfigurationError, match="decrypt-only"):
        s3cse.CryptoConfig(encryption_algorithm=S.AES_256_CBC_IV16_NO_KDF)
    with pytest.raises(s3cse.ConfigurationError, match="unknown commitment policy"):
        s3cse.CryptoConfig(commitment_policy="sometimes")
    assert s3cse.CryptoConfig().suite is S.AES_256_GCM_HKDF_SHA512_COMMIT_KEY
    assert (
        s3cse.CryptoConfig(commitment_policy="forbid_encrypt_allow_decrypt").suite
        is S.AES_256_GCM_IV12_TAG16_NO_KDF
    )


def test_v3_policy_refuses_v2_objects_before_unwrapping(fake_kms, kms_keyring):
    v2 = s3cse.encrypt(
        b"x", kms_keyring, s3cse.CryptoConfig(commitment_policy="FORBID_ENCRYPT_ALLOW_DECRYPT")
    )
    calls = len(fake_kms.calls)
    with pytest.raises(s3cse.CommitmentPolicyError, match="REQUIRE_ENCRYPT_ALLOW_DECRYPT"):
        s3cse.decrypt(v2.ciphertext, v2.metadata, kms_keyring)
    assert len(fake_kms.calls) == calls


def test_errors_name_the_object():
    err = s3cse.IntegrityError("tag mismatch").at("bucket", "path/key")
    assert str(err) == "s3://bucket/path/key: tag mismatch"
    assert err.bucket == "bucket" and err.key == "path/key"
    assert issubclass(s3cse.CommitmentMismatchError, s3cse.IntegrityError)
    assert all(
        issubclass(getattr(s3cse, n), s3cse.S3CSEError)
        for n in s3cse.__all__
        if n.endswith("Error")
    )


def test_random_access_only_after_verification(aes_keyring):
    data = bytes(range(256)) * 10
    obj = s3cse.encrypt(data, aes_keyring)
    dec = s3cse.begin_decryption(aes_keyring, obj.metadata)
    with pytest.raises(s3cse.CipherStateError, match="verified first"):
        dec.decrypt_verified_range(obj.ciphertext[:16], 0)
    dec.update(obj.ciphertext)
    dec.finalize()
    for first, last in [(0, 0), (5, 100), (16, 47), (2559, 2559), (1000, 2559)]:
        assert (
            dec.decrypt_verified_range(obj.ciphertext[first : last + 1], first)
            == data[first : last + 1]
        )


def _crc_neutral_change(data: bytes) -> bytes:
    """``data`` with its first 4 bytes changed and 4 later bytes chosen so that the CRC32
    of the whole is unchanged (CRC32 is linear: an attacker can always do this)."""
    import zlib

    changed = bytearray(data)
    changed[0] ^= 0xFF
    target = zlib.crc32(data)
    # Solve for the 4 bytes at offset 8 by brute force over the linear map: try each
    # bit and combine (CRC(a ^ b ^ c) = CRC(a) ^ CRC(b) ^ CRC(c) for equal lengths).
    zero = bytes(len(data))
    base = zlib.crc32(bytes(changed)) ^ target  # L(change), L(x) = crc(x) ^ crc(zeros)
    columns = []
    for bit in range(32):
        flip = bytearray(len(data))
        flip[8 + bit // 8] = 1 << (bit % 8)
        columns.append(zlib.crc32(bytes(flip)) ^ zlib.crc32(zero))
    # Gaussian elimination over GF(2): find bits whose columns XOR to `base`.
    rows = [(columns[i], 1 << i) for i in range(32)]
    basis: list[tuple[int, int]] = []
    for value, mask in rows:
        for bv, bm in basis:
            if value ^ bv < value:
                value, mask = value ^ bv, mask ^ bm
        if value:
            basis.append((value, mask))
            basis.sort(reverse=True)
    want, chosen = base, 0
    for bv, bm in basis:
        if want ^ bv < want:
            want, chosen = want ^ bv, chosen ^ bm
    assert want == 0
    for bit in range(32):
        if chosen >> bit & 1:
            changed[8 + bit // 8] ^= 1 << (bit % 8)
    assert zlib.crc32(bytes(changed)) == target and bytes(changed) != data
    return bytes(changed)


def test_rewind_refuses_a_crc_neutral_change_of_the_plaintext(aes_keyring):
    data = bytes(range(256)) * 4
    forged = _crc_neutral_change(data)
    enc = s3cse.begin_encryption(aes_keyring)
    first = enc.update(data) + enc.finalize()
    enc.rewind()
    assert enc.update(data) + enc.finalize() == first  # an identical replay is allowed
    enc.rewind()
    with pytest.raises(s3cse.SourceChangedError, match="changed between"):
        enc.update(forged)


def test_rewind_refuses_a_replay_that_is_cut_differently_shrinks_or_grows(aes_keyring):
    enc = s3cse.begin_encryption(aes_keyring)
    enc.update(b"a" * 32)
    enc.update(b"b" * 32)
    enc.finalize()
    enc.rewind()
    with pytest.raises(s3cse.CipherStateError, match="cut the plaintext"):
        enc.update(b"a" * 64)
    enc.rewind()
    enc.update(b"a" * 32)
    with pytest.raises(s3cse.SourceChangedError, match="shrank"):
        enc.finalize()  # a shorter message under the same IV would give away the GHASH key
    enc.rewind()
    enc.update(b"a" * 32)
    enc.update(b"b" * 32)
    with pytest.raises(s3cse.SourceChangedError, match="grew"):
        enc.update(b"c")


def test_a_replay_may_go_further_than_an_interrupted_first_pass(aes_keyring):
    enc = s3cse.begin_encryption(aes_keyring)
    head = enc.update(b"a" * 32)  # the first send was cut off here
    enc.rewind()
    replay = enc.update(b"a" * 32) + enc.update(b"b" * 16) + enc.finalize()
    assert replay.startswith(head)
    assert s3cse.decrypt(replay, enc.metadata, aes_keyring) == b"a" * 32 + b"b" * 16


def test_a_finalized_cipher_raises_a_misuse_error_not_a_configuration_error(aes_keyring):
    enc = s3cse.begin_encryption(aes_keyring)
    enc.finalize()
    with pytest.raises(s3cse.CipherStateError) as info:
        enc.update(b"x")
    assert not isinstance(info.value, s3cse.ConfigurationError)


def test_multipart_after_update_is_refused(aes_keyring):
    enc = s3cse.begin_encryption(aes_keyring)
    enc.update(b"a" * 16)
    with pytest.raises(s3cse.CipherStateError, match="before any update"):
        enc.multipart()


def test_a_piece_the_cipher_refused_is_not_recorded_for_replays(aes_keyring):
    enc = s3cse.begin_encryption(aes_keyring)
    with pytest.raises(ValueError):
        enc.update_into(b"x" * 64, bytearray(8))  # output buffer too small: nothing encrypted
    first = enc.update(b"y" * 32) + enc.finalize()
    enc.rewind()
    assert enc.update(b"y" * 32) + enc.finalize() == first
    assert s3cse.decrypt(first, enc.metadata, aes_keyring) == b"y" * 32
