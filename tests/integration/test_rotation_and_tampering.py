"""Key rotation on the real store, and tampering done through the S3 API itself."""

from __future__ import annotations

import concurrent.futures

import pytest

import s3cse
from tests.stores import lower_keys


def test_reencrypt_metadata_object_keeps_user_metadata_and_settings(
    s3, bucket, aes_keyring, kms_keyring
):
    old = s3cse.EncryptionClient(s3, keyring=aes_keyring)
    old.put_object(
        Bucket=bucket,
        Key="m",
        Body=b"rotate",
        Metadata={"owner": "bob"},
        ContentType="text/plain",
        CacheControl="max-age=60",
        ServerSideEncryption="AES256",
    )
    before = s3.get_object(Bucket=bucket, Key="m")["Body"].read()
    assert old.reencrypt(bucket, "m", kms_keyring) == "rotated"
    head = s3.head_object(Bucket=bucket, Key="m")
    assert lower_keys(head["Metadata"])["owner"] == "bob"
    assert lower_keys(head["Metadata"])["x-amz-w"] == "12"
    assert head["ContentType"] == "text/plain"
    assert head["CacheControl"] == "max-age=60"
    assert s3.get_object(Bucket=bucket, Key="m")["Body"].read() == before  # content untouched
    new = s3cse.EncryptionClient(s3, keyring=kms_keyring)
    assert new.get_object(Bucket=bucket, Key="m")["Body"].read() == b"rotate"
    with pytest.raises(s3cse.NoMatchingKeyringError):
        old.get_object(Bucket=bucket, Key="m")
    assert new.reencrypt(bucket, "m", kms_keyring) == "skipped"


def test_reencrypt_instruction_file_object(s3, bucket, rsa_keyring, aes_keyring):
    old = s3cse.EncryptionClient(s3, keyring=rsa_keyring, instruction_file_put=True)
    old.put_object(Bucket=bucket, Key="i", Body=b"rotate file")
    meta_before = s3.head_object(Bucket=bucket, Key="i")["Metadata"]
    old.reencrypt(bucket, "i", aes_keyring)
    assert s3.head_object(Bucket=bucket, Key="i")["Metadata"] == meta_before
    assert (
        s3cse.EncryptionClient(s3, keyring=aes_keyring)
        .get_object(Bucket=bucket, Key="i")["Body"]
        .read()
        == b"rotate file"
    )
    # a second instruction file under a custom suffix, the original stays
    new = s3cse.EncryptionClient(s3, keyring=aes_keyring)
    new.reencrypt(bucket, "i", rsa_keyring, instruction_file_suffix=".instruction.rsa")
    assert new.get_object(Bucket=bucket, Key="i")["Body"].read() == b"rotate file"
    reader = s3cse.EncryptionClient(s3, keyring=rsa_keyring)
    assert (
        reader.get_object(Bucket=bucket, Key="i", InstructionFileSuffix=".instruction.rsa")[
            "Body"
        ].read()
        == b"rotate file"
    )


def test_reencrypt_prefix_of_a_few_hundred_objects_is_resumable(
    s3, bucket, aes_keyring, kms_keyring
):
    writer = s3cse.EncryptionClient(s3, keyring=aes_keyring)
    keys = [f"data/{i:04d}" for i in range(300)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda k: writer.put_object(
                    Bucket=bucket, Key=k, Body=k.encode(), InstructionFilePut=k.endswith("7")
                ),
                keys,
            )
        )
    s3.put_object(Bucket=bucket, Key="data/plain.txt", Body=b"plaintext")
    # a partial earlier run
    for key in keys[:40]:
        writer.reencrypt(bucket, key, kms_keyring)
    seen = []
    summary = writer.reencrypt_prefix(
        bucket,
        "data/",
        kms_keyring,
        max_workers=8,
        progress=lambda key, status: seen.append(status),
    )
    assert len(summary.done) == 260 and len(summary.skipped) == 40, str(summary)
    assert summary.not_encrypted == ["data/plain.txt"] and summary.failed == []
    assert len(summary.instruction_files) == 30  # keys ending in 7 keep theirs beside them
    assert len(seen) == 331  # every listed key is reported, instruction files too
    reader = s3cse.EncryptionClient(s3, keyring=kms_keyring)
    for key in [*keys[::37], "data/0007", "data/0299"]:
        assert reader.get_object(Bucket=bucket, Key=key)["Body"].read() == key.encode()
    again = writer.reencrypt_prefix(bucket, "data/", kms_keyring)
    assert len(again.skipped) == 300 and not again.done


def test_metadata_rewritten_with_copy_object_is_detected(s3, bucket, aes_keyring):
    client = s3cse.EncryptionClient(s3, keyring=aes_keyring)
    client.put_object(Bucket=bucket, Key="a", Body=b"first object")
    client.put_object(Bucket=bucket, Key="b", Body=b"second object")
    meta_a = lower_keys(s3.head_object(Bucket=bucket, Key="a")["Metadata"])
    meta_b = lower_keys(s3.head_object(Bucket=bucket, Key="b")["Metadata"])
    forged = dict(meta_a, **{"x-amz-3": meta_b["x-amz-3"]})
    s3.copy_object(
        Bucket=bucket,
        Key="a",
        CopySource={"Bucket": bucket, "Key": "a"},
        MetadataDirective="REPLACE",
        Metadata=forged,
    )
    with pytest.raises(s3cse.CommitmentMismatchError, match=f"s3://{bucket}/a"):
        client.get_object(Bucket=bucket, Key="a")
    mixed = dict(meta_a, **{"x-amz-key-v2": meta_b["x-amz-3"]})
    s3.copy_object(
        Bucket=bucket,
        Key="a",
        CopySource={"Bucket": bucket, "Key": "a"},
        MetadataDirective="REPLACE",
        Metadata=mixed,
    )
    with pytest.raises(s3cse.MixedFormatMetadataError):
        client.get_object(Bucket=bucket, Key="a")


def test_instruction_file_swapped_between_objects_fails_for_v3(s3, bucket, kms_keyring):
    client = s3cse.EncryptionClient(s3, keyring=kms_keyring, instruction_file_put=True)
    client.put_object(Bucket=bucket, Key="x", Body=b"object x")
    client.put_object(Bucket=bucket, Key="y", Body=b"object y")
    s3.copy_object(
        Bucket=bucket, Key="x.instruction", CopySource={"Bucket": bucket, "Key": "y.instruction"}
    )
    with pytest.raises(s3cse.CommitmentMismatchError):
        client.get_object(Bucket=bucket, Key="x")


def test_v3_fields_planted_in_instruction_file_are_refused(s3, bucket, aes_keyring):
    import json

    client = s3cse.EncryptionClient(s3, keyring=aes_keyring, instruction_file_put=True)
    client.put_object(Bucket=bucket, Key="p", Body=b"x")
    fields = json.loads(s3.get_object(Bucket=bucket, Key="p.instruction")["Body"].read())
    fields["x-amz-d"] = lower_keys(s3.head_object(Bucket=bucket, Key="p")["Metadata"])["x-amz-d"]
    s3.put_object(Bucket=bucket, Key="p.instruction", Body=json.dumps(fields).encode())
    with pytest.raises(s3cse.MalformedMetadataError, match="tampered"):
        client.get_object(Bucket=bucket, Key="p")


def test_missing_instruction_file_is_a_clear_error(s3, bucket, aes_keyring):
    client = s3cse.EncryptionClient(s3, keyring=aes_keyring, instruction_file_put=True)
    client.put_object(Bucket=bucket, Key="lost", Body=b"x")
    s3.delete_object(Bucket=bucket, Key="lost.instruction")
    with pytest.raises(s3cse.MalformedMetadataError, match=r"lost\.instruction"):
        client.get_object(Bucket=bucket, Key="lost")
