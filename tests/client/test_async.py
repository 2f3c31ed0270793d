"""`serving.mode` async: the client hands each object to `InvokeEndpointAsync`, and the
completion handler turns SageMaker's notification into the same `<key>.out` or
`<key>.error.json` as the streaming path writes.

SageMaker's asynchronous queue is played by `local.async_inference` in front of the real model
server, against moto's S3; SNS is played by the test, which delivers each notification to the
completion handler when it chooses: once, twice, or for an invocation never submitted.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import async_completion
import boto3
import pytest

from local.async_inference import AsyncInference, Notification
from local.model_server import start_model_server
from local.moto_server import MotoServer
from local.runtime_adapter import RuntimeAdapter, start_runtime_adapter
from local.s3_faults import S3Faults

from .local_stack import (
    ENDPOINT_NAME,
    INFERENCE_CSV,
    LocalStack,
    expected_labels,
    feature_rows,
    kill_mid_upload,
)

INFERENCE_TEXT = INFERENCE_CSV.read_text()
HEADER, *LINES = INFERENCE_TEXT.splitlines()


@dataclass
class AsyncEndpoint:
    adapter: RuntimeAdapter
    queue: AsyncInference

    def complete(self, deliveries: int = 1) -> list[Notification]:
        """Let SageMaker finish what is queued, and SNS deliver each notification."""
        notifications = self.queue.drain()
        for notification in notifications:
            for _ in range(deliveries):
                async_completion.handler(notification.sns_event())
        return notifications


def _endpoint(s3_server: MotoServer, container_url: str) -> Iterator[AsyncEndpoint]:
    s3 = boto3.client("s3", endpoint_url=s3_server.url)
    bucket = f"models-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    queue = AsyncInference(
        s3, f"s3://{bucket}/async-inference/results/", f"s3://{bucket}/async-inference/failures/"
    )
    with start_runtime_adapter(ENDPOINT_NAME, container_url, asynchronous=queue) as adapter:
        yield AsyncEndpoint(adapter, queue)


@pytest.fixture
def endpoint(s3_server: MotoServer, runtime_adapter: RuntimeAdapter) -> Iterator[AsyncEndpoint]:
    yield from _endpoint(s3_server, f"http://{runtime_adapter.container.netloc}")


def use(stack: LocalStack, endpoint: AsyncEndpoint, **env: str) -> None:
    stack.env.update(
        {
            "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": endpoint.adapter.url,
            "SERVING_MODE": "async",
            "INFERENCE_INPUT_BUCKET": stack.input_bucket,
            **env,
        }
    )
    stack.apply_env()
    async_completion._publisher.cache_clear()


def streamed(stack: LocalStack, key: str, body: bytes) -> bytes:
    """The `.out` the realtime streaming path writes for `body`."""
    stack.invoke(stack.put(key, body))
    return stack.read(f"{key}.out")[0]


JSON_DOCUMENT = json.dumps(
    {"instances": [[float(v) for v in row] for row in feature_rows(INFERENCE_TEXT)]}
).encode()
JSON_LINES = "".join(
    json.dumps([float(v) for v in row]) + "\n" for row in feature_rows(INFERENCE_TEXT)
)


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("file.csv", INFERENCE_TEXT.encode()),
        ("file.jsonl", JSON_LINES.encode()),
        ("file.json", JSON_DOCUMENT),
    ],
)
def test_every_format_gets_the_same_output_as_when_streamed(
    stack: LocalStack, endpoint: AsyncEndpoint, name: str, body: bytes
) -> None:
    expected = streamed(stack, f"streamed/{name}", body)
    use(stack, endpoint)

    outcome = stack.invoke(stack.put(f"async/{name}", body))
    assert stack.output_keys() == [f"streamed/{name}.out"], "nothing is written at submission"
    (notification,) = endpoint.complete()

    assert notification.topic == "success"
    assert stack.read(f"async/{name}.out")[0] == expected
    (submitted,) = outcome["objects"]
    assert (submitted["outcome"], submitted["bytes"]) == ("submitted", len(body))


def test_the_output_names_the_source_and_the_endpoint(
    stack: LocalStack, endpoint: AsyncEndpoint, model: Any
) -> None:
    use(stack, endpoint)
    put = stack.put("named.csv", INFERENCE_TEXT.encode())
    stack.invoke(put)
    endpoint.complete()
    body, metadata = stack.read("named.csv.out")
    assert body.decode().splitlines() == expected_labels(model, feature_rows(INFERENCE_TEXT))
    assert metadata["source-key"] == "named.csv"
    assert metadata["source-version-id"] == put["s3"]["object"]["versionId"]
    assert metadata["record-count"] == str(len(LINES))


def test_a_record_the_model_rejects_gets_the_streaming_paths_error_report(
    stack: LocalStack, endpoint: AsyncEndpoint
) -> None:
    use(stack, endpoint)
    bad = "\n".join([HEADER, *LINES[:3], LINES[3].replace(LINES[3].split(",")[2], "abc"), ""])
    stack.invoke(stack.put("bad.csv", bad.encode()))
    (notification,) = endpoint.complete()

    assert notification.topic == "error"
    report = stack.error_report("bad.csv")
    assert report["endpoint_status"] == 400
    assert (report["record"], report["line"]) == (4, 5)
    assert "'abc'" in report["endpoint_message"]
    assert stack.output_keys() == ["bad.csv.error.json"]


def test_a_notification_delivered_twice_leaves_exactly_one_result(
    stack: LocalStack, endpoint: AsyncEndpoint
) -> None:
    use(stack, endpoint)
    stack.invoke(stack.put("twice.csv", INFERENCE_TEXT.encode()))
    endpoint.complete(deliveries=2)
    assert stack.output_keys() == ["twice.csv.out"]


def test_the_same_event_delivered_twice_is_scored_once_into_one_result(
    stack: LocalStack, endpoint: AsyncEndpoint
) -> None:
    use(stack, endpoint)
    record = stack.put("event.csv", INFERENCE_TEXT.encode())
    stack.invoke(record)
    stack.invoke(record)  # S3 delivers at least once
    notifications = endpoint.complete()
    assert {n.message["inferenceId"] for n in notifications} == {
        notifications[0].message["inferenceId"]
    }
    assert stack.output_keys() == ["event.csv.out"]


def test_a_notification_without_a_submission_is_published_and_one_for_another_bucket_ignored(
    stack: LocalStack, endpoint: AsyncEndpoint
) -> None:
    """The handler keeps no state: a notification stands on its own."""
    use(stack, endpoint)
    stack.put("unsubmitted.csv", INFERENCE_TEXT.encode())
    endpoint.queue.submit(
        "someone-else-1", f"s3://{stack.input_bucket}/unsubmitted.csv", "text/csv", "text/csv"
    )
    endpoint.queue.submit(
        "outsider-1", f"s3://{stack.input_bucket}/unsubmitted.csv", "text/csv", "text/csv"
    )
    first, second = endpoint.queue.drain()
    async_completion.handler(first.sns_event())
    assert stack.output_keys() == ["unsubmitted.csv.out"]
    foreign = {
        **second.message,
        "requestParameters": {
            **second.message["requestParameters"],
            "inputLocation": "s3://another-bucket/unsubmitted.csv",
        },
    }
    (line,) = async_completion.handler(Notification("success", foreign).sns_event())
    assert line["outcome"] == "ignored"
    assert "not in the input bucket" in line["reason"]


@pytest.fixture
def unreachable(s3_server: MotoServer) -> Iterator[AsyncEndpoint]:
    """An asynchronous endpoint whose container never answers."""
    yield from _endpoint(s3_server, "http://127.0.0.1:9")


def test_a_failure_not_of_the_file_is_submitted_again_then_reported(
    stack: LocalStack, unreachable: AsyncEndpoint
) -> None:
    use(stack, unreachable)
    stack.invoke(stack.put("down.csv", INFERENCE_TEXT.encode()))
    attempts = [unreachable.complete() for _ in range(3)]

    ids = [notification.message["inferenceId"] for (notification,) in attempts]
    assert [i.rsplit("-", 1)[1] for i in ids] == ["1", "2", "3"]
    report = stack.error_report("down.csv")
    assert report["reason"].startswith("the endpoint failed 3 times: ModelError")
    assert unreachable.queue.drain() == [], "no fourth attempt"


def test_an_object_above_the_request_limit_is_reported_without_invoking(
    stack: LocalStack, endpoint: AsyncEndpoint
) -> None:
    use(stack, endpoint, MAX_REQUEST_BYTES="1024")
    stack.invoke(stack.put("big.csv", INFERENCE_TEXT.encode()))
    assert endpoint.queue.drain() == []
    report = stack.error_report("big.csv")
    assert (
        "more than the 1024 bytes the asynchronous endpoint's model server takes"
        in (report["reason"])
    )


def test_s3_failing_under_the_completion_handler_loses_nothing(
    stack: LocalStack, endpoint: AsyncEndpoint, faults: S3Faults
) -> None:
    """Slow-downs reading the result are retried; an outage writing `.out` fails the
    notification, which SNS's retry (or the redrive) then publishes once."""
    use(stack, endpoint, AWS_ENDPOINT_URL_S3=faults.url)
    faults.fail("GET", "/async-inference/results/", 503, times=2)
    faults.fail("PUT", "/late.csv.out", 500, times=100)
    stack.invoke(stack.put("late.csv", INFERENCE_TEXT.encode()))
    (notification,) = endpoint.queue.drain()
    with pytest.raises(Exception, match="InternalError"):
        async_completion.handler(notification.sns_event())
    assert stack.output_keys() == [] and stack.open_uploads() == []

    faults.clear()
    async_completion.handler(notification.sns_event())
    assert stack.output_keys() == ["late.csv.out"]
    assert len([f for f in faults.failed if f.startswith("GET")]) == 2


@pytest.fixture
def large_results(s3_server: MotoServer, trained_model_dir: Path) -> Iterator[AsyncEndpoint]:
    """An asynchronous endpoint whose server takes 100 MB requests, as the serving stack sets."""
    env = {"SAGEMAKER_MAX_PAYLOAD_IN_MB": "100"}
    with start_model_server(trained_model_dir.parent, workers=1, env=env) as server:
        yield from _endpoint(s3_server, server.url)


def test_a_completion_handler_killed_mid_publication_leaves_no_result_and_the_retry_one(
    stack: LocalStack, large_results: AsyncEndpoint, faults: S3Faults, tmp_path: Path
) -> None:
    """Lambda kills the handler at its timeout while `.out` uploads in parts: nothing a
    reader could take for a result is left, and SNS's retry publishes the one `.out`."""
    use(stack, large_results)
    record, records = stack.put_long_file(tmp_path, 25)
    stack.invoke(record)
    (notification,) = large_results.queue.drain()
    assert notification.topic == "success"
    kill_mid_upload(stack, faults, "async_completion.handler", notification.sns_event())
    stack.assert_no_result_but_an_open_upload()

    (line,) = async_completion.handler(notification.sns_event())
    assert (line["outcome"], line["records"]) == ("predictions", records)
    stack.assert_one_complete_result("long.jsonl", records)
