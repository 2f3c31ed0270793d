"""S3 failing under the client: slow-downs and errors on read and write, a dropped connection,
an outage longer than the retries, and the handler killed mid-file. Each input ends with
exactly one result, and nothing is left half-written where a reader could take it for one.

S3 is moto's server behind `local.s3_faults`, which answers chosen calls with S3's own errors.
"""

from __future__ import annotations

from pathlib import Path

import lambda_function
import pytest
from model_kit.model_io import Model

from local.s3_faults import S3Faults

from .local_stack import (
    INFERENCE_CSV,
    LocalStack,
    expected_labels,
    feature_rows,
    kill_mid_upload,
)

INFERENCE_TEXT = INFERENCE_CSV.read_text()
ROWS = feature_rows(INFERENCE_TEXT)


def scored(stack: LocalStack, key: str, model: Model) -> None:
    assert stack.output_keys() == [f"{key}.out"]
    assert stack.read(f"{key}.out")[0].decode().splitlines() == expected_labels(model, ROWS)


@pytest.mark.parametrize(
    ("method", "where", "status"),
    [
        ("GET", "/read.csv", 503),  # reading the input: SlowDown
        ("PUT", "/read.csv.out", 500),  # writing the output: InternalError
        ("PUT", "/read.csv.out", 0),  # writing the output: the connection drops
        ("HEAD", "/read.csv", 503),  # checking the input's current version
    ],
)
def test_s3_errors_within_the_retries_still_score_the_file(
    stack: LocalStack, faults: S3Faults, model: Model, method: str, where: str, status: int
) -> None:
    faults.fail(method, where, status, times=2)
    stack.invoke(stack.put("read.csv", INFERENCE_TEXT.encode()))
    assert len(faults.failed) == 2, faults.seen
    scored(stack, "read.csv", model)


def test_an_s3_outage_longer_than_the_retries_fails_the_event_and_its_retry_scores_it_once(
    stack: LocalStack, faults: S3Faults, model: Model
) -> None:
    faults.fail("GET", "/outage.csv", 503, times=100)
    record = stack.put("outage.csv", INFERENCE_TEXT.encode())
    with pytest.raises(lambda_function.TransientFailure, match="SlowDown"):
        stack.invoke(record)
    assert stack.output_keys() == [] and stack.open_uploads() == []

    faults.clear()
    stack.invoke(record)  # Lambda's retry of the same event
    scored(stack, "outage.csv", model)


def test_a_handler_killed_mid_file_leaves_no_result_and_the_retry_writes_exactly_one(
    stack: LocalStack, faults: S3Faults, tmp_path: Path
) -> None:
    """Lambda kills a function at its timeout without a word: the multipart upload it had
    started stays invisible (the bucket's lifecycle aborts it after 7 days), and the retry
    writes the one `.out`."""
    record, records = stack.put_long_file(tmp_path, 30)
    kill_mid_upload(stack, faults, "lambda_function.lambda_handler", {"Records": [record]})
    stack.assert_no_result_but_an_open_upload()

    [line] = stack.invoke(record)["objects"]
    assert line["outcome"] == "predictions" and line["records"] == records
    stack.assert_one_complete_result("long.jsonl", records)
