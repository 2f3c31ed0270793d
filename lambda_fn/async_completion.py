"""Publish an asynchronous inference's result: ``<key>.out`` or ``<key>.error.json``.

SageMaker notifies an SNS topic when an asynchronous invocation ends, and SNS invokes this
handler with the notification. It needs nothing else: the notification names the input
object, where the result or the failure lies, and (in the inference id) the attempt. So a
notification that arrives twice, before the client logged the submission, or for an
invocation this app did not make is handled alike; one for an input outside the input bucket
is ignored with a log line.

- Completed: the result is rendered as the streaming path renders predictions, so ``.out`` is
  the same in every mode, and a stale ``.error.json`` is removed.
- Failed with a 4xx from the model: the file's fault, so an error report, as when streaming.
- Any other failure: submitted again, up to ``SUBMISSION_ATTEMPTS`` in all, then reported.
  A raised error (S3 unreachable, say) makes Lambda retry the notification, and then send
  it to the failed-events queue.

Configuration: the client's (``client_config``), plus ``INFERENCE_INPUT_BUCKET``.
"""

from __future__ import annotations

import functools
import json
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import boto3
from client_config import INPUT_BUCKET_VARIABLE, ConfigError, load_config
from endpoint_client import ModelRejection, attempt_of, boto_config, inference_id, invoke_async
from errors import SUBMISSION_ATTEMPTS, PermanentError
from input_formats import format_for_key
from result_publishing import ResultPublisher
from s3_lookup import head_or_none, s3_location
from source_reader import Source

_STATUS = re.compile(r"\((\d{3})\)")


@dataclass(frozen=True)
class Completion:
    """What one notification says, in the words of the rest of the client."""

    status: str
    input_bucket: str
    input_key: str
    inference_id: str
    content_type: str | None
    output_location: str | None
    failure_location: str | None
    failure_reason: str | None

    @classmethod
    def parse(cls, message: dict[str, Any]) -> Completion:
        request = message.get("requestParameters", {})
        response = message.get("responseParameters", {})
        bucket, key = s3_location(request.get("inputLocation", ""))
        return cls(
            status=message.get("invocationStatus", ""),
            input_bucket=bucket,
            input_key=key,
            inference_id=message.get("inferenceId", ""),
            content_type=request.get("contentType"),
            output_location=response.get("outputLocation"),
            failure_location=response.get("failureLocation"),
            failure_reason=message.get("failureReason"),
        )


class Publisher:
    """Turns notifications into results, with one configuration and one pair of clients."""

    def __init__(self, env: Mapping[str, str], s3: Any, runtime: Any) -> None:
        self._config = load_config(env)
        self._input_bucket = env.get(INPUT_BUCKET_VARIABLE, "").strip()
        if not self._input_bucket:
            raise ConfigError(f"invalid Lambda configuration: {INPUT_BUCKET_VARIABLE} is not set")
        self._s3, self._runtime = s3, runtime
        self._publisher = ResultPublisher(self._config, s3)

    def publish(self, completion: Completion) -> dict[str, Any]:
        if completion.input_bucket != self._input_bucket:
            return {
                "outcome": "ignored",
                "reason": f"the input s3://{completion.input_bucket}/{completion.input_key} is "
                f"not in the input bucket {self._input_bucket}",
            }
        fmt = format_for_key(completion.input_key)
        source = self._source(completion)
        if completion.status == "Completed" and completion.output_location:
            body = self._read(completion.output_location)
            predictions = fmt.predictions(body)
            output = self._publisher.predictions(source, fmt)
            try:
                output.write(predictions, first=True)
                output_key = output.publish(len(predictions))
            except BaseException:
                output.abort()
                raise
            return {"outcome": "predictions", "records": len(predictions), "output_key": output_key}
        error = self._failure(completion)
        attempt = attempt_of(completion.inference_id)
        if error.endpoint_status is None or error.endpoint_status >= 500:
            if attempt < SUBMISSION_ATTEMPTS:
                self._resubmit(completion, source, fmt.content_type, attempt + 1)
                return {"outcome": "resubmitted", "attempt": attempt + 1, "reason": error.reason}
            error = PermanentError(
                f"the endpoint failed {attempt} times: {error.reason}",
                endpoint_status=error.endpoint_status,
                endpoint_message=error.endpoint_message,
            )
        output_key = self._publisher.error_report(source, error)
        return {"outcome": "error_report", "reason": str(error), "output_key": output_key}

    def _source(self, completion: Completion) -> Source:
        """The input as it is now: the notification names no version."""
        head = head_or_none(self._s3, completion.input_bucket, completion.input_key) or {}
        etag = head.get("ETag")
        return Source(
            completion.input_bucket,
            completion.input_key,
            head.get("VersionId"),
            etag.strip('"') if etag else None,
        )

    def _read(self, uri: str) -> bytes:
        bucket, key = s3_location(uri)
        return self._s3.get_object(Bucket=bucket, Key=key)["Body"].read()

    def _failure(self, completion: Completion) -> PermanentError:
        """The failure as the streaming path would report it: the model's own answer, and
        the record and line it names."""
        reason = completion.failure_reason or "the asynchronous invocation failed"
        found = _STATUS.search(reason)
        status = int(found.group(1)) if found else None
        message = (
            self._read(completion.failure_location).decode("utf-8", "replace")
            if completion.failure_location
            else None
        )
        record, line = (None, None)
        if status is not None and message is not None:
            record, line = ModelRejection(status, message).position()
        return PermanentError(
            f"the endpoint rejected the file with status {status}: {reason}"
            if status is not None and status < 500
            else reason,
            record=record,
            line=line,
            endpoint_status=status,
            endpoint_message=message,
        )

    def _resubmit(
        self, completion: Completion, source: Source, content_type: str, attempt: int
    ) -> None:
        invoke_async(
            self._runtime,
            self._config.endpoint_name,
            f"s3://{source.bucket}/{source.key}",
            completion.content_type or content_type,
            inference_id(source.bucket, source.key, source.version_id, attempt),
        )


@functools.cache
def _publisher() -> Publisher:
    config = load_config(os.environ)
    s3 = boto3.client("s3", config=boto_config(config))
    runtime = boto3.client("sagemaker-runtime", config=boto_config(config))
    return Publisher(os.environ, s3, runtime)


def handler(event: dict[str, Any], _context: Any = None) -> list[dict[str, Any]]:
    """SNS's event: one notification per record (SNS sends one)."""
    results = []
    for record in event.get("Records", []):
        message = json.loads(record["Sns"]["Message"])
        completion = Completion.parse(message)
        line = {
            "bucket": completion.input_bucket,
            "key": completion.input_key,
            "inference_id": completion.inference_id,
            "status": completion.status,
            **_publisher().publish(completion),
        }
        print(json.dumps(line, ensure_ascii=False), file=sys.stdout, flush=True)
        results.append(line)
    return results
