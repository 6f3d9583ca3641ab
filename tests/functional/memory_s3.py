"""An in-memory stand-in for a boto3 S3 client: functional tests without any server.

It stores objects (bytes, user metadata and the headers S3 keeps with them) and
multipart uploads, answers in botocore's response shapes (``get_object`` bodies are
``StreamingBody`` objects of the right length), records every call with its
arguments, and can be told to fail chosen calls with a botocore ``ClientError``.

Every call's arguments are first validated against botocore's S3 service model, as
a real client does before sending, so an argument that S3 does not take for that
operation fails the test. On top of that it enforces the S3 rules the client's
forwarding depends on:

- ranges (``bytes=a-b``, ``bytes=a-``, ``bytes=-n``): 206 with ``ContentRange``,
  416 ``InvalidRange`` when nothing of the object is in the range;
- ``IfMatch`` / ``IfNoneMatch`` on reads and writes, ``CopySourceIfMatch``: 412;
- SSE-C: an SSE-C object is read (and its multipart parts written) only with its
  key; SSE-C arguments on a request for another object are a 400;
- requester-pays buckets (``requester_pays=``): a request without
  ``RequestPayer='requester'`` is a 403; ``ExpectedBucketOwner`` (and
  ``ExpectedSourceBucketOwner``) must name the bucket's owner;
- ``ContentLength``, ``ContentMD5`` and CRC32/SHA checksums must match the body;
- multipart: parts but the last of at least 5 MiB, listed in order with their ETags
  (and their checksums when the upload was created with ``ChecksumAlgorithm``).

It never opens a socket.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import hashlib
import io
import itertools
import re
import threading
import types
import urllib.parse
import zlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import botocore.config
import botocore.session
from botocore.exceptions import ClientError
from botocore.response import StreamingBody
from botocore.validate import validate_parameters

OWNER = "111122223333"
MIN_PART = 5 * 1024 * 1024

_SERVICE_MODEL = botocore.session.get_session().get_service_model("s3")

_OPERATIONS = {
    "put_object": "PutObject",
    "get_object": "GetObject",
    "head_object": "HeadObject",
    "create_multipart_upload": "CreateMultipartUpload",
    "upload_part": "UploadPart",
    "complete_multipart_upload": "CompleteMultipartUpload",
    "abort_multipart_upload": "AbortMultipartUpload",
    "delete_object": "DeleteObject",
    "delete_objects": "DeleteObjects",
    "copy_object": "CopyObject",
    "list_objects_v2": "ListObjectsV2",
    "upload_part_copy": "UploadPartCopy",
    "get_object_tagging": "GetObjectTagging",
}

# Headers S3 keeps with an object and returns on HEAD and GET.
_STORED_HEADERS = (
    "CacheControl",
    "ContentDisposition",
    "ContentEncoding",
    "ContentLanguage",
    "Expires",
    "WebsiteRedirectLocation",
    "ServerSideEncryption",
    "SSEKMSKeyId",
    "BucketKeyEnabled",
    "ObjectLockMode",
    "ObjectLockRetainUntilDate",
    "ObjectLockLegalHoldStatus",
    "ChecksumAlgorithm",
)
# S3 does not carry these over in a copy: the copy gets the bucket's default encryption
# (and no object lock, and CRC64NVME checksums) unless the CopyObject request names them.
_SSE_HEADERS = (
    "ServerSideEncryption",
    "SSEKMSKeyId",
    "BucketKeyEnabled",
    "ObjectLockMode",
    "ObjectLockRetainUntilDate",
    "ObjectLockLegalHoldStatus",
    "ChecksumAlgorithm",
)
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def client_error(operation: str, code: str, status: int, message: str | None = None) -> ClientError:
    """A ClientError shaped as botocore raises it for an S3 error response."""
    return ClientError(
        {
            "Error": {"Code": code, "Message": message or code},
            "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": {}},
        },
        operation,
    )


@dataclasses.dataclass(frozen=True)
class Call:
    """One request the stand-in received: its operation name and arguments.

    ``params`` is a copy of the arguments, with a ``Body`` replaced by the bytes read from it.
    """

    operation: str
    params: dict[str, Any]


@dataclasses.dataclass
class StoredObject:
    data: bytes
    metadata: dict[str, str]
    content_type: str
    etag: str
    version_id: str
    headers: dict[str, Any]
    sse_customer_key: str | None = None
    storage_class: str | None = None
    tagging: str | None = None
    last_modified: datetime.datetime = dataclasses.field(
        default_factory=lambda: datetime.datetime.now(datetime.timezone.utc)
    )

    @property
    def crc32(self) -> str:
        return base64.b64encode(zlib.crc32(self.data).to_bytes(4, "big")).decode()


@dataclasses.dataclass
class _Upload:
    bucket: str
    key: str
    params: dict[str, Any]
    parts: dict[int, tuple[bytes, str, dict[str, str]]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class _Failure:
    operation: str
    code: str
    status: int
    when: Callable[[dict[str, Any]], bool] | None
    times: int


def _md5(data: bytes) -> bytes:
    return hashlib.md5(data, usedforsecurity=False).digest()


def _checksums(data: bytes) -> dict[str, str]:
    """The checksums S3 can verify here, base64 as in its headers (no CRC32C/CRC64NVME)."""
    return {
        "ChecksumCRC32": base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode(),
        "ChecksumSHA1": base64.b64encode(hashlib.sha1(data).digest()).decode(),
        "ChecksumSHA256": base64.b64encode(hashlib.sha256(data).digest()).decode(),
    }


def _read_body(body: Any) -> bytes:
    if body is None:
        return b""
    if isinstance(body, str):
        return body.encode()
    if isinstance(body, bytes | bytearray | memoryview):
        return bytes(body)
    return bytes(body.read())


def _copy_source(source: Any) -> tuple[str, str, str | None]:
    if isinstance(source, Mapping):
        return source["Bucket"], source["Key"], source.get("VersionId")
    bucket, _, rest = str(source).lstrip("/").partition("/")
    key, _, query = rest.partition("?")
    version = urllib.parse.parse_qs(query).get("versionId", [None])[0]
    return bucket, urllib.parse.unquote(key), version


class _Paginator:
    def __init__(self, s3: MemoryS3, operation: str):
        if operation != "list_objects_v2":
            raise NotImplementedError(f"MemoryS3 paginates only list_objects_v2, not {operation}")
        self._s3 = s3

    def paginate(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        kwargs.pop("PaginationConfig", None)
        while True:
            page = self._s3.list_objects_v2(**kwargs)
            yield page
            if not page.get("IsTruncated"):
                return
            kwargs["ContinuationToken"] = page["NextContinuationToken"]


class MemoryS3:
    """A boto3 S3 client's surface over dictionaries (see the module docstring)."""

    def __init__(
        self,
        *,
        endpoint_url: str = "https://s3.amazonaws.com",
        requester_pays: tuple[str, ...] = (),
        owners: Mapping[str, str] | None = None,
    ):
        self.meta = types.SimpleNamespace(
            config=botocore.config.Config(signature_version="s3v4"),
            endpoint_url=endpoint_url,
            region_name="us-east-1",
            service_model=_SERVICE_MODEL,
        )
        self.objects: dict[tuple[str, str], StoredObject] = {}
        self.versions: dict[tuple[str, str, str], StoredObject] = {}
        self.uploads: dict[str, _Upload] = {}
        self.calls: list[Call] = []
        self._requester_pays = set(requester_pays)
        self._owners = dict(owners or {})
        self._failures: list[_Failure] = []
        self._ids = itertools.count(1)
        self._lock = threading.RLock()

    # ------------------------------------------------------------ for tests

    def fail(
        self,
        operation: str,
        *,
        code: str = "InternalError",
        status: int = 500,
        when: Callable[[dict[str, Any]], bool] | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` calls of ``operation`` (e.g. ``"UploadPart"``) for which
        ``when(params)`` is true with an S3 error. The call is still recorded."""
        with self._lock:
            self._failures.append(_Failure(operation, code, status, when, times))

    def calls_to(self, operation: str) -> list[dict[str, Any]]:
        """The arguments of every recorded call of ``operation``, in order."""
        with self._lock:
            return [c.params for c in self.calls if c.operation == operation]

    def operations(self) -> list[str]:
        with self._lock:
            return [c.operation for c in self.calls]

    def store(
        self, bucket: str, key: str, data: bytes, metadata: Mapping[str, str] | None = None
    ) -> StoredObject:
        """Put an object directly (not recorded): for objects a test builds itself."""
        with self._lock:
            return self._store(bucket, key, data, {"Metadata": dict(metadata or {})})

    def get_paginator(self, operation: str) -> _Paginator:
        return _Paginator(self, operation)

    # ------------------------------------------------------------ plumbing

    def _begin(self, method: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Validate and record one call, and raise an injected failure; return its params."""
        operation = _OPERATIONS[method]
        params = dict(kwargs)
        model_params = dict(params)
        if "CopySource" in model_params and not isinstance(model_params["CopySource"], str):
            bucket, key, version = _copy_source(model_params["CopySource"])
            model_params["CopySource"] = f"{bucket}/{key}" + (
                f"?versionId={version}" if version else ""
            )
        validate_parameters(model_params, _SERVICE_MODEL.operation_model(operation).input_shape)
        if "Body" in params:
            params["Body"] = _read_body(params["Body"])
        with self._lock:
            self.calls.append(Call(operation, params))
            for failure in self._failures:
                if failure.operation != operation or failure.times <= 0:
                    continue
                if failure.when is None or failure.when(params):
                    failure.times -= 1
                    raise client_error(operation, failure.code, failure.status)
        self._check_access(operation, params["Bucket"], params)
        if operation == "CopyObject":
            source_bucket = _copy_source(params["CopySource"])[0]
            self._check_access(
                operation,
                source_bucket,
                {
                    "RequestPayer": params.get("RequestPayer"),
                    "ExpectedBucketOwner": params.get("ExpectedSourceBucketOwner"),
                },
            )
        return params

    def _check_access(self, operation: str, bucket: str, params: Mapping[str, Any]) -> None:
        if bucket in self._requester_pays and params.get("RequestPayer") != "requester":
            raise client_error(
                operation, "AccessDenied", 403, f"{bucket} is a requester-pays bucket"
            )
        expected = params.get("ExpectedBucketOwner")
        if expected is not None and expected != self._owners.get(bucket, OWNER):
            raise client_error(operation, "AccessDenied", 403, f"{bucket} has another owner")

    @staticmethod
    def _response(status: int = 200, **fields: Any) -> dict[str, Any]:
        return {
            "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": {}, "RetryAttempts": 0},
            **{k: v for k, v in fields.items() if v is not None},
        }

    def _new_version(self) -> str:
        return f"v{next(self._ids)}"

    def _store(self, bucket: str, key: str, data: bytes, params: Mapping[str, Any]) -> StoredObject:
        obj = StoredObject(
            data=data,
            metadata={k.lower(): v for k, v in params.get("Metadata", {}).items()},
            content_type=params.get("ContentType", "binary/octet-stream"),
            etag=f'"{_md5(data).hex()}"',
            version_id=self._new_version(),
            headers={k: params[k] for k in _STORED_HEADERS if k in params},
            sse_customer_key=params.get("SSECustomerKey"),
            storage_class=params.get("StorageClass"),
            tagging=params.get("Tagging"),
        )
        self.objects[(bucket, key)] = obj
        self.versions[(bucket, key, obj.version_id)] = obj
        return obj

    def _find(self, operation: str, params: Mapping[str, Any]) -> StoredObject:
        bucket, key, version = params["Bucket"], params["Key"], params.get("VersionId")
        not_found = ("404", 404) if operation == "HeadObject" else ("NoSuchKey", 404)
        if version is not None:
            obj = self.versions.get((bucket, key, version))
            if obj is None:
                raise client_error(operation, "NoSuchVersion", 404)
        else:
            found = self.objects.get((bucket, key))
            if found is None:
                raise client_error(operation, *not_found)
            obj = found
        return obj

    @staticmethod
    def _check_sse_c(operation: str, obj_key: str | None, given: str | None) -> None:
        if obj_key is None and given is not None:
            raise client_error(
                operation, "InvalidRequest", 400, "the object was not stored with SSE-C"
            )
        if obj_key is not None and given != obj_key:
            raise client_error(
                operation, "InvalidRequest", 400, "the object is SSE-C: give its key"
            )

    @staticmethod
    def _check_conditions(operation: str, etag: str | None, params: Mapping[str, Any]) -> None:
        if "IfMatch" in params and params["IfMatch"] != etag:
            raise client_error(operation, "PreconditionFailed", 412)
        if etag is not None and params.get("IfNoneMatch") in ("*", etag):
            raise client_error(operation, "PreconditionFailed", 412)

    @staticmethod
    def _check_body(operation: str, data: bytes, params: Mapping[str, Any]) -> None:
        if "ContentLength" in params and params["ContentLength"] != len(data):
            raise client_error(operation, "IncompleteBody", 400, "Content-Length differs")
        if "ContentMD5" in params and params["ContentMD5"] != base64.b64encode(_md5(data)).decode():
            raise client_error(operation, "BadDigest", 400)
        for name, value in _checksums(data).items():
            if name in params and params[name] != value:
                raise client_error(operation, "BadDigest", 400, f"{name} does not match")

    def _object_fields(self, obj: StoredObject) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "ETag": obj.etag,
            "Metadata": dict(obj.metadata),
            "ContentType": obj.content_type,
            "LastModified": obj.last_modified,
            "VersionId": obj.version_id,
            "AcceptRanges": "bytes",
            "StorageClass": obj.storage_class,
            **{k: v for k, v in obj.headers.items() if k != "ChecksumAlgorithm"},
        }
        if obj.sse_customer_key is not None:
            fields["SSECustomerAlgorithm"] = "AES256"
            fields["SSECustomerKeyMD5"] = base64.b64encode(
                _md5(obj.sse_customer_key.encode())
            ).decode()
        return fields

    # ------------------------------------------------------------ objects

    def put_object(self, **kwargs: Any) -> dict[str, Any]:
        params = self._begin("put_object", kwargs)
        data = params.get("Body", b"")
        self._check_body("PutObject", data, params)
        with self._lock:
            current = self.objects.get((params["Bucket"], params["Key"]))
            self._check_conditions("PutObject", current.etag if current else None, params)
            obj = self._store(params["Bucket"], params["Key"], data, params)
        return self._response(
            ETag=obj.etag,
            VersionId=obj.version_id,
            ServerSideEncryption=params.get("ServerSideEncryption"),
        )

    def head_object(self, **kwargs: Any) -> dict[str, Any]:
        params = self._begin("head_object", kwargs)
        with self._lock:
            obj = self._find("HeadObject", params)
        self._check_sse_c("HeadObject", obj.sse_customer_key, params.get("SSECustomerKey"))
        self._check_conditions("HeadObject", obj.etag, params)
        fields = self._object_fields(obj)
        algorithm = obj.headers.get("ChecksumAlgorithm")
        if algorithm and params.get("ChecksumMode") == "ENABLED":
            fields[f"Checksum{algorithm}"] = _checksums(obj.data).get(f"Checksum{algorithm}", "")
        return self._response(ContentLength=len(obj.data), **fields)

    def get_object_tagging(self, **kwargs: Any) -> dict[str, Any]:
        params = self._begin("get_object_tagging", kwargs)
        with self._lock:
            obj = self._find("GetObjectTagging", params)
        pairs = urllib.parse.parse_qsl(obj.tagging or "")
        return self._response(TagSet=[{"Key": k, "Value": v} for k, v in pairs])

    def upload_part_copy(self, **kwargs: Any) -> dict[str, Any]:
        params = self._begin("upload_part_copy", kwargs)
        src_bucket, src_key, src_version = _copy_source(params["CopySource"])
        with self._lock:
            source = self._find(
                "UploadPartCopy",
                {
                    "Bucket": src_bucket,
                    "Key": src_key,
                    **({"VersionId": src_version} if src_version else {}),
                },
            )
            self._check_sse_c(
                "UploadPartCopy", source.sse_customer_key, params.get("CopySourceSSECustomerKey")
            )
            if "CopySourceIfMatch" in params and params["CopySourceIfMatch"] != source.etag:
                raise client_error("UploadPartCopy", "PreconditionFailed", 412)
            data = source.data
            match = _RANGE.match(params.get("CopySourceRange", ""))
            if match:
                data = data[int(match.group(1)) : int(match.group(2)) + 1]
            upload = self._upload("UploadPartCopy", params)
            etag = f'"{_md5(data).hex()}"'
            upload.parts[int(params["PartNumber"])] = (data, etag, {})
        return self._response(CopyPartResult={"ETag": etag, "LastModified": source.last_modified})

    def get_object(self, **kwargs: Any) -> dict[str, Any]:
        params = self._begin("get_object", kwargs)
        with self._lock:
            obj = self._find("GetObject", params)
        self._check_sse_c("GetObject", obj.sse_customer_key, params.get("SSECustomerKey"))
        self._check_conditions("GetObject", obj.etag, params)
        fields = self._object_fields(obj)
        data, status = obj.data, 200
        match = _RANGE.match(params.get("Range", ""))
        if match and (match.group(1) or match.group(2)):
            size = len(obj.data)
            if match.group(1):
                first = int(match.group(1))
                last = min(int(match.group(2)) if match.group(2) else size - 1, size - 1)
            else:
                first, last = max(0, size - int(match.group(2))), size - 1
                if int(match.group(2)) == 0:
                    first = size
            if first >= size or last < first:
                raise client_error(
                    "GetObject", "InvalidRange", 416, "The requested range is not satisfiable"
                )
            data, status = obj.data[first : last + 1], 206
            fields["ContentRange"] = f"bytes {first}-{last}/{size}"
        elif params.get("ChecksumMode") == "ENABLED":
            fields.update(ChecksumCRC32=obj.crc32, ChecksumType="FULL_OBJECT")
        return self._response(
            status,
            Body=StreamingBody(io.BytesIO(data), len(data)),
            ContentLength=len(data),
            **fields,
        )

    def delete_object(self, **kwargs: Any) -> dict[str, Any]:
        params = self._begin("delete_object", kwargs)
        with self._lock:
            current = self.objects.get((params["Bucket"], params["Key"]))
            if "IfMatch" in params and (current is None or params["IfMatch"] != current.etag):
                raise client_error("DeleteObject", "PreconditionFailed", 412)
            self._delete(params["Bucket"], params["Key"], params.get("VersionId"))
        return self._response(204)

    def _delete(self, bucket: str, key: str, version: str | None) -> None:
        current = self.objects.get((bucket, key))
        if version is None or (current is not None and current.version_id == version):
            self.objects.pop((bucket, key), None)
        if version is not None:
            self.versions.pop((bucket, key, version), None)

    def delete_objects(self, **kwargs: Any) -> dict[str, Any]:
        params = self._begin("delete_objects", kwargs)
        entries = params["Delete"]["Objects"]
        if len(entries) > 1000:
            raise client_error("DeleteObjects", "MalformedXML", 400, "over 1000 keys")
        deleted = []
        with self._lock:
            for entry in entries:
                self._delete(params["Bucket"], entry["Key"], entry.get("VersionId"))
                deleted.append(dict(entry))
        if params["Delete"].get("Quiet"):
            return self._response()
        return self._response(Deleted=deleted)

    def copy_object(self, **kwargs: Any) -> dict[str, Any]:
        params = self._begin("copy_object", kwargs)
        src_bucket, src_key, src_version = _copy_source(params["CopySource"])
        source_params = {"Bucket": src_bucket, "Key": src_key, "VersionId": src_version}
        with self._lock:
            source = self._find("CopyObject", {k: v for k, v in source_params.items() if v})
            self._check_sse_c(
                "CopyObject", source.sse_customer_key, params.get("CopySourceSSECustomerKey")
            )
            if "CopySourceIfMatch" in params and params["CopySourceIfMatch"] != source.etag:
                raise client_error("CopyObject", "PreconditionFailed", 412)
            replace = params.get("MetadataDirective") == "REPLACE"
            same = (src_bucket, src_key) == (params["Bucket"], params["Key"])
            if (
                same
                and not replace
                and not any(
                    k in params for k in ("ServerSideEncryption", "SSECustomerKey", "StorageClass")
                )
            ):
                raise client_error(
                    "CopyObject", "InvalidRequest", 400, "copy to itself without changing it"
                )
            new: dict[str, Any] = {
                "Metadata": params.get("Metadata", {}) if replace else dict(source.metadata),
                "ContentType": params.get("ContentType", "binary/octet-stream")
                if replace
                else source.content_type,
                "StorageClass": params.get("StorageClass"),
                "SSECustomerKey": params.get("SSECustomerKey"),
            }
            for name in _STORED_HEADERS:
                if name in params:
                    new[name] = params[name]
                elif not replace and name in source.headers and name not in _SSE_HEADERS:
                    new[name] = source.headers[name]
            if params.get("TaggingDirective") == "REPLACE":
                new["Tagging"] = params.get("Tagging")
            else:
                new["Tagging"] = source.tagging
            obj = self._store(
                params["Bucket"],
                params["Key"],
                source.data,
                {k: v for k, v in new.items() if v is not None},
            )
        return self._response(
            CopyObjectResult={"ETag": obj.etag, "LastModified": obj.last_modified},
            VersionId=obj.version_id,
        )

    def list_objects_v2(self, **kwargs: Any) -> dict[str, Any]:
        params = self._begin("list_objects_v2", kwargs)
        prefix, limit = params.get("Prefix", ""), int(params.get("MaxKeys", 1000))
        after = params.get("ContinuationToken") or params.get("StartAfter") or ""
        with self._lock:
            keys = sorted(
                k
                for (b, k) in self.objects
                if b == params["Bucket"] and k.startswith(prefix) and k > after
            )
            page = [(k, self.objects[(params["Bucket"], k)]) for k in keys[:limit]]
        contents = [
            {"Key": k, "Size": len(o.data), "ETag": o.etag, "LastModified": o.last_modified}
            for k, o in page
        ]
        truncated = len(keys) > limit
        return self._response(
            Contents=contents or None,
            KeyCount=len(contents),
            IsTruncated=truncated,
            NextContinuationToken=page[-1][0] if truncated else None,
            Prefix=prefix,
            MaxKeys=limit,
        )

    # ------------------------------------------------------------ multipart

    def create_multipart_upload(self, **kwargs: Any) -> dict[str, Any]:
        params = self._begin("create_multipart_upload", kwargs)
        with self._lock:
            upload_id = f"upload-{next(self._ids)}"
            self.uploads[upload_id] = _Upload(params["Bucket"], params["Key"], params)
        return self._response(Bucket=params["Bucket"], Key=params["Key"], UploadId=upload_id)

    def _upload(self, operation: str, params: Mapping[str, Any]) -> _Upload:
        upload = self.uploads.get(params["UploadId"])
        if upload is None or (upload.bucket, upload.key) != (params["Bucket"], params["Key"]):
            raise client_error(operation, "NoSuchUpload", 404)
        return upload

    def upload_part(self, **kwargs: Any) -> dict[str, Any]:
        params = self._begin("upload_part", kwargs)
        data = params.get("Body", b"")
        self._check_body("UploadPart", data, params)
        with self._lock:
            upload = self._upload("UploadPart", params)
            self._check_sse_c(
                "UploadPart", upload.params.get("SSECustomerKey"), params.get("SSECustomerKey")
            )
            etag = f'"{_md5(data).hex()}"'
            checksums = {}
            algorithm = params.get("ChecksumAlgorithm") or upload.params.get("ChecksumAlgorithm")
            if algorithm:
                name = f"Checksum{str(algorithm).upper()}"
                if name in _checksums(data):
                    checksums[name] = _checksums(data)[name]
            upload.parts[int(params["PartNumber"])] = (data, etag, checksums)
        return self._response(ETag=etag, **checksums)

    def complete_multipart_upload(self, **kwargs: Any) -> dict[str, Any]:
        params = self._begin("complete_multipart_upload", kwargs)
        listed = params.get("MultipartUpload", {}).get("Parts", [])
        with self._lock:
            upload = self._upload("CompleteMultipartUpload", params)
            current = self.objects.get((upload.bucket, upload.key))
            self._check_conditions(
                "CompleteMultipartUpload", current.etag if current else None, params
            )
            numbers = [p["PartNumber"] for p in listed]
            if not listed or numbers != sorted(set(numbers)):
                raise client_error("CompleteMultipartUpload", "InvalidPartOrder", 400)
            pieces = []
            for index, entry in enumerate(listed):
                stored = upload.parts.get(entry["PartNumber"])
                if stored is None or stored[1] != entry.get("ETag"):
                    raise client_error("CompleteMultipartUpload", "InvalidPart", 400)
                for name, value in stored[2].items():
                    if entry.get(name) != value:
                        raise client_error(
                            "CompleteMultipartUpload", "InvalidRequest", 400, f"{name} missing"
                        )
                if index < len(listed) - 1 and len(stored[0]) < MIN_PART:
                    raise client_error("CompleteMultipartUpload", "EntityTooSmall", 400)
                pieces.append(stored[0])
            del self.uploads[params["UploadId"]]
            obj = self._store(upload.bucket, upload.key, b"".join(pieces), upload.params)
            digest = _md5(b"".join(_md5(p) for p in pieces)).hex()
            obj.etag = f'"{digest}-{len(pieces)}"'
        return self._response(
            Bucket=upload.bucket,
            Key=upload.key,
            ETag=obj.etag,
            VersionId=obj.version_id,
            Location=f"https://{upload.bucket}.s3.amazonaws.com/{upload.key}",
        )

    def abort_multipart_upload(self, **kwargs: Any) -> dict[str, Any]:
        params = self._begin("abort_multipart_upload", kwargs)
        with self._lock:
            self._upload("AbortMultipartUpload", params)
            del self.uploads[params["UploadId"]]
        return self._response(204)
