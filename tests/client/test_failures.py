"""Failures: the file's fault gets an error report, anything else is raised for a retry."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import lambda_function
import pytest
from botocore.stub import Stubber
from client_config import load_config
from model_kit.model_io import Model
from object_processor import ObjectProcessor
from s3_events import SourceObject

from benchmarks.client_memory import generate_file

from .local_stack import INFERENCE_CSV, LocalStack, expected_labels, feature_rows

INFERENCE_TEXT = INFERENCE_CSV.read_text()
HEADER_LINE, *DATA_LINES = INFERENCE_TEXT.splitlines()
ROWS = feature_rows(INFERENCE_TEXT)
FAKE_CLIENT = {"region_name": "us-east-1", "aws_access_key_id": "x", "aws_secret_access_key": "x"}


def _csv(lines: list[str], header: str | None = HEADER_LINE) -> bytes:
    return ("\n".join(([header] if header else []) + lines) + "\n").encode()


def test_malformed_record_in_a_later_request_is_reported_with_its_file_record_number(
    stack: LocalStack,
) -> None:
    stack.env["MAX_REQUEST_BYTES"] = "8192"
    stack.apply_env()
    lines = DATA_LINES * 3
    cells = lines[99].split(",")
    cells[4] = "abc"
    lines[99] = ",".join(cells)
    record = stack.put("bad/records.csv", _csv([*lines[:60], "", *lines[60:]]))

    [line] = stack.invoke(record)["objects"]

    report = stack.error_report("bad/records.csv")
    assert report["record"] == 100
    assert report["line"] == 102  # the header and one blank line come before it
    assert report["endpoint_status"] == 400
    assert "mean_smoothness" in report["endpoint_message"]
    assert "'abc'" in report["endpoint_message"]
    assert report["request"] > 1
    assert report["source"] == {
        "bucket": stack.input_bucket,
        "key": "bad/records.csv",
        "version_id": record["s3"]["object"]["versionId"],
        "etag": record["s3"]["object"]["eTag"],
    }
    assert (line["outcome"], line["record"], line["endpoint_status"]) == ("error_report", 100, 400)
    assert stack.output_keys() == ["bad/records.csv.error.json"]
    assert stack.open_uploads() == []


def test_header_that_does_not_match_the_model_is_reported_as_the_header(
    stack: LocalStack,
) -> None:
    names = HEADER_LINE.split(",")
    names[0], names[1] = names[1], names[0]
    record = stack.put("swapped.csv", _csv(DATA_LINES, header=",".join(names)))

    stack.invoke(record)

    report = stack.error_report("swapped.csv")
    assert report["record"] is None
    assert report["line"] == 1
    assert "CSV header" in report["reason"]


def test_malformed_jsonl_line_is_reported_with_record_and_line(stack: LocalStack) -> None:
    lines = [json.dumps([float(v) for v in row]) for row in ROWS[:20]]
    lines[6] = lines[6][:-1]  # drop the closing bracket
    stack.invoke(stack.put("broken.jsonl", ("\n\n".join(lines)).encode()))

    report = stack.error_report("broken.jsonl")
    assert (report["record"], report["line"], report["endpoint_status"]) == (7, 13, 400)


def test_unparseable_json_document_is_reported_without_calling_the_endpoint(
    stack: LocalStack,
) -> None:
    document = '{"instances": [[1, 2], [3, 4]'  # never closed
    stack.invoke(stack.put("cut.json", document.encode()))

    report = stack.error_report("cut.json")
    assert "malformed JSON document" in report["reason"]
    assert report["endpoint_status"] is None
    assert stack.output_keys() == ["cut.json.error.json"]


def test_record_larger_than_the_request_limit_is_named(stack: LocalStack) -> None:
    stack.env["MAX_REQUEST_BYTES"] = "2048"
    stack.apply_env()
    huge = ",".join(["1.0"] * 30) + "," + "9" * 3000
    stack.invoke(stack.put("huge.csv", _csv([*DATA_LINES[:3], huge, *DATA_LINES[3:6]])))

    report = stack.error_report("huge.csv")
    assert (report["record"], report["line"]) == (4, 5)
    assert "larger than the request limit" in report["reason"]
    assert stack.adapter.invocations == []


def test_unsupported_extension_gets_an_error_report(stack: LocalStack) -> None:
    stack.invoke(stack.put("notes/readme.TXT", b"hello"))

    report = stack.error_report("notes/readme.TXT")
    assert "unsupported file extension '.txt'" in report["reason"]
    assert stack.adapter.invocations == []


def test_folder_markers_and_empty_objects_are_skipped_with_a_logged_reason(
    stack: LocalStack, capsys: pytest.CaptureFixture[str]
) -> None:
    records = [stack.put("incoming/", b""), stack.put("empty.csv", b"")]

    result = stack.invoke(*records)

    assert [(o["outcome"], o["reason"]) for o in result["objects"]] == [
        ("skipped", "folder marker (key ends with '/')"),
        ("skipped", "empty object"),
    ]
    assert stack.output_keys() == []
    logged = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [entry["reason"] for entry in logged] == [o["reason"] for o in result["objects"]]


def test_one_structured_log_line_per_object(
    stack: LocalStack, capsys: pytest.CaptureFixture[str]
) -> None:
    stack.invoke(stack.put("logged.csv", INFERENCE_TEXT.encode()))

    [entry] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert entry["key"] == "logged.csv"
    assert entry["bytes"] == len(INFERENCE_TEXT.encode())
    assert (entry["records"], entry["requests"], entry["outcome"]) == (len(ROWS), 1, "predictions")
    assert entry["latency_ms"] > 0


def test_an_error_report_replaces_an_earlier_output_and_vice_versa(stack: LocalStack) -> None:
    stack.invoke(stack.put("flip.csv", INFERENCE_TEXT.encode()))
    assert stack.output_keys() == ["flip.csv.out"]

    stack.invoke(stack.put("flip.csv", _csv(["1,2,3"])))
    assert stack.output_keys() == ["flip.csv.error.json"]

    stack.invoke(stack.put("flip.csv", INFERENCE_TEXT.encode()))
    assert stack.output_keys() == ["flip.csv.out"]


def test_throttled_endpoint_is_retried_by_botocore_and_scores_the_file(
    stack: LocalStack, model: Model
) -> None:
    stack.adapter.faults.throttle(2)

    stack.invoke(stack.put("throttled.csv", INFERENCE_TEXT.encode()))

    assert stack.read("throttled.csv.out")[0].decode().splitlines() == expected_labels(model, ROWS)
    assert [i.status for i in stack.adapter.invocations] == [400, 400, 200]


def test_unavailable_endpoint_raises_after_the_other_records_are_done(
    stack: LocalStack, model: Model
) -> None:
    stack.env["REQUEST_CONCURRENCY"] = "1"
    stack.apply_env()
    first = stack.put("first.csv", INFERENCE_TEXT.encode())
    second = stack.put("second.csv", INFERENCE_TEXT.encode())
    stack.adapter.faults.unavailable(3)  # MAX_ATTEMPTS=3: every attempt for first.csv

    with pytest.raises(lambda_function.TransientFailure, match=r"1 of 2 objects failed.*first.csv"):
        stack.invoke(first, second)

    assert [i.status for i in stack.adapter.invocations] == [503, 503, 503, 200]
    assert stack.output_keys() == ["second.csv.out"]
    assert stack.read("second.csv.out")[0].decode().splitlines() == expected_labels(model, ROWS)


def test_unreachable_model_container_raises_and_leaves_no_output(stack: LocalStack) -> None:
    real_container = stack.adapter.container
    stack.adapter.container = stack.adapter.container._replace(netloc="127.0.0.1:9")
    try:
        with pytest.raises(lambda_function.TransientFailure, match="ModelError"):
            stack.invoke(stack.put("down.csv", INFERENCE_TEXT.encode()))
    finally:
        stack.adapter.container = real_container

    assert stack.output_keys() == []
    assert stack.open_uploads() == []


def test_a_role_without_list_bucket_gets_a_clear_error_not_a_bare_403() -> None:
    config = load_config({"INFERENCE_OUTPUT_BUCKET": "out-bucket", "MODEL_ENDPOINT": "endpoint"})
    s3 = boto3.client(
        "s3", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    processor = ObjectProcessor(config, s3, runtime=None)
    source = SourceObject("in-bucket", "gone.csv", 10, "v1", "etag", "ObjectCreated:Put")
    with Stubber(s3) as stub:
        stub.add_client_error("head_object", service_error_code="403", http_status_code=403)
        with pytest.raises(
            PermissionError, match=r"needs s3:GetObject and s3:ListBucket on bucket in-bucket"
        ):
            processor.process(source)


class _LambdaContext:
    """The part of Lambda's context object the handler reads."""

    def __init__(self, remaining_ms: int) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def test_scoring_stops_before_the_function_timeout_and_aborts_the_upload(
    stack: LocalStack,
) -> None:
    record = stack.put("late.csv", INFERENCE_TEXT.encode())
    almost_out_of_time = _LambdaContext(int(lambda_function.TIMEOUT_MARGIN_SECONDS * 1000) - 1)

    with pytest.raises(lambda_function.TransientFailure, match="TimeoutError: stopped after 0"):
        lambda_function.lambda_handler({"Records": [record]}, almost_out_of_time)

    assert stack.output_keys() == []


def test_enough_time_left_scores_normally(stack: LocalStack) -> None:
    record = stack.put("on-time.csv", INFERENCE_TEXT.encode())

    lambda_function.lambda_handler({"Records": [record]}, _LambdaContext(300_000))

    assert stack.output_keys() == ["on-time.csv.out"]


def test_a_bad_record_after_multipart_parts_were_uploaded_aborts_the_upload(
    stack: LocalStack, tmp_path: Path
) -> None:
    stack.env["OUTPUT_PART_BYTES"] = str(5 * 1024 * 1024)
    stack.apply_env()
    data_file = tmp_path / "long.jsonl"
    records = len(generate_file(data_file, 25, "jsonl"))
    with data_file.open("a") as out:
        out.write('[1.0, "x"]\n')
    stack.s3.upload_file(str(data_file), stack.input_bucket, "long.jsonl")
    size = data_file.stat().st_size

    [line] = stack.invoke(stack.record("long.jsonl", size, None, None))["objects"]

    assert line["outcome"] == "error_report"
    assert stack.error_report("long.jsonl")["record"] == records + 1
    assert line["output_bytes"] > 5 * 1024 * 1024  # parts had gone up before the bad record
    assert stack.open_uploads() == []
    assert stack.output_keys() == ["long.jsonl.error.json"]
