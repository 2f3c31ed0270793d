"""Score one S3 object: stream its records to the endpoint, write predictions or an error report.

The output bucket holds at most one result per input key: writing ``.out``
removes a stale ``.error.json`` of the same key and vice versa, so a reader
never has to guess which of the two is current.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from botocore.exceptions import ClientError
from client_config import ClientConfig
from endpoint_client import ModelRejection, invoke
from errors import PermanentError
from input_formats import InputFormat, format_for_key
from output_writer import S3StreamWriter
from request_batches import Batch, batches
from s3_events import SourceObject

OUT_SUFFIX = ".out"
ERROR_SUFFIX = ".error.json"
READ_CHUNK_BYTES = 1024 * 1024
# Leaves room for the other metadata within S3's 2 KB user-metadata limit.
METADATA_KEY_CHARS = 1200
_MISSING_OBJECT_CODES = {"404", "NoSuchKey", "NoSuchVersion", "NotFound"}


@dataclass
class Outcome:
    """What happened to one object; becomes its log line."""

    outcome: str  # "predictions" | "error_report" | "skipped"
    reason: str | None = None
    records: int = 0
    requests: int = 0
    bytes: int = 0
    output_bytes: int = 0  # written to ``.out``, also when that upload was then aborted
    output_key: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Source:
    """The exact object version read, as named in output metadata and error reports."""

    bucket: str
    key: str
    version_id: str | None
    etag: str | None

    def as_dict(self) -> dict[str, str | None]:
        return {
            "bucket": self.bucket,
            "key": self.key,
            "version_id": self.version_id,
            "etag": self.etag,
        }

    def metadata(self, endpoint: str) -> dict[str, str]:
        """S3 user metadata: ASCII only and at most 2 KB in all, so the key is
        percent-encoded UTF-8, and cut short (flagged) if it would not fit."""
        source_key = quote(self.key, safe="/")
        metadata = {
            "source-bucket": self.bucket,
            "source-key": _cut_escaped(source_key, METADATA_KEY_CHARS),
            "source-version-id": self.version_id or "null",
            "source-etag": self.etag or "",
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


def _etag(value: str | None) -> str | None:
    return value.strip('"') if value else None


def _missing(exc: ClientError) -> bool:
    return str(exc.response.get("Error", {}).get("Code")) in _MISSING_OBJECT_CODES


class ObjectProcessor:
    """Scores objects with one configuration and one pair of clients (one per cold start)."""

    def __init__(self, config: ClientConfig, s3: Any, runtime: Any) -> None:
        self._config, self._s3, self._runtime = config, s3, runtime

    def process(self, obj: SourceObject, deadline: float | None = None) -> Outcome:
        """Handle one object; raises only transient failures.

        ``deadline`` (``time.monotonic()`` seconds) is when to give up: before
        Lambda's own timeout, so the multipart upload is aborted and the failure
        logged instead of the process being frozen mid-upload.
        """
        skip = self._skip_reason(obj)
        if skip:
            return Outcome("skipped", reason=skip)
        source = Source(obj.bucket, obj.key, obj.version_id, _etag(obj.etag))
        try:
            fmt = format_for_key(obj.key)
        except PermanentError as error:
            return self._report(source, error, Outcome("error_report"))
        try:
            response = self._s3.get_object(
                Bucket=obj.bucket,
                Key=obj.key,
                **({"VersionId": obj.version_id} if obj.version_id else {}),
            )
        except ClientError as exc:
            if _missing(exc):
                return Outcome("skipped", reason="the object no longer exists")
            raise
        source = Source(
            obj.bucket, obj.key, response.get("VersionId", obj.version_id), _etag(response["ETag"])
        )
        size = int(response.get("ContentLength", 0))
        if size == 0:
            response["Body"].close()
            return Outcome("skipped", reason="empty object")
        outcome = Outcome("predictions", bytes=size)
        try:
            self._score(source, fmt, response["Body"], outcome, deadline)
        except PermanentError as error:
            return self._report(source, error, outcome)
        finally:
            response["Body"].close()
        return outcome

    def _skip_reason(self, obj: SourceObject) -> str | None:
        if obj.event_name and not obj.event_name.startswith("ObjectCreated"):
            return f"event {obj.event_name} does not create an object"
        if obj.key.endswith("/"):
            return "folder marker (key ends with '/')"
        if obj.size == 0:
            return "empty object"
        if obj.version_id is None:
            return None
        head = self._head(obj.bucket, obj.key)
        if head is None:
            return "the object was deleted after this event"
        current = head.get("VersionId")
        if current and current != obj.version_id:
            # A newer version has its own event; scoring this one would overwrite its output.
            return f"version {obj.version_id} is superseded by version {current}"
        return None

    def _score(
        self,
        source: Source,
        fmt: InputFormat,
        body: Any,
        outcome: Outcome,
        deadline: float | None,
    ) -> None:
        config = self._config
        output_key = source.key + OUT_SUFFIX
        writer = S3StreamWriter(
            self._s3,
            config.output_bucket,
            output_key,
            content_type=fmt.content_type,
            metadata=source.metadata(config.endpoint_name),
            part_bytes=config.output_part_bytes,
        )
        records = fmt.records(body.iter_chunks(READ_CHUNK_BYTES), config.max_request_bytes)
        writer.write(fmt.output_prefix)
        scored = self._predictions(fmt, batches(fmt, records, config.max_request_bytes))
        try:
            with closing(scored):
                for batch, predictions in scored:
                    if deadline is not None and time.monotonic() > deadline:
                        raise TimeoutError(
                            f"stopped after {outcome.records} records to finish before the "
                            "function's timeout; raise the timeout or split the file"
                        )
                    writer.write(fmt.render(predictions, first=outcome.records == 0))
                    outcome.records += batch.count
                    outcome.requests += 1
            writer.write(fmt.output_suffix)
            writer.close({"record-count": str(outcome.records)})
        except BaseException:
            writer.abort()
            raise
        finally:
            outcome.output_bytes = writer.bytes_written
        outcome.output_key = output_key
        self._delete(source.key + ERROR_SUFFIX)

    def _predictions(
        self, fmt: InputFormat, requests: Iterator[Batch]
    ) -> Iterator[tuple[Batch, list[bytes]]]:
        """Each batch with its predictions, in input order, at most ``concurrency`` in flight."""
        concurrency = self._config.request_concurrency
        with ThreadPoolExecutor(concurrency, thread_name_prefix="invoke") as pool:
            in_flight: deque[tuple[Batch, Future[bytes]]] = deque()
            try:
                for batch in requests:
                    in_flight.append((batch, pool.submit(self._invoke, fmt, batch)))
                    if len(in_flight) >= concurrency:
                        yield self._collect(fmt, *in_flight.popleft())
                while in_flight:
                    yield self._collect(fmt, *in_flight.popleft())
            finally:
                for _, future in in_flight:
                    future.cancel()

    def _invoke(self, fmt: InputFormat, batch: Batch) -> bytes:
        return invoke(self._runtime, self._config.endpoint_name, fmt.content_type, batch.body)

    def _collect(
        self, fmt: InputFormat, batch: Batch, future: Future[bytes]
    ) -> tuple[Batch, list[bytes]]:
        try:
            body = future.result()
        except ModelRejection as rejection:
            raise _rejection_error(fmt, batch, rejection) from rejection
        predictions = fmt.predictions(body)
        if len(predictions) != batch.count:
            raise PermanentError(
                f"the endpoint returned {len(predictions)} predictions for the {batch.count} "
                f"records {batch.first_record}..{batch.first_record + batch.count - 1}",
                details={"request": batch.index},
            )
        return batch, predictions

    def _report(self, source: Source, error: PermanentError, outcome: Outcome) -> Outcome:
        """Write ``<key>.error.json`` and remove a stale ``.out`` of the same key."""
        report = {
            "source": source.as_dict(),
            "endpoint": self._config.endpoint_name,
            "reason": error.reason,
            "record": error.record,
            "line": error.line,
            "endpoint_status": error.endpoint_status,
            "endpoint_message": error.endpoint_message,
            **error.details,
        }
        output_key = source.key + ERROR_SUFFIX
        self._s3.put_object(
            Bucket=self._config.output_bucket,
            Key=output_key,
            Body=(json.dumps(report, indent=2, ensure_ascii=False) + "\n").encode(),
            ContentType="application/json",
            Metadata=source.metadata(self._config.endpoint_name),
        )
        self._delete(source.key + OUT_SUFFIX)
        outcome.outcome, outcome.reason, outcome.output_key = "error_report", str(error), output_key
        outcome.extra = {"record": error.record, "endpoint_status": error.endpoint_status}
        return outcome

    def _delete(self, key: str) -> None:
        """Delete ``key`` if present (a blind delete adds a delete marker in a versioned bucket)."""
        bucket = self._config.output_bucket
        if self._head(bucket, key) is not None:
            self._s3.delete_object(Bucket=bucket, Key=key)

    def _head(self, bucket: str, key: str) -> dict[str, Any] | None:
        """The object's headers, or None if it does not exist.

        Without ``s3:ListBucket`` S3 answers 403, not 404, for a missing key;
        say so instead of leaving a bare AccessDenied to puzzle over.
        """
        try:
            return self._s3.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if _missing(exc):
                return None
            if exc.response.get("Error", {}).get("Code") in ("403", "AccessDenied"):
                raise PermissionError(
                    f"HeadObject on s3://{bucket}/{key} was denied: the function's role needs "
                    f"s3:GetObject and s3:ListBucket on bucket {bucket} (without ListBucket, "
                    "S3 answers 403 for a missing key)"
                ) from exc
            raise


def _rejection_error(fmt: InputFormat, batch: Batch, rejection: ModelRejection) -> PermanentError:
    """Name the FILE's record (and line) that the endpoint rejected in one request.

    A CSV header is resent as line 1 of every request; the server counts it as a
    record only when it does not match the model's feature names, so for CSV
    with a header the request LINE, not the record, locates the culprit.
    """
    record_in_request, line_in_request = rejection.position()
    details = {"request": batch.index, "request_first_record": batch.first_record}
    common = {
        "endpoint_status": rejection.status,
        "endpoint_message": rejection.message,
        "details": details,
    }
    if fmt.header_line is not None and line_in_request is not None:
        if line_in_request == 1:
            return PermanentError(
                f"the endpoint rejected the CSV header (line {fmt.header_line}) with status "
                f"{rejection.status}: its column names must be the model's feature names in order",
                line=fmt.header_line,
                **common,
            )
        record_in_request = line_in_request - 1
    record = batch.file_record(record_in_request) if record_in_request else None
    line = batch.file_line(record_in_request) if record_in_request else None
    details["request_record"] = record_in_request
    where = f"record {record}" if record else f"request {batch.index}"
    return PermanentError(
        f"the endpoint rejected {where} with status {rejection.status}",
        record=record,
        line=line,
        **common,
    )
