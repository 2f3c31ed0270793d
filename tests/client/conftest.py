"""A local AWS for the client Lambda: moto's S3 server and the real model server.

The Lambda runs unchanged through real boto3 clients: S3 calls go to moto's
server mode (``AWS_ENDPOINT_URL_S3``), ``InvokeEndpoint`` goes to
``local.runtime_adapter`` (``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME``), which
forwards to the real model server (``containers/bin/serve``) serving the model
trained by the real training program. Only the AWS services are emulated.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import lambda_function
import pytest
from model_kit.model_io import Model, load_model

from local.credentials import FAKE_CREDENTIALS
from local.model_server import start_model_server
from local.moto_server import MotoServer, start_moto_server
from local.runtime_adapter import RuntimeAdapter, start_runtime_adapter
from local.s3_faults import S3Faults

from .local_stack import ENDPOINT_NAME, LocalStack


@pytest.fixture(scope="session")
def aws_credentials() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in FAKE_CREDENTIALS.items():
            patch.setenv(name, value)
        patch.delenv("AWS_PROFILE", raising=False)
        yield


@pytest.fixture(scope="session")
def s3_server(aws_credentials: None) -> Iterator[MotoServer]:
    with start_moto_server() as server:
        yield server


@pytest.fixture(scope="session")
def runtime_adapter(trained_model_dir: Path) -> Iterator[RuntimeAdapter]:
    """The real model server behind the SageMaker runtime adapter."""
    with (
        start_model_server(trained_model_dir.parent, workers=2) as model_server,
        start_runtime_adapter(ENDPOINT_NAME, model_server.url) as adapter,
    ):
        yield adapter


@pytest.fixture(scope="session")
def model(trained_model_dir: Path) -> Model:
    """The same model the server loaded: the oracle for what each record must get."""
    return load_model(trained_model_dir)


@pytest.fixture
def stack(
    s3_server: MotoServer, runtime_adapter: RuntimeAdapter, monkeypatch: pytest.MonkeyPatch
) -> Iterator[LocalStack]:
    """Fresh buckets and a cold start of the Lambda configured for them."""
    import boto3

    suffix = uuid.uuid4().hex[:12]
    env = {
        "AWS_ENDPOINT_URL_S3": s3_server.url,
        "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": runtime_adapter.url,
        "INFERENCE_OUTPUT_BUCKET": f"output-{suffix}",
        "MODEL_ENDPOINT": ENDPOINT_NAME,
        "MAX_ATTEMPTS": "3",
    }
    stack = LocalStack(
        boto3.client("s3", endpoint_url=s3_server.url),
        runtime_adapter,
        f"input-{suffix}",
        f"output-{suffix}",
        env,
        monkeypatch,
    )
    stack.apply_env()
    for bucket in (stack.input_bucket, stack.output_bucket):
        stack.s3.create_bucket(Bucket=bucket)
        stack.s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    runtime_adapter.invocations.clear()
    yield stack
    lambda_function._processor.cache_clear()
    runtime_adapter.faults.clear()


@pytest.fixture
def faults(stack: LocalStack, s3_server: MotoServer) -> Iterator[S3Faults]:
    """The client's S3 is `local.s3_faults` in front of moto; the test's own client is not."""
    with S3Faults(s3_server.url).start() as proxy:
        stack.env["AWS_ENDPOINT_URL_S3"] = proxy.url
        stack.apply_env()
        yield proxy
