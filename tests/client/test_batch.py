"""Files above the batch threshold: the client starts a SageMaker batch transform job, and the
transform handler turns the job's state-change event into the same `<key>.out` or
`<key>.error.json` as the streaming path writes.

SageMaker's control plane and its transform worker are played by `local.batch_transform` in
front of the real model server, against moto's S3; EventBridge is played by the test, which
delivers each state-change event when it chooses: once, twice, early, or never.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import lambda_function
import pytest
import transform_completion
from model_kit.model_io import Model

from local.batch_transform import BatchTransform, JobEvent
from local.runtime_adapter import RuntimeAdapter
from local.s3_faults import S3Faults

from .local_stack import INFERENCE_CSV, LocalStack, expected_labels, feature_rows, kill_mid_upload

INFERENCE_TEXT = INFERENCE_CSV.read_text()
HEADER, *LINES = INFERENCE_TEXT.splitlines()
ROWS = feature_rows(INFERENCE_TEXT)
# Far below the sample file, so every test file goes to batch transform.
THRESHOLD = 1000
JOB_PREFIX = "test"
# About 2.3 MB: three mini-batches of at most 1 MB each.
REPEATS = 100
BIG_CSV = "\n".join([HEADER, *LINES * REPEATS, ""]).encode()
BIG_JSON_LINES = "".join(json.dumps([float(v) for v in row]) + "\n" for row in ROWS * REPEATS)


@dataclass
class Transforms:
    service: BatchTransform
    models_bucket: str

    def complete(self, deliveries: int = 1) -> list[JobEvent]:
        """Let SageMaker finish every job started, and EventBridge deliver each event."""
        events = self.service.drain()
        for event in events:
            for _ in range(deliveries):
                transform_completion.handler(event.event)
        return events


def _transforms(stack: LocalStack, container_url: str) -> Iterator[Transforms]:
    models = f"models-{uuid.uuid4().hex[:12]}"
    stack.s3.create_bucket(Bucket=models)
    service = BatchTransform(stack.s3, container_url, stack.env["MODEL_ENDPOINT"])
    with service.start():
        stack.env.update(
            {
                "AWS_ENDPOINT_URL_SAGEMAKER": service.url,
                "BATCH_THRESHOLD_BYTES": str(THRESHOLD),
                "TRANSFORM_STAGING": f"s3://{models}/batch-transform/",
                "TRANSFORM_JOB_PREFIX": JOB_PREFIX,
                "TRANSFORM_INSTANCE_TYPE": "ml.m5.large",
                "TRANSFORM_MAX_PAYLOAD_MB": "1",
            }
        )
        stack.apply_env()
        transform_completion._publisher.cache_clear()
        yield Transforms(service, models)
    transform_completion._publisher.cache_clear()


@pytest.fixture
def transforms(stack: LocalStack, runtime_adapter: RuntimeAdapter) -> Iterator[Transforms]:
    yield from _transforms(stack, f"http://{runtime_adapter.container.netloc}")


@pytest.fixture
def unreachable(stack: LocalStack) -> Iterator[Transforms]:
    """Jobs whose container never answers."""
    yield from _transforms(stack, "http://127.0.0.1:9")


def streamed(stack: LocalStack, key: str, body: bytes) -> bytes:
    """The `.out` the streaming path writes for `body` (the threshold lifted for one call)."""
    stack.env["BATCH_THRESHOLD_BYTES"] = str(len(body))
    stack.apply_env()
    try:
        stack.invoke(stack.put(key, body))
    finally:
        stack.env["BATCH_THRESHOLD_BYTES"] = str(THRESHOLD)
        stack.apply_env()
    return stack.read(f"{key}.out")[0]


@pytest.mark.parametrize(("name", "body"), [("big.csv", BIG_CSV), ("big.jsonl", BIG_JSON_LINES)])
def test_a_big_file_gets_the_same_output_as_when_streamed(
    stack: LocalStack, transforms: Transforms, name: str, body: bytes
) -> None:
    expected = streamed(stack, f"streamed/{name}", body)

    outcome = stack.invoke(stack.put(f"batch/{name}", body))
    assert stack.output_keys() == [f"streamed/{name}.out"], "nothing is written at the start"
    (event,) = transforms.complete()

    batches = [size for job, size in transforms.service.invocations if job == event.job_name]
    assert len(batches) == 3 and max(batches) <= 1024 * 1024, batches
    assert stack.read(f"batch/{name}.out")[0] == expected
    (started,) = outcome["objects"]
    assert (started["outcome"], started["transform_job"]) == ("submitted", event.job_name)
    job = transforms.service.job(event.job_name)
    assert job["TransformInput"]["SplitType"] == "Line"
    assert (job["BatchStrategy"], job["TransformOutput"]["AssembleWith"]) == ("MultiRecord", "Line")


def test_the_output_names_the_source_the_endpoint_and_the_record_count(
    stack: LocalStack, transforms: Transforms, model: Model
) -> None:
    put = stack.put("named.csv", INFERENCE_TEXT.encode())
    stack.invoke(put)
    transforms.complete()
    body, metadata = stack.read("named.csv.out")
    assert body.decode().splitlines() == expected_labels(model, ROWS)
    assert metadata["source-key"] == "named.csv"
    assert metadata["source-version-id"] == put["s3"]["object"]["versionId"]
    assert metadata["record-count"] == str(len(ROWS))
    assert metadata["endpoint"] == stack.env["MODEL_ENDPOINT"]


def test_a_small_file_still_streams(stack: LocalStack, transforms: Transforms) -> None:
    stack.invoke(stack.put("small.csv", f"{HEADER}\n{LINES[0]}\n".encode()))
    assert stack.output_keys() == ["small.csv.out"]
    assert transforms.service.drain() == []


def test_a_big_json_document_gets_an_error_report_that_says_to_use_json_lines(
    stack: LocalStack, transforms: Transforms
) -> None:
    document = json.dumps({"instances": [[float(v) for v in row] for row in ROWS]}).encode()
    stack.invoke(stack.put("big.json", document))
    report = stack.error_report("big.json")
    assert f"is {len(document)} bytes, more than the {THRESHOLD} bytes" in report["reason"]
    assert "write it as JSON Lines (.jsonl" in report["reason"]
    assert stack.output_keys() == ["big.json.error.json"]
    assert transforms.service.drain() == [], "no job was started"


def test_the_same_s3_event_delivered_twice_starts_one_job_and_leaves_one_result(
    stack: LocalStack, transforms: Transforms
) -> None:
    record = stack.put("twice.csv", INFERENCE_TEXT.encode())
    first = stack.invoke(record)["objects"][0]
    second = stack.invoke(record)["objects"][0]
    assert first["transform_job"] == second["transform_job"]
    assert (first["already_started"], second["already_started"]) == (False, True)
    transforms.complete(deliveries=2)  # EventBridge delivers at least once, too
    assert stack.output_keys() == ["twice.csv.out"]


def test_an_event_before_the_job_ended_is_ignored_and_one_for_a_job_not_staged_too(
    stack: LocalStack, transforms: Transforms
) -> None:
    stack.invoke(stack.put("early.csv", INFERENCE_TEXT.encode()))
    (event,) = transforms.service.drain()
    running = {**event.event, "detail": {**event.event["detail"]}}
    transforms.service._jobs[event.job_name]["TransformJobStatus"] = "InProgress"
    assert transform_completion.handler(running)["outcome"] == "ignored"
    transforms.service._jobs[event.job_name]["TransformJobStatus"] = "Completed"
    assert transform_completion.handler(event.event)["outcome"] == "predictions"

    stack.s3.delete_object(
        Bucket=transforms.models_bucket, Key=f"batch-transform/{event.job_name}/request.json"
    )
    line = transform_completion.handler(event.event)
    assert line["outcome"] == "ignored"
    assert "no request.json" in line["reason"]
    assert stack.output_keys() == ["early.csv.out"]


def test_a_record_the_model_rejects_gets_an_error_report_that_points_to_the_jobs_log(
    stack: LocalStack, transforms: Transforms
) -> None:
    bad = "\n".join([HEADER, *LINES[:3], LINES[3].replace(LINES[3].split(",")[2], "abc"), ""])
    stack.invoke(stack.put("bad.csv", bad.encode()))
    (event,) = transforms.complete()
    report = stack.error_report("bad.csv")
    assert report["reason"].startswith(f"the batch transform job {event.job_name} failed: ")
    assert "ClientError" in report["reason"]
    assert (
        report["logs"]
        == f"CloudWatch log group /aws/sagemaker/TransformJobs, streams {event.job_name}/*"
    )
    (message,) = transforms.service.logs[event.job_name]
    assert "'abc'" in message
    assert stack.output_keys() == ["bad.csv.error.json"]


def test_a_job_that_sagemaker_fails_is_started_again_and_then_reported(
    stack: LocalStack, transforms: Transforms, model: Model
) -> None:
    transforms.service.fail_next(1, "CapacityError: Unable to provision requested ML compute")
    stack.invoke(stack.put("retried.csv", INFERENCE_TEXT.encode()))
    (failed,) = transforms.complete()
    (completed,) = transforms.complete()
    assert (failed.job_name[-2:], completed.job_name[-2:]) == ("-1", "-2")
    assert stack.read("retried.csv.out")[0].decode().splitlines() == expected_labels(model, ROWS)

    transforms.service.fail_next(3, "InternalServerError: We encountered an internal error.")
    stack.invoke(stack.put("lost.csv", INFERENCE_TEXT.encode()))
    for _ in range(3):
        transforms.complete()
    report = stack.error_report("lost.csv")
    assert "failed 3 times; the last time: InternalServerError" in report["reason"]
    assert transforms.service.drain() == [], "no fourth job"
    assert stack.output_keys() == ["lost.csv.error.json", "retried.csv.out"]


def test_a_mini_batch_the_container_fails_is_retried_by_sagemaker(
    stack: LocalStack, transforms: Transforms, model: Model
) -> None:
    transforms.service.fail_invocations(2, status=503)
    stack.invoke(stack.put("flaky.csv", INFERENCE_TEXT.encode()))
    (event,) = transforms.complete()
    assert transforms.service.job(event.job_name)["TransformJobStatus"] == "Completed"
    assert stack.read("flaky.csv.out")[0].decode().splitlines() == expected_labels(model, ROWS)


def test_an_input_overwritten_while_its_job_ran_is_published_only_by_the_newer_job(
    stack: LocalStack, transforms: Transforms
) -> None:
    old = stack.put("moved.csv", INFERENCE_TEXT.encode())
    stack.invoke(old)
    newer_body = "\n".join([HEADER, *LINES[:2] * 20, ""]).encode()
    newer = stack.put("moved.csv", newer_body)
    stack.invoke(newer)
    lines = [transform_completion.handler(event.event) for event in transforms.service.drain()]
    assert sorted(line["outcome"] for line in lines) == ["predictions", "skipped"]
    _, metadata = stack.read("moved.csv.out")
    assert metadata["source-version-id"] == newer["s3"]["object"]["versionId"]


@pytest.mark.parametrize(
    ("method", "where"),
    [("GET", "/request.json"), ("PUT", "/s3.csv.out"), ("GET", "/output/")],
)
def test_s3_failing_under_the_transform_handler_fails_the_event_and_its_retry_publishes_once(
    stack: LocalStack, transforms: Transforms, faults: S3Faults, method: str, where: str
) -> None:
    transform_completion._publisher.cache_clear()
    faults.fail(method, where, 503, times=100)
    stack.invoke(stack.put("s3.csv", INFERENCE_TEXT.encode()))
    (event,) = transforms.service.drain()
    with pytest.raises(Exception, match="SlowDown"):
        transform_completion.handler(event.event)
    assert stack.output_keys() == []
    assert stack.open_uploads() == []
    faults.clear()
    transform_completion.handler(event.event)
    assert stack.output_keys() == ["s3.csv.out"]


def test_s3_failing_under_the_client_fails_the_event_before_any_job_starts(
    stack: LocalStack, transforms: Transforms, faults: S3Faults
) -> None:
    faults.fail("PUT", "/request.json", 503, times=100)
    record = stack.put("staged.csv", INFERENCE_TEXT.encode())
    with pytest.raises(lambda_function.TransientFailure, match="SlowDown"):
        stack.invoke(record)
    assert transforms.service.drain() == []
    faults.clear()
    stack.invoke(record)
    transforms.complete()
    assert stack.output_keys() == ["staged.csv.out"]


def test_sagemakers_api_throttling_is_retried(stack: LocalStack, transforms: Transforms) -> None:
    transforms.service.throttle(2)
    stack.invoke(stack.put("throttled.csv", INFERENCE_TEXT.encode()))
    transforms.complete()
    assert stack.output_keys() == ["throttled.csv.out"]
    assert transforms.service.throttled() is False, "both throttles were met"


def test_jobs_whose_container_never_answers_are_started_again_then_reported(
    stack: LocalStack, unreachable: Transforms
) -> None:
    stack.invoke(stack.put("down.csv", INFERENCE_TEXT.encode()))
    for attempt in range(1, 4):
        (event,) = unreachable.complete()
        assert event.job_name.endswith(f"-{attempt}")
        assert "did not answer" in unreachable.service.logs[event.job_name][0]
    report = stack.error_report("down.csv")
    assert "failed 3 times; the last time: AlgorithmError" in report["reason"]
    assert stack.output_keys() == ["down.csv.error.json"]


def test_a_transform_handler_killed_mid_publication_leaves_no_result_and_the_retry_one(
    stack: LocalStack, transforms: Transforms, faults: S3Faults, tmp_path: Path
) -> None:
    """Lambda kills the handler at its timeout while `.out` uploads in parts: nothing a
    reader could take for a result is left, and EventBridge's retry publishes the one `.out`."""
    record, records = stack.put_long_file(tmp_path, 25)
    stack.invoke(record)
    (event,) = transforms.service.drain()
    kill_mid_upload(stack, faults, "transform_completion.handler", event.event)
    stack.assert_no_result_but_an_open_upload()

    line = transform_completion.handler(event.event)
    assert (line["outcome"], line["records"]) == ("predictions", records)
    stack.assert_one_complete_result("long.jsonl", records)
