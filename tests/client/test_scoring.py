"""Objects in, predictions out: every format, awkward keys, big files, reprocessing."""

from __future__ import annotations

import json

import numpy as np
from model_kit.model_io import Model

from .local_stack import ENDPOINT_NAME, INFERENCE_CSV, LocalStack, expected_labels, feature_rows

INFERENCE_TEXT = INFERENCE_CSV.read_text()
ROWS = feature_rows(INFERENCE_TEXT)
HEADER = INFERENCE_TEXT.splitlines()[0].split(",")


def test_csv_with_header_gets_one_label_per_record_and_source_metadata(
    stack: LocalStack, model: Model
) -> None:
    record = stack.put("batch/inference.csv", INFERENCE_TEXT.encode())

    result = stack.invoke(record)

    body, metadata = stack.read("batch/inference.csv.out")
    assert body.decode().splitlines() == expected_labels(model, ROWS)
    head = stack.s3.head_object(Bucket=stack.input_bucket, Key="batch/inference.csv")
    assert metadata == {
        "source-bucket": stack.input_bucket,
        "source-key": "batch/inference.csv",
        "source-version-id": head["VersionId"],
        "source-etag": head["ETag"].strip('"'),
        "endpoint": ENDPOINT_NAME,
        "record-count": str(len(ROWS)),
    }
    [line] = result["objects"]
    assert (line["outcome"], line["records"], line["requests"]) == ("predictions", len(ROWS), 1)
    assert [i.content_type for i in stack.adapter.invocations] == ["text/csv"]
    assert [i.accept for i in stack.adapter.invocations] == ["text/csv"]


def test_jsonl_of_lists_gets_one_prediction_object_per_line(
    stack: LocalStack, model: Model
) -> None:
    lines = "".join(json.dumps([float(v) for v in row]) + "\n" for row in ROWS)
    stack.invoke(stack.put("in.JSONL", lines.encode()))

    body, metadata = stack.read("in.JSONL.out")
    predictions = [json.loads(line) for line in body.decode().splitlines()]
    assert [p["label"] for p in predictions] == expected_labels(model, ROWS)
    matrix = np.array(ROWS, dtype=np.float64)
    expected_proba = model.predict_proba(matrix)
    got = [[p["probabilities"][str(c)] for c in model.classes] for p in predictions]
    np.testing.assert_allclose(got, expected_proba, rtol=1e-9)
    assert metadata["record-count"] == str(len(ROWS))
    assert stack.adapter.invocations[0].content_type == "application/jsonlines"


def test_json_document_of_objects_keyed_by_feature_name(stack: LocalStack, model: Model) -> None:
    instances = [dict(zip(HEADER, map(float, row), strict=True)) for row in ROWS]
    document = json.dumps({"model": "ignored", "instances": instances}, indent=2)
    stack.invoke(stack.put("in.json", document.encode()))

    body, _ = stack.read("in.json.out")
    predictions = json.loads(body)["predictions"]
    assert [p["label"] for p in predictions] == expected_labels(model, ROWS)
    assert stack.adapter.invocations[0].content_type == "application/json"


def test_json_bare_list_split_across_requests_keeps_order(stack: LocalStack, model: Model) -> None:
    stack.env["MAX_REQUEST_BYTES"] = "4096"
    stack.apply_env()
    document = json.dumps([[float(v) for v in row] for row in ROWS])
    [line] = stack.invoke(stack.put("list.json", document.encode()))["objects"]

    predictions = json.loads(stack.read("list.json.out")[0])["predictions"]
    assert [p["label"] for p in predictions] == expected_labels(model, ROWS)
    assert line["requests"] == len(stack.adapter.invocations) > 5
    assert max(i.body_bytes for i in stack.adapter.invocations) <= 4096


def test_keys_with_spaces_and_non_ascii_arrive_encoded_and_are_decoded(
    stack: LocalStack, model: Model
) -> None:
    key = "daily runs/2026 Nov/résumé données + plus (1).csv"
    record = stack.put(key, INFERENCE_TEXT.encode())
    assert "+" in record["s3"]["object"]["key"] and "%C3%A9" in record["s3"]["object"]["key"]

    stack.invoke(record)

    assert stack.output_keys() == [key + ".out"]
    body, metadata = stack.read(key + ".out")
    assert body.decode().splitlines() == expected_labels(model, ROWS)
    assert metadata["source-key"] == (
        "daily%20runs/2026%20Nov/r%C3%A9sum%C3%A9%20donn%C3%A9es%20%2B%20plus%20%281%29.csv"
    )


def test_every_record_of_a_multi_record_event_is_handled(stack: LocalStack, model: Model) -> None:
    csv_rows = "\n".join(",".join(row) for row in ROWS[:10])
    jsonl_rows = "\n".join(json.dumps([float(v) for v in row]) for row in ROWS[10:30])
    records = [
        stack.put("a.csv", csv_rows.encode()),
        stack.put("b.jsonl", jsonl_rows.encode()),
        stack.put("c.txt", b"not a supported type"),
        stack.put("folder/", b""),
    ]

    result = stack.invoke(*records)

    assert [o["outcome"] for o in result["objects"]] == [
        "predictions",
        "predictions",
        "error_report",
        "skipped",
    ]
    assert stack.output_keys() == ["a.csv.out", "b.jsonl.out", "c.txt.error.json"]
    assert stack.read("a.csv.out")[0].decode().splitlines() == expected_labels(model, ROWS[:10])
    jsonl_out = stack.read("b.jsonl.out")[0].decode().splitlines()
    assert [json.loads(x)["label"] for x in jsonl_out] == expected_labels(model, ROWS[10:30])


def test_csv_above_6_mb_is_split_into_requests_with_order_and_count_preserved(
    stack: LocalStack, model: Model
) -> None:
    rng = np.random.default_rng(7)
    order = np.concatenate([rng.permutation(len(ROWS)) for _ in range(300)])
    rows = [ROWS[i] for i in order]
    text = ",".join(HEADER) + "\n" + "".join(",".join(row) + "\r\n" for row in rows)
    assert len(text) > 6 * 1024 * 1024

    [line] = stack.invoke(stack.put("big.csv", text.encode()))["objects"]

    labels = stack.read("big.csv.out")[0].decode().splitlines()
    assert len(labels) == len(rows) == line["records"]
    assert labels == expected_labels(model, rows)
    sizes = [i.body_bytes for i in stack.adapter.invocations]
    assert len(sizes) == line["requests"] == 2
    assert max(sizes) <= 5 * 1024 * 1024


def test_reprocessing_the_same_version_rewrites_the_same_output(stack: LocalStack) -> None:
    record = stack.put("again.csv", INFERENCE_TEXT.encode())
    stack.invoke(record)
    first = stack.read("again.csv.out")

    stack.invoke(record)

    assert stack.read("again.csv.out") == first
    versions = stack.s3.list_object_versions(Bucket=stack.output_bucket)
    assert len(versions["Versions"]) == 2
    assert "DeleteMarkers" not in versions


def test_an_event_for_an_overwritten_version_does_not_replace_the_newer_output(
    stack: LocalStack, model: Model
) -> None:
    old = stack.put("data.csv", INFERENCE_TEXT.encode())
    new_rows = ROWS[:5]
    new = stack.put("data.csv", ("\n".join(",".join(r) for r in new_rows)).encode())
    stack.invoke(new)

    [line] = stack.invoke(old)["objects"]

    assert line["outcome"] == "skipped"
    assert "superseded" in line["reason"]
    body, metadata = stack.read("data.csv.out")
    assert body.decode().splitlines() == expected_labels(model, new_rows)
    assert metadata["source-version-id"] == new["s3"]["object"]["versionId"]


def test_a_long_non_ascii_key_still_fits_s3_metadata(stack: LocalStack, model: Model) -> None:
    key = "é" * 500 + ".csv"  # 1004 bytes: a valid key, 3,000 characters percent-encoded

    stack.invoke(stack.put(key, INFERENCE_TEXT.encode()))

    body, metadata = stack.read(key + ".out")
    assert body.decode().splitlines() == expected_labels(model, ROWS)
    assert metadata["source-key-truncated"] == "true"
    assert metadata["source-key"].startswith("%C3%A9%C3%A9")
