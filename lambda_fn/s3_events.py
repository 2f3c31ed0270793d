"""Turn an S3 event notification into the objects it names.

S3 URL-encodes object keys in events (``+`` for a space, ``%XX`` for other
bytes), so a key must be decoded with ``unquote_plus`` before it is used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus


class EventError(Exception):
    """An event record lacks what every S3 notification carries."""


@dataclass(frozen=True)
class SourceObject:
    """One object named by one event record."""

    bucket: str
    key: str
    size: int | None
    version_id: str | None
    etag: str | None
    event_name: str


def source_objects(event: dict[str, Any]) -> list[SourceObject | EventError]:
    """Every record of ``event``, each parsed or replaced by the error explaining why not."""
    results: list[SourceObject | EventError] = []
    for index, record in enumerate(event.get("Records") or [], start=1):
        try:
            s3 = record["s3"]
            obj = s3["object"]
            results.append(
                SourceObject(
                    bucket=s3["bucket"]["name"],
                    key=unquote_plus(obj["key"]),
                    size=obj.get("size"),
                    version_id=obj.get("versionId") or None,
                    etag=obj.get("eTag") or None,
                    event_name=record.get("eventName", ""),
                )
            )
        except (KeyError, TypeError) as exc:
            results.append(
                EventError(f"event record {index} has no s3 bucket/object field {exc}: {record!r}")
            )
    return results
