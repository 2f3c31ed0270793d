"""Ask S3 whether an object exists, telling a missing object from a denied request.

Both the input's version check and the output's stale-result removal need to
know whether a key is there; a missing one is an answer, not a failure.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

_MISSING_OBJECT_CODES = {"404", "NoSuchKey", "NoSuchVersion", "NotFound"}


def s3_location(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` as (bucket, key)."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def is_missing(exc: ClientError) -> bool:
    return str(exc.response.get("Error", {}).get("Code")) in _MISSING_OBJECT_CODES


def head_or_none(s3: Any, bucket: str, key: str) -> dict[str, Any] | None:
    """The object's headers, or None if it does not exist.

    Without ``s3:ListBucket`` S3 answers 403, not 404, for a missing key;
    say so instead of leaving a bare AccessDenied to puzzle over.
    """
    try:
        return s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if is_missing(exc):
            return None
        if exc.response.get("Error", {}).get("Code") in ("403", "AccessDenied"):
            raise PermissionError(
                f"HeadObject on s3://{bucket}/{key} was denied: the function's role needs "
                f"s3:GetObject and s3:ListBucket on bucket {bucket} (without ListBucket, "
                "S3 answers 403 for a missing key)"
            ) from exc
        raise
