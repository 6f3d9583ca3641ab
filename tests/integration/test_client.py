"""EncryptionClient against the real local SeaweedFS and moto KMS (no S3 mocks)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import tempfile
import time

import pytest
from botocore.exceptions import ClientError

import s3cse
from tests.stores import lower_keys

SIZES = [0, 1, 15, 16, 17, 1024 * 1024 + 3]


def payload(size: int, seed: int = 0) -> bytes:
    block = hashlib.sha256(str(seed).encode()).digest()
    return (block * (size // 32 + 1))[:size]


@pytest.mark.parametrize("instruction_file", [False, True], ids=["metadata", "instruction-file"])
@pytest.mark.parametrize("size", SIZES)
def test_put_get_every_keyring(s3, bucket, keyring, instruction_file, size):
    client = s3cse.EncryptionClient(s3, keyring=keyring, instruction_file_put=instruction_file)
    data = payload(size)
    client.put_object(Bucket=bucket, Key="obj", Body=data)
    stored = s3.get_object(Bucket=bucket, Key="obj")
    ciphertext = stored["Body"].read()
    assert len(ciphertext) == size + 16
    assert size < 16 or data[:16] not in ciphertext
    response = client.get_object(Bucket=bucket, Key="obj")
    assert response["ContentLength"] == size
    assert response["Body"].read() == data
    if instruction_file:
        instr = s3.get_object(Bucket=bucket, Key="obj.instruction")
        # S3 keeps the empty x-amz-crypto-instr-file marker; SeaweedFS drops empty values.
        assert set(lower_keys(instr["Metadata"])) <= {"x-amz-crypto-instr-file"}
        assert set(json.loads(instr["Body"].read())) == {
            "x-amz-3",
            "x-amz-w",
            "x-amz-m" if keyring.key_family != "kms" else "x-amz-t",
        }


def test_v2_writes_and_reads(s3, bucket, kms_keyring):
    writer = s3cse.EncryptionClient(
        s3, keyring=kms_keyring, commitment_policy="FORBID_ENCRYPT_ALLOW_DECRYPT"
    )
    writer.put_object(Bucket=bucket, Key="v2", Body=b"version two")
    assert "x-amz-key-v2" in lower_keys(s3.head_object(Bucket=bucket, Key="v2")["Metadata"])
    assert writer.get_object(Bucket=bucket, Key="v2")["Body"].read() == b"version two"
    strict = s3cse.EncryptionClient(s3, keyring=kms_keyring)
    with pytest.raises(s3cse.CommitmentPolicyError) as info:
        strict.get_object(Bucket=bucket, Key="v2")
    assert f"s3://{bucket}/v2" in str(info.value)


def test_file_object_body_streams_and_user_metadata_is_kept(s3, bucket, aes_keyring, tmp_path):
    path = tmp_path / "src.bin"
    data = payload(3 * 1024 * 1024 + 5, seed=1)
    path.write_bytes(data)
    client = s3cse.EncryptionClient(s3, keyring=aes_keyring)
    with open(path, "rb") as f:
        client.put_object(
            Bucket=bucket,
            Key="file",
            Body=f,
            Metadata={"owner": "alice"},
            ContentType="text/csv",
            Tagging="team=data",
        )
    head = s3.head_object(Bucket=bucket, Key="file")
    assert lower_keys(head["Metadata"])["owner"] == "alice"
    assert head["ContentType"] == "text/csv"
    assert head["ContentLength"] == len(data) + 16
    body = client.get_object(Bucket=bucket, Key="file")["Body"]
    with body:
        first = body.read(10)
        rest = b"".join(body.iter_chunks(65536))
    assert first + rest == data


def test_unknown_length_body_is_spooled_as_ciphertext(s3, bucket, aes_keyring):
    class Pipe(io.RawIOBase):
        def __init__(self, data):
            self._data = io.BytesIO(data)

        def readable(self):
            return True

        def seekable(self):
            return False

        def readinto(self, b):
            chunk = self._data.read(len(b))
            b[: len(chunk)] = chunk
            return len(chunk)

    data = payload(2 * 1024 * 1024 + 1, seed=2)
    client = s3cse.EncryptionClient(s3, keyring=aes_keyring)
    client.put_object(Bucket=bucket, Key="pipe", Body=Pipe(data))
    assert client.get_object(Bucket=bucket, Key="pipe")["Body"].read() == data


def test_str_body_and_iter_lines(s3, bucket, aes_keyring):
    client = s3cse.EncryptionClient(s3, keyring=aes_keyring)
    client.put_object(Bucket=bucket, Key="lines", Body="one\ntwo\nthree")
    assert list(client.get_object(Bucket=bucket, Key="lines")["Body"].iter_lines()) == [
        b"one",
        b"two",
        b"three",
    ]


def test_crypto_metadata_collision_is_refused(s3, bucket, aes_keyring):
    client = s3cse.EncryptionClient(s3, keyring=aes_keyring)
    with pytest.raises(s3cse.ConfigurationError, match="x-amz-iv"):
        client.put_object(Bucket=bucket, Key="k", Body=b"x", Metadata={"x-amz-iv": "mine"})
    with pytest.raises(s3cse.ConfigurationError, match="ContentMD5"):
        client.put_object(Bucket=bucket, Key="k", Body=b"x", ContentMD5="abc")


def test_checksum_algorithm_covers_ciphertext(s3, bucket, aes_keyring):
    client = s3cse.EncryptionClient(s3, keyring=aes_keyring)
    client.put_object(Bucket=bucket, Key="crc", Body=b"checked", ChecksumAlgorithm="CRC32")
    assert client.get_object(Bucket=bucket, Key="crc")["Body"].read() == b"checked"


@pytest.mark.seaweedfs_only("rclone's serve s3 ignores SSE-C keys (it stores plain bytes)")
def test_sse_c_combined_with_client_side_encryption(s3, bucket, rsa_keyring):
    client = s3cse.EncryptionClient(s3, keyring=rsa_keyring)
    sse = {
        "SSECustomerAlgorithm": "AES256",
        "SSECustomerKey": base64.b64encode(os.urandom(32)).decode(),
    }
    sse["SSECustomerKey"] = base64.b64decode(sse["SSECustomerKey"])
    client.put_object(Bucket=bucket, Key="ssec", Body=b"double locked", **sse)
    with pytest.raises(ClientError):
        client.get_object(Bucket=bucket, Key="ssec")
    assert client.get_object(Bucket=bucket, Key="ssec", **sse)["Body"].read() == b"double locked"


def test_sse_s3_and_instruction_file(s3, bucket, kms_keyring):
    client = s3cse.EncryptionClient(s3, keyring=kms_keyring)
    client.put_object(
        Bucket=bucket, Key="sse", Body=b"x", ServerSideEncryption="AES256", InstructionFilePut=True
    )
    assert client.get_object(Bucket=bucket, Key="sse")["Body"].read() == b"x"


def test_wrong_encryption_context(s3, bucket, kms_keyring):
    client = s3cse.EncryptionClient(s3, keyring=kms_keyring)
    client.put_object(Bucket=bucket, Key="ctx", Body=b"x", EncryptionContext={"tenant": "a"})
    assert (
        client.get_object(Bucket=bucket, Key="ctx", EncryptionContext={"tenant": "a"})[
            "Body"
        ].read()
        == b"x"
    )
    with pytest.raises(s3cse.EncryptionContextMismatchError, match="tenant"):
        client.get_object(Bucket=bucket, Key="ctx", EncryptionContext={"tenant": "b"})


def test_wrong_key(s3, bucket, kms, kms_keyring, other_kms_key_arn, aes_keyring):
    s3cse.EncryptionClient(s3, keyring=kms_keyring).put_object(Bucket=bucket, Key="k", Body=b"x")
    other = s3cse.EncryptionClient(s3, keyring=s3cse.KmsKeyring(other_kms_key_arn, kms_client=kms))
    # Real KMS answers IncorrectKeyException, moto AccessDeniedException: both name the key.
    with pytest.raises(
        s3cse.DataKeyUnwrapError, match=r"AccessDeniedException|IncorrectKeyException"
    ):
        other.get_object(Bucket=bucket, Key="k")
    s3cse.EncryptionClient(s3, keyring=aes_keyring).put_object(Bucket=bucket, Key="a", Body=b"x")
    wrong_aes = s3cse.EncryptionClient(s3, keyring=s3cse.AesKeyring(b"\x01" * 32))
    with pytest.raises(s3cse.DataKeyUnwrapError, match=f"s3://{bucket}/a"):
        wrong_aes.get_object(Bucket=bucket, Key="a")


def test_kms_discovery_and_alias(s3, bucket, kms, kms_keyring):
    s3cse.EncryptionClient(s3, keyring=kms_keyring).put_object(Bucket=bucket, Key="d", Body=b"x")
    discovery = s3cse.EncryptionClient(s3, keyring=s3cse.KmsKeyring.discovery(kms))
    assert discovery.get_object(Bucket=bucket, Key="d")["Body"].read() == b"x"
    by_alias = s3cse.EncryptionClient(
        s3, keyring=s3cse.KmsKeyring("alias/s3cse-test", kms_client=kms)
    )
    by_alias.put_object(Bucket=bucket, Key="alias", Body=b"y")
    assert discovery.get_object(Bucket=bucket, Key="alias")["Body"].read() == b"y"


def test_plaintext_objects_in_a_mixed_bucket(s3, bucket, aes_keyring):
    s3.put_object(Bucket=bucket, Key="plain", Body=b"not encrypted")
    client = s3cse.EncryptionClient(s3, keyring=aes_keyring)
    with pytest.raises(s3cse.NotEncryptedError, match="allow_unencrypted_reads"):
        client.get_object(Bucket=bucket, Key="plain")
    lenient = s3cse.EncryptionClient(s3, keyring=aes_keyring, allow_unencrypted_reads=True)
    assert lenient.get_object(Bucket=bucket, Key="plain")["Body"].read() == b"not encrypted"


@pytest.mark.parametrize("buffer_size", [0, None], ids=["spooled", "in-memory"])
def test_tampered_body_releases_no_plaintext(s3, bucket, aes_keyring, buffer_size):
    client = s3cse.EncryptionClient(s3, keyring=aes_keyring, buffer_size=buffer_size)
    data = payload(300_000, seed=3)
    client.put_object(Bucket=bucket, Key="t", Body=data)
    stored = s3.get_object(Bucket=bucket, Key="t")
    ciphertext = bytearray(stored["Body"].read())
    ciphertext[1000] ^= 1
    s3.put_object(Bucket=bucket, Key="t", Body=bytes(ciphertext), Metadata=stored["Metadata"])
    with pytest.raises(s3cse.IntegrityError, match=f"s3://{bucket}/t"):
        client.get_object(Bucket=bucket, Key="t")
    s3.put_object(Bucket=bucket, Key="t", Body=bytes(ciphertext[:-1]), Metadata=stored["Metadata"])
    with pytest.raises(s3cse.IntegrityError):
        client.get_object(Bucket=bucket, Key="t")


def test_spooled_authentication_for_objects_over_buffer_size(s3, bucket, kms_keyring):
    client = s3cse.EncryptionClient(s3, keyring=kms_keyring, buffer_size=1024)
    data = payload(5 * 1024 * 1024 + 7, seed=4)
    client.put_object(Bucket=bucket, Key="big", Body=data)
    response = client.get_object(Bucket=bucket, Key="big")
    assert response["ContentLength"] == len(data)
    assert b"".join(response["Body"].iter_chunks(1 << 20)) == data


def _open_spools() -> int:
    """Unlinked temporary files this process holds open."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        count += target.startswith(tempfile.gettempdir()) and target.endswith("(deleted)")
    return count


def test_the_spool_is_released_when_the_body_closes(s3, bucket, aes_keyring):
    client = s3cse.EncryptionClient(s3, keyring=aes_keyring, buffer_size=1024)
    data = payload(3 * 1024 * 1024, seed=11)
    client.put_object(Bucket=bucket, Key="spooled", Body=data)
    before = _open_spools()
    body = client.get_object(Bucket=bucket, Key="spooled")["Body"]
    assert _open_spools() == before + 1
    assert body.read() == data
    body.close()
    deadline = time.monotonic() + 10
    while _open_spools() > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _open_spools() == before


def test_no_room_for_the_spool_is_a_clear_error_before_the_download(
    s3, bucket, aes_keyring, monkeypatch
):
    from s3cse import _spool

    client = s3cse.EncryptionClient(s3, keyring=aes_keyring, buffer_size=1024)
    data = payload(2 * 1024 * 1024, seed=12)
    client.put_object(Bucket=bucket, Key="roomless", Body=data)
    real = os.fstatvfs
    before = _open_spools()  # pytest's own capture files are unlinked temporary files too
    # A temporary directory with 64 KiB free (the spool needs 2 MiB + 16 bytes).
    monkeypatch.setattr(
        _spool.os, "fstatvfs", lambda fd: type("S", (), {"f_bavail": 16, "f_frsize": 4096})()
    )
    with pytest.raises(
        s3cse.SpoolSpaceError, match=f"s3://{bucket}/roomless: no room for {len(data) + 16} bytes"
    ):
        client.get_object(Bucket=bucket, Key="roomless")
    sink = io.BytesIO()
    with pytest.raises(s3cse.SpoolSpaceError, match=f"s3://{bucket}/roomless"):
        client.download_fileobj(bucket, "roomless", sink)
    assert sink.getvalue() == b""
    monkeypatch.setattr(_spool.os, "fstatvfs", real)
    assert _open_spools() == before  # the refused reads kept no spool open
    assert client.get_object(Bucket=bucket, Key="roomless")["Body"].read() == data


def test_delayed_authentication_streams_then_raises(s3, bucket, aes_keyring):
    with pytest.raises(s3cse.ConfigurationError, match="buffer_size"):
        s3cse.EncryptionClient(
            s3, keyring=aes_keyring, enable_delayed_authentication=True, buffer_size=10
        )
    client = s3cse.EncryptionClient(s3, keyring=aes_keyring, enable_delayed_authentication=True)
    data = payload(3 * 1024 * 1024, seed=5)
    client.put_object(Bucket=bucket, Key="late", Body=data)
    assert client.get_object(Bucket=bucket, Key="late")["Body"].read() == data
    stored = s3.get_object(Bucket=bucket, Key="late")
    ciphertext = bytearray(stored["Body"].read())
    ciphertext[-1] ^= 1
    s3.put_object(Bucket=bucket, Key="late", Body=bytes(ciphertext), Metadata=stored["Metadata"])
    body = client.get_object(Bucket=bucket, Key="late")["Body"]
    first = body.read(1024 * 1024)
    assert first == data[: len(first)]
    with pytest.raises(s3cse.IntegrityError):
        body.read()


def test_ranged_get_needs_switch_and_matches_slices(s3, bucket, aes_keyring):
    data = payload(100_000, seed=6)
    s3cse.EncryptionClient(s3, keyring=aes_keyring).put_object(Bucket=bucket, Key="r", Body=data)
    with pytest.raises(s3cse.RangeNotAllowedError, match="enable_legacy_unauthenticated_modes"):
        s3cse.EncryptionClient(s3, keyring=aes_keyring).get_object(
            Bucket=bucket, Key="r", Range="bytes=0-9"
        )
    client = s3cse.EncryptionClient(
        s3, keyring=aes_keyring, enable_legacy_unauthenticated_modes=True
    )
    for header, expected in [
        ("bytes=0-9", data[0:10]),
        ("bytes=17-50000", data[17:50001]),
        ("bytes=99990-", data[99990:]),
        ("bytes=-33", data[-33:]),
        ("bytes=99999-200000", data[99999:]),
    ]:
        response = client.get_object(Bucket=bucket, Key="r", Range=header)
        assert response["Body"].read() == expected, header
        assert response["ContentLength"] == len(expected)
    with pytest.raises(ClientError) as info:
        client.get_object(Bucket=bucket, Key="r", Range="bytes=100000-")
    assert info.value.response["Error"]["Code"] == "InvalidRange"


def test_delete_removes_instruction_files(s3, bucket, aes_keyring):
    client = s3cse.EncryptionClient(s3, keyring=aes_keyring, instruction_file_put=True)
    for key in ("a", "b", "c"):
        client.put_object(Bucket=bucket, Key=key, Body=b"x")
    client.delete_object(Bucket=bucket, Key="a")
    response = client.delete_objects(
        Bucket=bucket, Delete={"Objects": [{"Key": "b"}, {"Key": "c"}]}
    )
    assert sorted(d["Key"] for d in response["Deleted"]) == ["b", "c"]
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0


def test_copy_keeps_copies_readable(s3, bucket, aes_keyring):
    client = s3cse.EncryptionClient(s3, keyring=aes_keyring)
    client.put_object(Bucket=bucket, Key="src", Body=b"copied", Metadata={"v": "1"})
    client.put_object(Bucket=bucket, Key="isrc", Body=b"copied too", InstructionFilePut=True)
    client.copy_object(
        Bucket=bucket,
        Key="dst",
        CopySource={"Bucket": bucket, "Key": "src"},
        MetadataDirective="REPLACE",
        Metadata={"v": "2"},
    )
    assert client.get_object(Bucket=bucket, Key="dst")["Body"].read() == b"copied"
    assert lower_keys(s3.head_object(Bucket=bucket, Key="dst")["Metadata"])["v"] == "2"
    client.copy_object(Bucket=bucket, Key="idst", CopySource=f"{bucket}/isrc")
    assert client.get_object(Bucket=bucket, Key="idst")["Body"].read() == b"copied too"
    with pytest.raises(s3cse.ConfigurationError):
        client.copy_object(
            Bucket=bucket,
            Key="dst",
            CopySource={"Bucket": bucket, "Key": "src"},
            MetadataDirective="REPLACE",
            Metadata={"x-amz-key-v2": "forged"},
        )


def test_unsafe_operations_name_the_alternative(s3, aes_keyring):
    client = s3cse.EncryptionClient(s3, keyring=aes_keyring)
    for name in ("upload_part_copy", "generate_presigned_post", "copy"):
        with pytest.raises(s3cse.UnsafeOperationError, match=r"put_object|copy_object"):
            getattr(client, name)
    with pytest.raises(s3cse.UnsafeOperationError):
        client.generate_presigned_url("put_object", Params={"Bucket": "b", "Key": "k"})
    assert "Signature=" in client.generate_presigned_url(
        "get_object", Params={"Bucket": "bkt", "Key": "k"}
    )
    assert client.list_buckets()["Buckets"] is not None  # pass-through


def test_construction_errors(s3, aes_keyring):
    with pytest.raises(s3cse.ConfigurationError, match="exactly one"):
        s3cse.EncryptionClient(s3)
    with pytest.raises(s3cse.ConfigurationError, match="exactly one"):
        s3cse.EncryptionClient(
            s3, keyring=aes_keyring, cmm=s3cse.DefaultCryptoMaterialsManager(aes_keyring)
        )
    inner = s3cse.EncryptionClient(s3, keyring=aes_keyring)
    with pytest.raises(s3cse.ConfigurationError, match="another EncryptionClient"):
        s3cse.EncryptionClient(inner, keyring=aes_keyring)
    with pytest.raises(s3cse.ConfigurationError, match="FORBID_ENCRYPT_ALLOW_DECRYPT"):
        s3cse.EncryptionClient(
            s3,
            keyring=aes_keyring,
            encryption_algorithm=s3cse.AlgorithmSuite.AES_256_GCM_IV12_TAG16_NO_KDF,
        )
    cmm_client = s3cse.EncryptionClient(s3, cmm=s3cse.DefaultCryptoMaterialsManager(aes_keyring))
    assert "AesKeyring" in repr(cmm_client) and "5a5a" not in repr(cmm_client)


def test_download_file_leaves_nothing_on_failure(s3, bucket, aes_keyring, tmp_path):
    client = s3cse.EncryptionClient(s3, keyring=aes_keyring)
    client.put_object(Bucket=bucket, Key="f", Body=b"file body")
    target = tmp_path / "out.bin"
    client.download_file(bucket, "f", str(target))
    assert target.read_bytes() == b"file body"
    stored = s3.get_object(Bucket=bucket, Key="f")
    s3.put_object(
        Bucket=bucket, Key="f", Body=stored["Body"].read()[:-1], Metadata=stored["Metadata"]
    )
    target2 = tmp_path / "bad.bin"
    with pytest.raises(s3cse.IntegrityError):
        client.download_file(bucket, "f", str(target2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]
    src = tmp_path / "up.txt"
    src.write_bytes(b"uploaded")
    seen = []
    client.upload_file(str(src), bucket, "up", Callback=seen.append)
    assert client.get_object(Bucket=bucket, Key="up")["Body"].read() == b"uploaded"
    assert sum(seen) == len(b"uploaded")


def test_put_from_a_file_over_http_sends_a_crc32_computed_in_one_pass_of_its_own(
    s3, bucket, aes_keyring, tmp_path
):
    import base64
    import zlib

    sent = []

    def record(request, **_):
        sent.append(
            {
                k.lower(): v.decode() if isinstance(v, bytes) else v
                for k, v in request.headers.items()
            }
        )

    given = []

    def note_params(params, **_):
        given.append(set(params))

    s3.meta.events.register("before-send.s3.PutObject", record)
    s3.meta.events.register("provide-client-params.s3.PutObject", note_params)
    try:
        data = payload(3 * 1024 * 1024 + 5, seed=13)
        path = tmp_path / "src.bin"
        path.write_bytes(data)
        client = s3cse.EncryptionClient(s3, keyring=aes_keyring)
        with open(path, "rb") as f:
            client.put_object(Bucket=bucket, Key="crc", Body=f)
        stored = s3.get_object(Bucket=bucket, Key="crc")["Body"].read()
        expected = base64.b64encode(zlib.crc32(stored).to_bytes(4, "big")).decode()
        assert sent[-1]["x-amz-checksum-crc32"] == expected  # and SeaweedFS accepted it
        assert "ChecksumCRC32" in given[-1]  # s3cse's value, not botocore's own pass
        assert client.get_object(Bucket=bucket, Key="crc")["Body"].read() == data
        # Another algorithm asked for: s3cse adds nothing, botocore computes what was asked.
        with open(path, "rb") as f:
            client.put_object(Bucket=bucket, Key="crc", Body=f, ChecksumAlgorithm="SHA256")
        assert "x-amz-checksum-crc32" not in sent[-1] and "x-amz-checksum-sha256" in sent[-1]
        assert "ChecksumCRC32" not in given[-1]
        assert client.get_object(Bucket=bucket, Key="crc")["Body"].read() == data
    finally:
        s3.meta.events.unregister("before-send.s3.PutObject", record)
        s3.meta.events.unregister("provide-client-params.s3.PutObject", note_params)


class _ChangesAfterFirstPass(io.BytesIO):
    """A seekable source whose content changes once it has been rewound twice."""

    def __init__(self, data):
        super().__init__(data)
        self.rewinds = 0

    def seek(self, offset, whence=io.SEEK_SET):
        if offset == 0 and whence == io.SEEK_SET:
            self.rewinds += 1
            if self.rewinds == 3:
                self.getbuffer()[2 * 1024 * 1024 + 1] ^= 0xFF
        return super().seek(offset, whence)


def test_a_source_that_changes_or_shrinks_during_put_is_refused_and_nothing_is_stored(
    s3, bucket, aes_keyring
):
    client = s3cse.EncryptionClient(s3, keyring=aes_keyring)
    data = payload(5 * 1024 * 1024, seed=14)
    with pytest.raises(
        s3cse.SourceChangedError, match=f"s3://{bucket}/changing: the upload source changed"
    ):
        client.put_object(Bucket=bucket, Key="changing", Body=_ChangesAfterFirstPass(data))

    class Shrinking(io.BytesIO):
        """Says it holds 5 MiB, but its reads end at 3 MiB."""

        def read(self, n=-1):
            left = max(0, 3 * 1024 * 1024 - self.tell())
            return super().read(left if n is None or n < 0 else min(n, left))

        readinto = None

    with pytest.raises(
        s3cse.SourceChangedError, match=f"s3://{bucket}/shrinking: the upload source ended after"
    ):
        client.put_object(Bucket=bucket, Key="shrinking", Body=Shrinking(data))
    for key in ("changing", "shrinking"):
        with pytest.raises(ClientError):
            s3.head_object(Bucket=bucket, Key=key)


def test_objects_over_the_default_buffer_size_are_spooled(s3, bucket, aes_keyring, caplog):
    import logging

    client = s3cse.EncryptionClient(s3, keyring=aes_keyring)
    for extra, how in ((0, "in memory"), (1, "spooled")):
        data = payload(s3cse.DEFAULT_BUFFER_SIZE + extra, seed=15)
        client.put_object(Bucket=bucket, Key="edge", Body=data)
        caplog.clear()
        with caplog.at_level(logging.DEBUG, logger="s3cse.client"):
            body = client.get_object(Bucket=bucket, Key="edge")["Body"]
        assert any(record.getMessage().endswith(how) for record in caplog.records), how
        assert body.read() == data


def test_user_metadata_near_the_limit_still_stores_on_every_store(s3, bucket, kms_keyring):
    notes = {"notes": "n" * 1300}
    s3.put_object(Bucket=bucket, Key="plain", Body=b"x", Metadata=notes)  # fine for plain S3
    client = s3cse.EncryptionClient(s3, keyring=kms_keyring)
    client.put_object(Bucket=bucket, Key="enc", Body=b"secret", Metadata=notes)
    response = client.get_object(Bucket=bucket, Key="enc")
    assert (
        response["Body"].read() == b"secret"
        and lower_keys(response["Metadata"])["notes"] == notes["notes"]
    )
    with pytest.raises(s3cse.MetadataTooLargeError, match="shorten the user metadata"):
        client.put_object(Bucket=bucket, Key="enc2", Body=b"x", Metadata={"notes": "n" * 1500})
