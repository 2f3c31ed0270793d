"""The S3 ``ObjectCreated`` event record, exactly as S3 sends it to a Lambda.

Shared by the client's tests and the local demo, so both feed the handler the
same shape AWS does: the key URL-encoded with ``+`` for a space, the ETag
without quotes, the version id only when the bucket is versioned.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote_plus

LOCAL_PRINCIPAL = "AWS:AIDALOCALDEMOPRINCIPAL"


def object_created_record(
    bucket: str,
    key: str,
    size: int,
    *,
    etag: str | None,
    version_id: str | None,
    region: str = "us-east-1",
    event_name: str = "ObjectCreated:Put",
) -> dict[str, Any]:
    obj: dict[str, Any] = {"key": quote_plus(key, safe="/"), "size": size, "sequencer": "0A"}
    if etag:
        obj["eTag"] = etag.strip('"')
    if version_id:
        obj["versionId"] = version_id
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": region,
        "eventTime": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "eventName": event_name,
        "userIdentity": {"principalId": LOCAL_PRINCIPAL},
        "requestParameters": {"sourceIPAddress": "127.0.0.1"},
        "responseElements": {"x-amz-request-id": "LOCAL", "x-amz-id-2": "LOCAL"},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "local",
            "bucket": {
                "name": bucket,
                "ownerIdentity": {"principalId": LOCAL_PRINCIPAL},
                "arn": f"arn:aws:s3:::{bucket}",
            },
            "object": obj,
        },
    }
