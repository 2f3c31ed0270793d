"""Helpers of the client tests: the local stack of one test and the expected answers."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lambda_function
import numpy as np
import pytest
from model_kit.model_io import Model

from benchmarks.client_memory import generate_file
from local.runtime_adapter import RuntimeAdapter
from local.s3_event import object_created_record
from local.s3_faults import S3Faults

REPO_ROOT = Path(__file__).resolve().parents[2]
INFERENCE_CSV = REPO_ROOT / "data" / "inference" / "inference.csv"
ENDPOINT_NAME = "inference-endpoint"


def feature_rows(csv_text: str) -> list[list[str]]:
    """Data rows of a CSV text with a header row, as the cells' original strings."""
    return list(csv.reader(io.StringIO(csv_text)))[1:]


def expected_labels(model: Model, rows: list[list[Any]]) -> list[str]:
    matrix = np.array([[float(v) for v in row] for row in rows], dtype=np.float64)
    return [str(label) for label in model.predict_labels(model.predict_proba(matrix))]


@dataclass
class LocalStack:
    """Buckets of one test, and the helpers to upload objects and read results."""

    s3: Any
    adapter: RuntimeAdapter
    input_bucket: str
    output_bucket: str
    env: dict[str, str]
    _patch: pytest.MonkeyPatch

    def apply_env(self) -> None:
        """Set ``env`` as the function's environment and start cold (config is read once)."""
        for name, value in self.env.items():
            self._patch.setenv(name, value)
        lambda_function._processor.cache_clear()

    def put(self, key: str, body: bytes) -> dict[str, Any]:
        """Upload ``key`` and return the S3 event record S3 would send for it."""
        response = self.s3.put_object(Bucket=self.input_bucket, Key=key, Body=body)
        return self.record(key, len(body), response.get("VersionId"), response["ETag"])

    def record(
        self, key: str, size: int, version_id: str | None, etag: str | None
    ) -> dict[str, Any]:
        return object_created_record(self.input_bucket, key, size, etag=etag, version_id=version_id)

    def invoke(self, *records: dict[str, Any]) -> dict[str, Any]:
        """Run the handler on one event holding ``records``."""
        return lambda_function.lambda_handler({"Records": list(records)}, None)

    def output_keys(self) -> list[str]:
        listing = self.s3.list_objects_v2(Bucket=self.output_bucket)
        return sorted(item["Key"] for item in listing.get("Contents", []))

    def read(self, key: str) -> tuple[bytes, dict[str, str]]:
        response = self.s3.get_object(Bucket=self.output_bucket, Key=key)
        return response["Body"].read(), response["Metadata"]

    def error_report(self, key: str) -> dict[str, Any]:
        return json.loads(self.read(key + ".error.json")[0])

    def open_uploads(self) -> list[dict[str, Any]]:
        return self.s3.list_multipart_uploads(Bucket=self.output_bucket).get("Uploads", [])

    def put_long_file(self, folder: Path, megabytes: int) -> tuple[dict[str, Any], int]:
        """``long.jsonl``, generated and uploaded with `.out` set to upload in 5 MiB parts:
        the S3 event record and the number of records."""
        self.env["OUTPUT_PART_BYTES"] = str(5 * 1024 * 1024)
        self.apply_env()
        data_file = folder / "long.jsonl"
        records = len(generate_file(data_file, megabytes, "jsonl"))
        self.s3.upload_file(str(data_file), self.input_bucket, "long.jsonl")
        head = self.s3.head_object(Bucket=self.input_bucket, Key="long.jsonl")
        size = data_file.stat().st_size
        return self.record("long.jsonl", size, head["VersionId"], head["ETag"]), records

    def assert_no_result_but_an_open_upload(self) -> None:
        """What a handler killed mid-upload leaves: nothing a reader could take for a result,
        and the multipart upload the bucket's lifecycle aborts after 7 days."""
        assert self.output_keys() == [], "a killed handler leaves no result a reader could take"
        assert len(self.open_uploads()) == 1

    def assert_one_complete_result(self, key: str, records: int) -> None:
        assert self.output_keys() == [f"{key}.out"]
        body, metadata = self.read(f"{key}.out")
        assert metadata["record-count"] == str(records)
        assert len(body.splitlines()) == records


def kill_mid_upload(stack: LocalStack, faults: S3Faults, call: str, event: dict[str, Any]) -> None:
    """Run ``call`` (``module.function``, as Lambda names a handler) on ``event`` in a process
    of its own, with the function's environment, and SIGKILL it, as Lambda does at the
    timeout, once it has uploaded the first part of a multipart `.out`."""
    module, function = call.rsplit(".", 1)
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import json, sys, {module}; {module}.{function}(json.load(sys.stdin), None)",
        ],
        cwd=REPO_ROOT / "lambda_fn",
        env={
            "PATH": os.environ.get("PATH", ""),
            **{k: v for k, v in os.environ.items() if k.startswith("AWS_")},
            **stack.env,
        },
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    assert process.stdin is not None
    process.stdin.write(json.dumps(event).encode())
    process.stdin.close()
    deadline = time.monotonic() + 120
    while not any("partNumber=" in request for request in faults.seen):
        assert process.poll() is None, "the handler finished before it uploaded a part"
        assert time.monotonic() < deadline, "no part uploaded within 120 s"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
