"""Guards in the shells that need no server."""

from __future__ import annotations

import io

import pytest

import s3cse
from s3cse.cli.main import local_destination
from s3cse.client import _EncryptingReader


def test_recursive_download_names_cannot_escape_the_folder(tmp_path):
    root = str(tmp_path / "out")
    assert local_destination(root, "a/b.txt") == str(tmp_path / "out" / "a" / "b.txt")
    for hostile in ("../x", "a/../../x", "a//b", "/etc/passwd", "a/./b", ".."):
        assert local_destination(root, hostile) is None, hostile


def test_encrypting_body_refuses_a_source_that_changed_between_passes():
    source = io.BytesIO(b"a" * 3000)
    enc = s3cse.begin_encryption(s3cse.AesKeyring(b"\x09" * 32))
    reader = _EncryptingReader(source, 3000, enc)
    first = reader.read()
    reader.seek(0)
    assert reader.read() == first  # an identical replay resends identical bytes
    reader.seek(0)
    source.getbuffer()[10] = ord("b")
    with pytest.raises(s3cse.IntegrityError, match="changed between"):
        reader.read()


def test_prefixed_reserved_metadata_names_are_refused():
    class S3:
        def put_object(self, **kw):
            raise AssertionError("must not be called")

        get_object = put_object

    client = s3cse.EncryptionClient(S3(), keyring=s3cse.AesKeyring(b"\x09" * 32))
    with pytest.raises(s3cse.ConfigurationError, match="reserved"):
        client.put_object(Bucket="b", Key="k", Body=b"x", Metadata={"x-amz-meta-x-amz-iv": "1"})


def test_gcm_bodies_skip_botocore_crc_but_keep_the_length_check():
    import io

    from botocore.exceptions import IncompleteReadError
    from botocore.httpchecksum import Crc32Checksum, StreamingChecksumBody

    from s3cse.client import without_redundant_checksum

    data = b"ciphertext" * 1000
    checked = StreamingChecksumBody(io.BytesIO(data), str(len(data)), Crc32Checksum(), "AAAAAA==")  # header text, as botocore passes it
    plain = without_redundant_checksum(checked)
    assert plain is not checked and plain.read() == data  # no CRC pass, no CRC error
    short = StreamingChecksumBody(io.BytesIO(data[:-1]), str(len(data)), Crc32Checksum(), None)
    with pytest.raises(IncompleteReadError):
        without_redundant_checksum(short).read()
    other = io.BytesIO(data)
    assert without_redundant_checksum(other) is other
