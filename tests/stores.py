"""What the S3 implementations under test answer differently, in one place."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError


def open_uploads(s3: Any, bucket: str) -> list[dict[str, Any]]:
    """The bucket's open multipart uploads (rclone's serve s3 answers NoSuchUpload for none)."""
    try:
        return list(s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []))
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "NoSuchUpload":
            return []
        raise


def lower_keys(metadata: dict[str, str]) -> dict[str, str]:
    """Metadata names as S3 gives them (lower case); rclone returns them as written."""
    return {k.lower(): v for k, v in metadata.items()}
