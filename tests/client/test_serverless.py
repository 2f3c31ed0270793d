"""A serverless endpoint throttles the invocations beyond its maximum concurrency: the
client, configured for it by ``SERVING_MODE=serverless``, still scores every record."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
from model_kit.model_io import Model

from local.runtime_adapter import Hosting, RuntimeAdapter, start_runtime_adapter

from .local_stack import ENDPOINT_NAME, INFERENCE_CSV, LocalStack, expected_labels, feature_rows

INFERENCE_TEXT = INFERENCE_CSV.read_text()


@pytest.fixture
def one_at_a_time(runtime_adapter: RuntimeAdapter) -> Iterator[RuntimeAdapter]:
    """The same model server, behind a serverless endpoint of maximum concurrency 1."""
    container = runtime_adapter.container
    with start_runtime_adapter(
        ENDPOINT_NAME, f"http://{container.netloc}", hosting=Hosting.serverless(1)
    ) as adapter:
        yield adapter


def test_throttled_requests_are_retried_until_every_record_is_scored(
    stack: LocalStack, one_at_a_time: RuntimeAdapter, model: Model
) -> None:
    del stack.env["MAX_ATTEMPTS"]  # the serverless default (8), adaptive
    stack.env.update(
        {
            "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": one_at_a_time.url,
            "SERVING_MODE": "serverless",
            "REQUEST_CONCURRENCY": "4",
            "MAX_REQUEST_BYTES": "2048",
        }
    )
    stack.apply_env()

    stack.invoke(stack.put("burst.csv", INFERENCE_TEXT.encode()))

    body, _ = stack.read("burst.csv.out")
    assert body.decode().splitlines() == expected_labels(model, feature_rows(INFERENCE_TEXT))
    statuses = Counter(invocation.status for invocation in one_at_a_time.invocations)
    assert statuses[200] >= 10, statuses  # ~24 KB in requests of at most 2 KB
    assert statuses[400] >= 1, f"four requests at a time never met the limit of one: {statuses}"
    assert set(statuses) == {200, 400}


def test_a_request_above_the_serverless_payload_limit_is_refused_by_the_service(
    one_at_a_time: RuntimeAdapter,
) -> None:
    import boto3
    from botocore.exceptions import ClientError

    client = boto3.client("sagemaker-runtime", endpoint_url=one_at_a_time.url)
    with pytest.raises(ClientError) as raised:
        client.invoke_endpoint(
            EndpointName=ENDPOINT_NAME, ContentType="text/csv", Body=b"1" * (4 * 1024 * 1024 + 1)
        )
    assert raised.value.response["Error"]["Code"] == "413"
