"""Open the exact object version an event names, or say why it is not to be scored.

The object is read by the event's ``versionId``: an event for a version that
has since been overwritten is skipped, because the newer version has its own
event and scoring the old one would replace the newer predictions.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError
from s3_events import SourceObject
from s3_lookup import head_or_none, is_missing

READ_CHUNK_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Source:
    """The exact object version read, as named in output metadata and error reports."""

    bucket: str
    key: str
    version_id: str | None
    etag: str | None

    @classmethod
    def named_by(cls, obj: SourceObject) -> Source:
        """The version the event names, for reports written before the object is read."""
        return cls(obj.bucket, obj.key, obj.version_id, _etag(obj.etag))


@dataclass(frozen=True)
class Skipped:
    """Why an object is not scored; it becomes the logged reason."""

    reason: str


@dataclass(frozen=True)
class OpenedObject:
    """A non-empty object being read, and the version S3 actually returned."""

    source: Source
    size: int
    body: Any

    def chunks(self) -> Iterator[bytes]:
        return self.body.iter_chunks(READ_CHUNK_BYTES)


def _etag(value: str | None) -> str | None:
    return value.strip('"') if value else None


class SourceReader:
    """Reads input objects with one S3 client (one per cold start)."""

    def __init__(self, s3: Any) -> None:
        self._s3 = s3

    def skipped(self, obj: SourceObject) -> Skipped | None:
        """Why the event's object is not to be scored, known before reading it."""
        if obj.event_name and not obj.event_name.startswith("ObjectCreated"):
            return Skipped(f"event {obj.event_name} does not create an object")
        if obj.key.endswith("/"):
            return Skipped("folder marker (key ends with '/')")
        if obj.size == 0:
            return Skipped("empty object")
        if obj.version_id is None:
            return None
        head = head_or_none(self._s3, obj.bucket, obj.key)
        if head is None:
            return Skipped("the object was deleted after this event")
        current = head.get("VersionId")
        if current and current != obj.version_id:
            # A newer version has its own event; scoring this one would overwrite its output.
            return Skipped(f"version {obj.version_id} is superseded by version {current}")
        return None

    def open(self, obj: SourceObject) -> OpenedObject | Skipped:
        """The event's version of the object; the caller closes its body."""
        try:
            response = self._s3.get_object(
                Bucket=obj.bucket,
                Key=obj.key,
                **({"VersionId": obj.version_id} if obj.version_id else {}),
            )
        except ClientError as exc:
            if is_missing(exc):
                return Skipped("the object no longer exists")
            raise
        source = Source(
            obj.bucket, obj.key, response.get("VersionId", obj.version_id), _etag(response["ETag"])
        )
        size = int(response.get("ContentLength", 0))
        if size == 0:
            response["Body"].close()
            return Skipped("empty object")
        return OpenedObject(source, size, response["Body"])
