"""S3-triggered client: score every created object with the SageMaker endpoint.

Configuration (environment variables; see ``client_config``):
``INFERENCE_OUTPUT_BUCKET`` and ``MODEL_ENDPOINT`` (required), ``SERVING_MODE`` (the
endpoint's hosting, which sets the defaults and bounds of ``MAX_REQUEST_BYTES``,
``MAX_ATTEMPTS`` and ``RETRY_MODE``), ``REQUEST_CONCURRENCY``, ``OUTPUT_PART_BYTES``, and
for files scored by batch transform ``BATCH_THRESHOLD_BYTES`` with the ``TRANSFORM_*`` settings.

Every record of the event is handled. Objects the file itself makes unscorable
get an error report; transient failures are raised after the other records are
done, so Lambda retries the event (reprocessing is idempotent).
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from typing import Any

import boto3
from client_config import load_config
from endpoint_client import boto_config, runtime_client
from object_processor import ObjectProcessor
from s3_events import EventError, source_objects

# Time kept back to abort an upload, log and return the error before the function's timeout.
TIMEOUT_MARGIN_SECONDS = 10.0


class TransientFailure(Exception):
    """Some objects of the event could not be processed now; Lambda should retry the event."""


@functools.cache
def _processor() -> ObjectProcessor:
    """Configuration and clients, built once per cold start (not at import, so errors show)."""
    config = load_config(os.environ)
    s3 = boto3.client("s3", config=boto_config(config))
    sagemaker = boto3.client("sagemaker", config=boto_config(config)) if config.transform else None
    return ObjectProcessor(config, s3, runtime_client(config), sagemaker)


def _deadline(context: Any) -> float | None:
    """When to stop scoring: ``TIMEOUT_MARGIN_SECONDS`` before Lambda would kill us."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if remaining is None:
        return None
    return time.monotonic() + remaining() / 1000 - TIMEOUT_MARGIN_SECONDS


def _log(fields: dict[str, Any]) -> None:
    print(json.dumps(fields, default=str, ensure_ascii=False), file=sys.stdout, flush=True)


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    processor = _processor()
    results: list[dict[str, Any]] = []
    failures: list[str] = []
    objects = source_objects(event)
    if not objects:
        _log({"outcome": "skipped", "reason": "event has no S3 records", "event": event})
    for obj in objects:
        if isinstance(obj, EventError):
            _log({"outcome": "failed", "reason": str(obj)})
            failures.append(str(obj))
            continue
        started = time.perf_counter()
        line: dict[str, Any] = {"bucket": obj.bucket, "key": obj.key, "version_id": obj.version_id}
        try:
            outcome = processor.process(obj, _deadline(context))
        except Exception as exc:
            line.update(outcome="failed", reason=f"{type(exc).__name__}: {exc}")
            failures.append(f"s3://{obj.bucket}/{obj.key}: {type(exc).__name__}: {exc}")
        else:
            line.update(
                outcome=outcome.outcome,
                reason=outcome.reason,
                bytes=outcome.bytes,
                output_bytes=outcome.output_bytes,
                records=outcome.records,
                requests=outcome.requests,
                output_key=outcome.output_key,
                **outcome.extra,
            )
        line["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
        _log(line)
        results.append(line)
    if failures:
        raise TransientFailure(
            f"{len(failures)} of {len(objects)} objects failed and will be retried: "
            + " | ".join(failures)
        )
    return {"objects": results}
