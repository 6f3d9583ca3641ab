"""Guards in the shells that need no server."""

from __future__ import annotations

import io

import pytest

import s3cse
from s3cse._upload import EncryptingReader as _EncryptingReader
from s3cse.cli.main import local_destination


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
    with pytest.raises(s3cse.SourceChangedError, match="changed between"):
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

    from s3cse._download import without_redundant_checksum

    data = b"ciphertext" * 1000
    checked = StreamingChecksumBody(
        io.BytesIO(data), str(len(data)), Crc32Checksum(), "AAAAAA=="
    )  # header text, as botocore passes it
    plain = without_redundant_checksum(checked)
    assert plain is not checked and plain.read() == data  # no CRC pass, no CRC error
    short = StreamingChecksumBody(io.BytesIO(data[:-1]), str(len(data)), Crc32Checksum(), None)
    with pytest.raises(IncompleteReadError):
        without_redundant_checksum(short).read()
    other = io.BytesIO(data)
    assert without_redundant_checksum(other) is other


class _ShortReads(io.RawIOBase):
    """A seekable source whose reads return at most 7000 bytes and has no readinto."""

    def __init__(self, data):
        self._data = bytearray(data)
        self._pos = 0

    def read(self, n=-1):
        n = min(7000, len(self._data) - self._pos if n is None or n < 0 else n)
        out = bytes(self._data[self._pos : self._pos + n])
        self._pos += len(out)
        return out

    readinto = None

    def seekable(self):
        return True

    def seek(self, offset, whence=io.SEEK_SET):
        self._pos = {
            io.SEEK_SET: offset,
            io.SEEK_CUR: self._pos + offset,
            io.SEEK_END: len(self._data) + offset,
        }[whence]
        return self._pos

    def tell(self):
        return self._pos


@pytest.mark.parametrize("kind", ["file", "short-reads"])
def test_a_large_encrypting_body_reads_ahead_and_still_refuses_a_changed_source(kind):
    import zlib

    size = 5 * 1024 * 1024 + 123
    data = bytes(range(256)) * (size // 256) + b"z" * (size % 256)
    source = io.BytesIO(data) if kind == "file" else _ShortReads(data)
    enc = s3cse.begin_encryption(s3cse.AesKeyring(b"\x09" * 32))
    reader = _EncryptingReader(source, size, enc)
    crc = reader.checksum_crc32()  # a pass of its own, then back at the start
    assert reader.tell() == 0
    first = b"".join(iter(lambda: reader.read(65536), b""))
    assert len(first) == size + 16 and zlib.crc32(first) == crc
    assert s3cse.decrypt(first, enc.metadata, s3cse.AesKeyring(b"\x09" * 32)) == data
    reader.seek(0)
    assert reader.read() == first  # identical replay
    # Change a byte in the fourth MiB: the replay stops before any chunk from there leaves.
    reader.seek(0)
    if kind == "file":
        source.getbuffer()[3 * 1024 * 1024 + 5] ^= 1
    else:
        source._data[3 * 1024 * 1024 + 5] ^= 1
    sent = bytearray()
    with pytest.raises(s3cse.SourceChangedError, match="changed between"):
        while piece := reader.read(65536):
            sent += piece
    assert bytes(sent) == first[: len(sent)] and len(sent) <= 3 * 1024 * 1024
    reader.close()


def test_put_object_leaves_no_read_ahead_thread_behind_even_when_the_send_fails():
    import threading

    class S3:
        """Reads the body like botocore over HTTP (hash pass, rewind, send pass)."""

        class meta:
            endpoint_url = "http://127.0.0.1:1"

            class config:
                request_checksum_calculation = "when_supported"
                signature_version = "s3v4"

        def __init__(self, fail):
            self.fail = fail
            self.params = None

        def put_object(self, **kw):
            self.params = kw
            body = kw["Body"]
            body.read(65536)
            body.seek(0)
            while body.read(1 << 20):
                pass
            body.seek(0)
            body.read(3 << 20)
            if self.fail:
                raise ConnectionError("reset by peer")
            while body.read(1 << 20):
                pass
            return {"ETag": '"x"'}

        def get_object(self, **kw):
            raise AssertionError("not used")

    before = {t.ident for t in threading.enumerate()}
    for fail in (False, True):
        s3 = S3(fail)
        client = s3cse.EncryptionClient(s3, keyring=s3cse.AesKeyring(b"\x09" * 32))
        source = io.BytesIO(b"q" * (6 * 1024 * 1024 + 9))
        if fail:
            with pytest.raises(ConnectionError):
                client.put_object(Bucket="b", Key="k", Body=source)
        else:
            client.put_object(Bucket="b", Key="k", Body=source)
            assert "ChecksumCRC32" in s3.params  # plain HTTP: s3cse's own CRC32 pass
        assert s3.params["Body"].closed
    left = [t.name for t in threading.enumerate() if t.ident not in before and t.is_alive()]
    assert left == []


def test_read_chunks_uses_the_length_hint_but_survives_a_missing_or_wrong_one():
    from s3cse._download import read_chunks as _read_chunks

    class Counting(io.BytesIO):
        def __init__(self, data):
            super().__init__(data)
            self.sizes = []

        def read(self, n=-1):
            self.sizes.append(n)
            return super().read(n)

    data = bytes(range(256)) * 12_000  # about 3 MiB
    for hint in (len(data), 0, 1000, None):
        stream = Counting(data)
        assert b"".join(_read_chunks(stream, hint)) == data, hint
        assert len(stream.sizes) <= 6, (hint, stream.sizes)  # never byte by byte
    small = Counting(b"x" * 1040)
    assert b"".join(_read_chunks(small, 1040)) == b"x" * 1040
    assert small.sizes == [1040, 1]  # no 1 MiB read for a 1 KiB object
