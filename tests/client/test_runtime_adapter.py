"""The local SageMaker runtime answers boto3 the way the real service does."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from local.runtime_adapter import RuntimeAdapter
from local.services import free_port

from .local_stack import ENDPOINT_NAME, INFERENCE_CSV, REPO_ROOT

NO_RETRIES = Config(retries={"mode": "standard", "total_max_attempts": 1})


@pytest.fixture
def runtime(runtime_adapter: RuntimeAdapter, aws_credentials: None) -> Iterator[Any]:
    yield boto3.client("sagemaker-runtime", endpoint_url=runtime_adapter.url, config=NO_RETRIES)
    runtime_adapter.faults.clear()


def test_invoke_endpoint_returns_the_container_answer_and_variant(runtime: Any) -> None:
    rows = INFERENCE_CSV.read_text().splitlines()[1:4]
    response = runtime.invoke_endpoint(
        EndpointName=ENDPOINT_NAME, ContentType="text/csv", Accept="text/csv", Body="\n".join(rows)
    )
    assert response["InvokedProductionVariant"] == "AllTraffic"
    assert response["ContentType"].startswith("text/csv")
    assert len(response["Body"].read().decode().splitlines()) == 3


def test_container_4xx_becomes_model_error_with_original_status_and_message(runtime: Any) -> None:
    with pytest.raises(ClientError) as raised:
        runtime.invoke_endpoint(EndpointName=ENDPOINT_NAME, ContentType="text/csv", Body=b"1,2")
    error = raised.value.response
    assert error["Error"]["Code"] == "ModelError"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert error["OriginalStatusCode"] == 400
    assert json.loads(error["OriginalMessage"])["record"] == 1
    assert error["LogStreamArn"].endswith(f"/aws/sagemaker/Endpoints/{ENDPOINT_NAME}")
    assert "Received client error (400) from primary" in error["Error"]["Message"]


def test_unknown_endpoint_is_a_validation_error(runtime: Any) -> None:
    with pytest.raises(ClientError) as raised:
        runtime.invoke_endpoint(EndpointName="no-such-endpoint", ContentType="text/csv", Body=b"1")
    assert raised.value.response["Error"] == {
        "Code": "ValidationError",
        "Message": "Endpoint no-such-endpoint of account 123456789012 not found.",
    }


def test_payload_above_6_mb_is_refused_by_the_service(runtime: Any) -> None:
    with pytest.raises(ClientError) as raised:
        runtime.invoke_endpoint(
            EndpointName=ENDPOINT_NAME, ContentType="text/csv", Body=b"1" * (6 * 1024 * 1024 + 1)
        )
    assert raised.value.response["Error"] == {
        "Code": "413",
        "Message": "HTTP content length exceeded 6291456 bytes.",
    }


def test_injected_throttling_is_the_error_botocore_retries(
    runtime: Any, runtime_adapter: RuntimeAdapter
) -> None:
    runtime_adapter.faults.throttle(1)
    with pytest.raises(ClientError) as raised:
        runtime.invoke_endpoint(EndpointName=ENDPOINT_NAME, ContentType="text/csv", Body=b"1")
    assert raised.value.response["Error"]["Code"] == "ThrottlingException"
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_command_line_serves_the_endpoint(
    runtime_adapter: RuntimeAdapter, aws_credentials: None
) -> None:
    port = free_port()
    container_url = f"http://{runtime_adapter.container.netloc}"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "local.runtime_adapter",
            "--endpoint-name",
            "cli-endpoint",
            "--container-url",
            container_url,
            "--port",
            str(port),
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert "cli-endpoint" in process.stdout.readline()
        client = boto3.client(
            "sagemaker-runtime", endpoint_url=f"http://127.0.0.1:{port}", config=NO_RETRIES
        )
        rows = INFERENCE_CSV.read_text().splitlines()[1:3]
        response = client.invoke_endpoint(
            EndpointName="cli-endpoint", ContentType="text/csv", Body="\n".join(rows)
        )
        assert len(response["Body"].read().decode().splitlines()) == 2
    finally:
        process.terminate()
        process.wait(timeout=10)
