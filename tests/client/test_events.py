"""Event shapes: S3's test event, non-create events, and a record the handler cannot read."""

from __future__ import annotations

import json

import lambda_function
import pytest

from .local_stack import INFERENCE_CSV, LocalStack

INFERENCE_TEXT = INFERENCE_CSV.read_bytes()


def test_s3_test_event_without_records_is_logged_and_ignored(
    stack: LocalStack, capsys: pytest.CaptureFixture[str]
) -> None:
    event = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": stack.input_bucket}

    assert lambda_function.lambda_handler(event, None) == {"objects": []}

    [entry] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert entry["reason"] == "event has no S3 records"


def test_events_that_do_not_create_objects_are_skipped(stack: LocalStack) -> None:
    record = stack.put("removed.csv", INFERENCE_TEXT)
    record["eventName"] = "ObjectRemoved:Delete"

    [line] = stack.invoke(record)["objects"]

    assert (line["outcome"], line["reason"]) == (
        "skipped",
        "event ObjectRemoved:Delete does not create an object",
    )
    assert stack.output_keys() == []


def test_an_unreadable_record_is_raised_after_the_others_are_scored(stack: LocalStack) -> None:
    good = stack.put("good.csv", INFERENCE_TEXT)

    with pytest.raises(lambda_function.TransientFailure, match="event record 1 has no s3"):
        stack.invoke({"eventName": "ObjectCreated:Put"}, good)

    assert stack.output_keys() == ["good.csv.out"]


def test_an_object_deleted_before_processing_is_skipped(stack: LocalStack) -> None:
    record = stack.put("gone.csv", INFERENCE_TEXT)
    stack.s3.delete_object(Bucket=stack.input_bucket, Key="gone.csv")

    [line] = stack.invoke(record)["objects"]

    assert (line["outcome"], line["reason"]) == (
        "skipped",
        "the object was deleted after this event",
    )
