"""Score one S3 object: read it, score its records, publish predictions or an error report.

Each step lives in its own module (``source_reader``, ``ordered_scoring``,
``result_publishing``); this one decides what happens to the object and
returns it as one frozen ``Outcome``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from contextlib import closing
from dataclasses import dataclass, field, replace
from typing import Any

from batch_transform import TransformRequest, start_transform
from client_config import ClientConfig, TransformSettings
from endpoint_client import inference_id, invoke_async
from errors import PermanentError
from input_formats import InputFormat, JsonFormat, format_for_key
from ordered_scoring import OrderedScorer
from request_batches import Batch
from result_publishing import ResultPublisher
from s3_events import SourceObject
from source_reader import OpenedObject, Skipped, Source, SourceReader


@dataclass(frozen=True)
class Outcome:
    """What happened to one object; becomes its log line."""

    # "predictions" | "error_report" | "skipped" | "submitted" (asynchronous, batch transform)
    outcome: str
    reason: str | None = None
    records: int = 0
    requests: int = 0
    bytes: int = 0
    output_bytes: int = 0  # written to ``.out``, also when that upload was then aborted
    output_key: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def scored(self, batch: Batch) -> Outcome:
        """This outcome once ``batch``'s predictions are written."""
        return replace(self, records=self.records + batch.count, requests=self.requests + 1)

    def reported(self, error: PermanentError, output_key: str) -> Outcome:
        """This outcome once ``error`` is published as the object's error report."""
        return replace(
            self,
            outcome="error_report",
            reason=str(error),
            output_key=output_key,
            extra={"record": error.record, "endpoint_status": error.endpoint_status},
        )


class ObjectProcessor:
    """Scores objects with one configuration and its AWS clients (one set per cold start)."""

    def __init__(self, config: ClientConfig, s3: Any, runtime: Any, sagemaker: Any = None) -> None:
        """``sagemaker`` (the control plane) starts batch transform jobs, when configured."""
        self._config, self._runtime, self._s3, self._sagemaker = config, runtime, s3, sagemaker
        self._reader = SourceReader(s3)
        self._scorer = OrderedScorer(config, runtime)
        self._publisher = ResultPublisher(config, s3)
        self._max_record_bytes = config.max_request_bytes

    def process(self, obj: SourceObject, deadline: float | None = None) -> Outcome:
        """Handle one object; raises only transient failures.

        ``deadline`` (``time.monotonic()`` seconds) is when to give up: before
        Lambda's own timeout, so the multipart upload is aborted and the failure
        logged instead of the process being frozen mid-upload.
        """
        skipped = self._reader.skipped(obj)
        if skipped:
            return Outcome("skipped", reason=skipped.reason)
        try:
            fmt = format_for_key(obj.key)
        except PermanentError as error:
            return self._reported(Source.named_by(obj), error, Outcome("error_report"))
        transform = self._config.transform
        if transform and (obj.size or 0) > transform.threshold_bytes:
            return self._transform(obj, fmt, transform)
        if self._config.serving_mode == "async":
            return self._submit(obj, fmt)
        opened = self._reader.open(obj)
        if isinstance(opened, Skipped):
            return Outcome("skipped", reason=opened.reason)
        with closing(opened.body):
            return self._score(opened, fmt, deadline)

    def _score(self, opened: OpenedObject, fmt: InputFormat, deadline: float | None) -> Outcome:
        outcome = Outcome("predictions", bytes=opened.size)
        output = self._publisher.predictions(opened.source, fmt)
        try:
            stream = fmt.read(opened.chunks(), self._max_record_bytes)
            scored = self._scorer.predictions(fmt, stream)
            with closing(scored):
                for batch, predictions in scored:
                    _stop_if_late(deadline, outcome.records)
                    output.write(predictions, first=outcome.records == 0)
                    outcome = outcome.scored(batch)
            output_key = output.publish(outcome.records)
        except PermanentError as error:
            output.abort()
            written = replace(outcome, output_bytes=output.bytes_written)
            return self._reported(opened.source, error, written)
        except BaseException:
            output.abort()
            raise
        return replace(outcome, output_bytes=output.bytes_written, output_key=output_key)

    def _submit(self, obj: SourceObject, fmt: InputFormat) -> Outcome:
        """Hand the object to the asynchronous endpoint as it lies in S3; the completion
        handler publishes its result when SageMaker has one."""
        size, limit = obj.size or 0, self._config.max_request_bytes
        if size > limit:
            error = PermanentError(
                f"the object is {size} bytes, more than the {limit} bytes the asynchronous "
                "endpoint's model server takes in one request"
            )
            return self._reported(Source.named_by(obj), error, Outcome("error_report"))
        inference = inference_id(obj.bucket, obj.key, obj.version_id, attempt=1)
        response = invoke_async(
            self._runtime,
            self._config.endpoint_name,
            f"s3://{obj.bucket}/{obj.key}",
            fmt.content_type,
            inference,
        )
        return Outcome(
            "submitted",
            bytes=size,
            extra={"inference_id": inference, "output_location": response.get("OutputLocation")},
        )

    def _transform(
        self, obj: SourceObject, fmt: InputFormat, settings: TransformSettings
    ) -> Outcome:
        """Start a batch transform job on a file too large to stream; its state-change
        handler (``transform_completion``) publishes the result."""
        size = obj.size or 0
        source = Source.named_by(obj)
        if isinstance(fmt, JsonFormat):
            error = PermanentError(
                f"the .json document is {size} bytes, more than the {settings.threshold_bytes} "
                "bytes the client scores in one run, and batch transform splits files only at "
                "line ends: write it as JSON Lines (.jsonl, one instance per line), which is "
                "scored at any size"
            )
            return self._reported(source, error, Outcome("error_report"))
        request = TransformRequest(source, fmt.content_type, attempt=1)
        job, started = start_transform(
            settings, self._s3, self._sagemaker, self._config.endpoint_name, request
        )
        return Outcome(
            "submitted",
            bytes=size,
            extra={"transform_job": job, "already_started": not started},
        )

    def _reported(self, source: Source, error: PermanentError, outcome: Outcome) -> Outcome:
        return outcome.reported(error, self._publisher.error_report(source, error))


def _stop_if_late(deadline: float | None, records: int) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise TimeoutError(
            f"stopped after {records} records to finish before the "
            "function's timeout; raise the timeout or split the file"
        )
