"""Calls to the SageMaker endpoint, and what their failures mean.

Throttling and 5xx answers of the SageMaker service are retried with backoff by
botocore itself (``Config(retries=...)``), so no retry loop lives here. The
container's own non-2xx answers reach us as ``ModelError`` (HTTP 424) carrying
``OriginalStatusCode``/``OriginalMessage``: a 4xx there means the model
rejected the data (permanent), anything else is transient.
"""

from __future__ import annotations

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
