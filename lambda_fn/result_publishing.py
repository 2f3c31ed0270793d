"""Publish exactly one result per input key: ``<key>.out`` or ``<key>.error.json``.

Publishing either one removes a stale other of the same key, so a reader of
the output bucket never has to guess which of the two is current. Both name
the source version and the endpoint in their metadata.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any
from urllib.parse import quote

from client_config import ClientConfig
from errors import PermanentError
from input_formats import InputFormat
from output_writer import S3StreamWriter
from s3_lookup import head_or_none
from source_reader import Source

OUT_SUFFIX = ".out"
ERROR_SUFFIX = ".error.json"
# Leaves room for the other metadata within S3's 2 KB user-metadata limit.
METADATA_KEY_CHARS = 1200


def output_metadata(source: Source, endpoint: str) -> dict[str, str]:
    """S3 user metadata: ASCII only and at most 2 KB in all, so the key is
    percent-encoded UTF-8, and cut short (flagged) if it would not fit."""
    source_key = quote(source.key, safe="/")
    metadata = {
        "source-bucket": source.bucket,
        "source-key": _cut_escaped(source_key, METADATA_KEY_CHARS),
        "source-version-id": source.version_id or "null",
        "source-etag": source.etag or "",
        "endpoint": endpoint,
    }
    if len(source_key) > METADATA_KEY_CHARS:
        metadata["source-key-truncated"] = "true"
    return metadata


def _cut_escaped(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters without splitting a ``%XX`` escape."""
    cut = text[:limit]
    escape = cut.rfind("%", max(0, len(cut) - 2))
    return cut[:escape] if len(text) > limit and escape >= 0 else cut


def _delete_if_present(s3: Any, bucket: str, key: str) -> None:
    """A blind delete would add a delete marker in a versioned bucket."""
    if head_or_none(s3, bucket, key) is not None:
        s3.delete_object(Bucket=bucket, Key=key)


class ResultPublisher:
    """Writes results with one configuration and one S3 client (one per cold start)."""

    def __init__(self, config: ClientConfig, s3: Any) -> None:
        self._config, self._s3 = config, s3

    def predictions(self, source: Source, fmt: InputFormat) -> PredictionsOutput:
        """Start ``<key>.out``; nothing of it is visible until it is published."""
        return PredictionsOutput(self._config, self._s3, source, fmt)

    def error_report(self, source: Source, error: PermanentError) -> str:
        """Write ``<key>.error.json`` and remove a stale ``.out``; return the report's key."""
        report = {
            "source": asdict(source),
            "endpoint": self._config.endpoint_name,
            "reason": error.reason,
            "record": error.record,
            "line": error.line,
            "endpoint_status": error.endpoint_status,
            "endpoint_message": error.endpoint_message,
            **error.details,
        }
        bucket, output_key = self._config.output_bucket, source.key + ERROR_SUFFIX
        self._s3.put_object(
            Bucket=bucket,
            Key=output_key,
            Body=(json.dumps(report, indent=2, ensure_ascii=False) + "\n").encode(),
            ContentType="application/json",
            Metadata=output_metadata(source, self._config.endpoint_name),
        )
        _delete_if_present(self._s3, bucket, source.key + OUT_SUFFIX)
        return output_key


class PredictionsOutput:
    """``<key>.out`` while it streams: ``publish`` makes it the key's result, ``abort`` drops it."""

    def __init__(self, config: ClientConfig, s3: Any, source: Source, fmt: InputFormat) -> None:
        self._s3, self._bucket, self._key, self._fmt = s3, config.output_bucket, source.key, fmt
        self._writer = S3StreamWriter(
            s3,
            config.output_bucket,
            source.key + OUT_SUFFIX,
            content_type=fmt.content_type,
            metadata=output_metadata(source, config.endpoint_name),
            part_bytes=config.output_part_bytes,
        )
        self._writer.write(fmt.output_prefix)

    @property
    def bytes_written(self) -> int:
        """Bytes written so far, also once the upload has been aborted."""
        return self._writer.bytes_written

    def write(self, predictions: list[bytes], first: bool) -> None:
        """Append one response's predictions (``first``: none written yet)."""
        self._writer.write(self._fmt.render(predictions, first))

    def publish(self, record_count: int) -> str:
        """Complete ``.out`` and remove a stale ``.error.json``; return the output key."""
        self._writer.write(self._fmt.output_suffix)
        self._writer.close({"record-count": str(record_count)})
        _delete_if_present(self._s3, self._bucket, self._key + ERROR_SUFFIX)
        return self._key + OUT_SUFFIX

    def abort(self) -> None:
        """Discard the upload; safe to call at any point."""
        self._writer.abort()
