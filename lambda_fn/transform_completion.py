"""Publish a batch transform job's result: ``<key>.out`` or ``<key>.error.json``.

EventBridge invokes this handler with SageMaker's "Transform Job State Change" event of every
job of this app's prefix. The event is only a hint: the job is read with
``DescribeTransformJob`` and the request the client staged beside it (``request.json``), so
an event delivered twice, late, or before the client logged the start is handled alike, and
a job this app did not stage is ignored with a log line.

- Completed: the output, one answer per line (``AssembleWith=Line``, which may leave blank
  lines between mini-batches), is streamed into ``.out`` exactly as the streaming path
  renders predictions, and a stale ``.error.json`` is removed. If the input was overwritten
  or deleted since, nothing is published: the newer version has its own event.
- Failed with ``ClientError``: the file's fault (the model rejected a mini-batch), so an
  error report that points to the job's data log.
- Any other failure: a new job, up to ``SUBMISSION_ATTEMPTS`` in all, then an error report.
- Stopped: someone stopped it; an error report says so (upload the file again to retry).

A raised error (S3 unreachable, say) makes Lambda retry the event, and then send it to the
failed-events queue, from which ``make redrive`` replays it.

Configuration: the client's (``client_config``), with the batch transform settings.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Iterator
from typing import Any

import boto3
from batch_transform import (
    OUTPUT_FOLDER,
    REQUEST_FILE,
    TransformRequest,
    job_folder,
    start_transform,
)
from botocore.exceptions import ClientError
from client_config import ClientConfig, ConfigError, load_config
from endpoint_client import boto_config
from errors import SUBMISSION_ATTEMPTS, PermanentError
from input_formats import format_for_key
from line_records import numbered_lines
from result_publishing import ResultPublisher
from s3_lookup import head_or_none, is_missing, s3_location
from source_reader import READ_CHUNK_BYTES, Source

ENDED = ("Completed", "Failed", "Stopped")
# Answers written to ``.out`` per part written (a line is one record's answer).
LINES_PER_WRITE = 10_000
# No answer line is longer; a longer one means the output is not one answer per line.
MAX_ANSWER_BYTES = 1024 * 1024
# Where the job's own messages (the model server's, naming the rejected record) are.
LOG_GROUP = "/aws/sagemaker/TransformJobs"


class Publisher:
    """Turns ended jobs into results, with one configuration and one set of clients."""

    def __init__(self, config: ClientConfig, s3: Any, sagemaker: Any) -> None:
        if config.transform is None:
            raise ConfigError(
                "invalid Lambda configuration: the batch transform settings are unset"
            )
        self._config, self._settings = config, config.transform
        self._s3, self._sagemaker = s3, sagemaker
        self._publisher = ResultPublisher(config, s3)

    def publish(self, job_name: str) -> dict[str, Any]:
        job = self._sagemaker.describe_transform_job(TransformJobName=job_name)
        status = job["TransformJobStatus"]
        if status not in ENDED:
            return {"outcome": "ignored", "reason": f"the job is {status}, not ended"}
        folder = job_folder(self._settings, job_name)
        if job["TransformOutput"]["S3OutputPath"].rstrip("/") + "/" != folder + OUTPUT_FOLDER:
            return {"outcome": "ignored", "reason": f"the job's output is not under {folder}"}
        request = self._request(folder)
        if request is None:
            return {"outcome": "ignored", "reason": f"no {REQUEST_FILE} under {folder}"}
        line: dict[str, Any] = {"bucket": request.source.bucket, "key": request.source.key}
        superseded = self._superseded(request.source)
        if superseded:
            return {**line, "outcome": "skipped", "reason": superseded}
        if status == "Completed":
            return {**line, **self._predictions(request, folder + OUTPUT_FOLDER)}
        reason = job.get("FailureReason") or "no reason given"
        if status == "Failed" and not reason.startswith("ClientError"):
            if request.attempt < SUBMISSION_ATTEMPTS:
                retry = TransformRequest(request.source, request.content_type, request.attempt + 1)
                name, _ = start_transform(
                    self._settings, self._s3, self._sagemaker, self._config.endpoint_name, retry
                )
                return {**line, "outcome": "resubmitted", "transform_job": name, "reason": reason}
            reason = f"it failed {request.attempt} times; the last time: {reason}"
        verb = "was stopped" if status == "Stopped" else "failed"
        error = PermanentError(
            f"the batch transform job {job_name} {verb}: {reason}",
            details={
                "transform_job": job_name,
                "logs": f"CloudWatch log group {LOG_GROUP}, streams {job_name}/*",
            },
        )
        output_key = self._publisher.error_report(request.source, error)
        return {**line, "outcome": "error_report", "reason": str(error), "output_key": output_key}

    def _request(self, folder: str) -> TransformRequest | None:
        bucket, prefix = s3_location(folder)
        try:
            body = self._s3.get_object(Bucket=bucket, Key=prefix + REQUEST_FILE)["Body"].read()
        except ClientError as exc:
            if is_missing(exc):
                return None
            raise
        return TransformRequest.from_json(body)

    def _superseded(self, source: Source) -> str | None:
        """Why the job's input is no longer the one to publish (the job reads the key's
        current version when it runs, the event named one version)."""
        head = head_or_none(self._s3, source.bucket, source.key)
        if head is None:
            return "the input was deleted after the job started"
        etag = (head.get("ETag") or "").strip('"')
        version = head.get("VersionId")
        if (source.version_id and version != source.version_id) or etag != source.etag:
            return f"the input was overwritten (now version {version}, ETag {etag})"
        return None

    def _predictions(self, request: TransformRequest, output_folder: str) -> dict[str, Any]:
        bucket, prefix = s3_location(output_folder)
        listed = self._s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
        outputs = [item["Key"] for item in listed if item["Key"].endswith(".out")]
        if len(outputs) != 1:
            raise RuntimeError(f"expected one .out under {output_folder}, found {outputs}")
        fmt = format_for_key(request.source.key)
        output = self._publisher.predictions(request.source, fmt)
        records = 0
        try:
            body = self._s3.get_object(Bucket=bucket, Key=outputs[0])["Body"]
            for answers in _batches(body.iter_chunks(READ_CHUNK_BYTES)):
                output.write(answers, first=records == 0)
                records += len(answers)
            output_key = output.publish(records)
        except BaseException:
            output.abort()
            raise
        return {"outcome": "predictions", "records": records, "output_key": output_key}


def _batches(chunks: Iterator[bytes]) -> Iterator[list[bytes]]:
    """The non-blank lines of the job's output, a bounded list at a time."""
    batch: list[bytes] = []
    for _, line in numbered_lines(chunks, MAX_ANSWER_BYTES):
        if line.strip():
            batch.append(line)
            if len(batch) == LINES_PER_WRITE:
                yield batch
                batch = []
    if batch:
        yield batch


@functools.cache
def _publisher() -> Publisher:
    config = load_config(os.environ)
    s3 = boto3.client("s3", config=boto_config(config))
    sagemaker = boto3.client("sagemaker", config=boto_config(config))
    return Publisher(config, s3, sagemaker)


def handler(event: dict[str, Any], _context: Any = None) -> dict[str, Any]:
    """EventBridge's event: one job's state change."""
    job_name = event.get("detail", {}).get("TransformJobName", "")
    line = {"transform_job": job_name, "status": event.get("detail", {}).get("TransformJobStatus")}
    if not job_name:
        line.update(outcome="ignored", reason=f"the event names no transform job: {event!r}")
    else:
        line.update(_publisher().publish(job_name))
    print(json.dumps(line, ensure_ascii=False), file=sys.stdout, flush=True)
    return line
