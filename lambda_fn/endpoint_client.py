"""Calls to the SageMaker endpoint, and what their failures mean.

Throttling and 5xx answers of the SageMaker service are retried with backoff by
botocore itself (``Config(retries=...)``), so no retry loop lives here. The
container's own non-2xx answers reach us as ``ModelError`` (HTTP 424) carrying
``OriginalStatusCode``/``OriginalMessage``: a 4xx there means the model
rejected the data (permanent), anything else is transient.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError
from client_config import ClientConfig

# SageMaker gives the container 60 s to answer; wait a little longer than that.
READ_TIMEOUT_SECONDS = 70
_RECORD_IN_MESSAGE = re.compile(r"\brecord\s+#?(\d+)", re.IGNORECASE)
_LINE_IN_MESSAGE = re.compile(r"\(line (\d+)\)")


@dataclass
class ModelRejection(Exception):
    """The container answered 4xx: the request's data is wrong, retrying cannot help."""

    status: int
    message: str

    def position(self) -> tuple[int | None, int | None]:
        """The 1-based record and line of the request that the container's answer names.

        Our server answers ``{"error": ..., "record": N, ...}`` and names the line
        in the message; other containers may only say "record N" in plain text.
        """
        try:
            body = json.loads(self.message)
        except ValueError:
            body = None
        record = body.get("record") if isinstance(body, dict) else None
        text = str(body.get("error", "")) if isinstance(body, dict) else self.message
        if not isinstance(record, int):
            match = _RECORD_IN_MESSAGE.search(text)
            record = int(match.group(1)) if match else None
        line = _LINE_IN_MESSAGE.search(text)
        return record, int(line.group(1)) if line else None


def boto_config(config: ClientConfig) -> Config:
    """Retry policy and connection pool shared by the S3 and SageMaker runtime clients."""
    return Config(
        # total_max_attempts counts the first call; "max_attempts" here would count retries only.
        retries={"mode": config.retry_mode, "total_max_attempts": config.max_attempts},
        read_timeout=READ_TIMEOUT_SECONDS,
        connect_timeout=5,
        max_pool_connections=max(10, config.request_concurrency + 2),
    )


def runtime_client(config: ClientConfig) -> Any:
    return boto3.client("sagemaker-runtime", config=boto_config(config))


def invoke(client: Any, endpoint_name: str, content_type: str, body: bytes) -> bytes:
    """Send one request; return the response body or raise ``ModelRejection``/transient errors."""
    try:
        response = client.invoke_endpoint(
            EndpointName=endpoint_name, ContentType=content_type, Accept=content_type, Body=body
        )
    except ClientError as exc:
        error = exc.response
        status = error.get("OriginalStatusCode")
        rejected = status is not None and 400 <= int(status) < 500
        if error.get("Error", {}).get("Code") == "ModelError" and rejected:
            raise ModelRejection(int(status), str(error.get("OriginalMessage", ""))) from exc
        raise
    return response["Body"].read()


def inference_id(bucket: str, key: str, version_id: str | None, attempt: int) -> str:
    """The id of one asynchronous attempt at one object version: the same event submitted twice
    gets the same id, and the completion handler reads the attempt back from it."""
    digest = hashlib.sha256(f"{bucket}/{key}/{version_id}".encode()).hexdigest()[:32]
    return f"{digest}-{attempt}"


def attempt_of(inference: str) -> int:
    """The attempt number ``inference_id`` wrote (1 for an id not of ours)."""
    _, _, attempt = inference.rpartition("-")
    return int(attempt) if attempt.isdigit() else 1


def invoke_async(
    client: Any, endpoint_name: str, input_location: str, content_type: str, inference: str
) -> dict[str, Any]:
    """Hand an S3 object to an asynchronous endpoint; SageMaker reads it and queues the work."""
    return client.invoke_endpoint_async(
        EndpointName=endpoint_name,
        InputLocation=input_location,
        ContentType=content_type,
        Accept=content_type,
        InferenceId=inference,
    )
