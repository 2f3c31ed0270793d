"""A 100 MiB object is streamed: bounded memory in a separate process, every record scored.

Measured in a child process (a cold start, like Lambda) from its ``VmHWM``.
About 15 s on 2 cores, generation and checks included.
"""

from __future__ import annotations

import json
from pathlib import Path

from model_kit.model_io import Model

from benchmarks.client_memory import (
    generate_file,
    run_handler_in_child,
    sample_rows,
)
from local.credentials import FAKE_CREDENTIALS

from .local_stack import LocalStack, expected_labels

PEAK_RSS_LIMIT_MB = 256


def test_100_mib_jsonl_is_scored_in_order_with_bounded_memory(
    stack: LocalStack, model: Model, tmp_path: Path
) -> None:
    data_file = tmp_path / "large.jsonl"
    order = generate_file(data_file, 100, "jsonl")
    size = data_file.stat().st_size
    stack.s3.upload_file(str(data_file), stack.input_bucket, "big/large.jsonl")
    version = stack.s3.head_object(Bucket=stack.input_bucket, Key="big/large.jsonl")["VersionId"]
    data_file.unlink()
    event = {"Records": [stack.record("big/large.jsonl", size, version, None)]}

    measured = run_handler_in_child(event, {**FAKE_CREDENTIALS, **stack.env})

    [outcome] = measured["result"]["objects"]
    assert (outcome["outcome"], outcome["records"]) == ("predictions", len(order))
    assert outcome["requests"] >= 20
    assert measured["max_rss_mb"] <= PEAK_RSS_LIMIT_MB, measured
    body, metadata = stack.read("big/large.jsonl.out")
    assert metadata["record-count"] == str(len(order))
    # A multipart upload completed, then the self-copy that adds the record count.
    versions = stack.s3.list_object_versions(Bucket=stack.output_bucket)["Versions"]
    assert len(versions) == 2
    assert stack.open_uploads() == []
    labels_of_sample = expected_labels(model, sample_rows())
    labels = [json.loads(line)["label"] for line in body.splitlines()]
    assert labels == [labels_of_sample[i] for i in order]
