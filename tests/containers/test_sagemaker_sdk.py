"""The endpoint as SageMaker Python SDK users call it: every serializer x deserializer pair.

The SDK (v2, `Predictor`, `SKLearnPredictor`, `PyTorchPredictor`) runs in its own virtualenv
(`.venv-sdk`, from requirements-sdk.txt: its pins cannot share the CDK's), in
`sagemaker_sdk_driver.py`, against the real model server behind the local SageMaker runtime
adapter. Every pair must return exactly the labels the model predicts in process, in order.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import INFERENCE_CSV, REPO_ROOT
from model_kit.model_io import load_model

from local.model_server import start_model_server
from local.runtime_adapter import start_runtime_adapter

SDK_PYTHON = REPO_ROOT / ".venv-sdk" / "bin" / "python"
DRIVER = Path(__file__).with_name("sagemaker_sdk_driver.py")
SERIALIZERS = [
    "CSVSerializer(list of lists)",
    "JSONSerializer(list of lists)",
    "JSONSerializer(numpy array)",
    "JSONLinesSerializer(list of lists)",
    "NumpySerializer(numpy array)",
]
DESERIALIZERS = [
    "CSVDeserializer",
    "JSONDeserializer",
    "JSONLinesDeserializer",
    "NumpyDeserializer",
    "StringDeserializer",
    "BytesDeserializer",
]
CASES = [f"{s} x {d}" for s in SERIALIZERS for d in DESERIALIZERS] + [
    "SKLearnPredictor (its defaults)",
    "PyTorchPredictor (its defaults)",
]


@pytest.fixture(scope="module")
def sdk_results(trained_model_dir: Path) -> Iterator[dict[str, dict]]:
    assert SDK_PYTHON.exists(), "no .venv-sdk: run `make test` (or `make .venv-sdk/.installed`)"
    with (
        start_model_server(trained_model_dir.parent, workers=2) as server,
        start_runtime_adapter("sdk-endpoint", server.url) as adapter,
    ):
        process = subprocess.run(
            [str(SDK_PYTHON), str(DRIVER), adapter.url, "sdk-endpoint", str(INFERENCE_CSV)],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "SAGEMAKER_SUPPRESS_V2_WARNING": "1"},
            check=False,
        )
    assert process.returncode == 0, process.stderr[-3000:]
    yield json.loads(process.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def expected(trained_model_dir: Path) -> list[str]:
    model = load_model(trained_model_dir)
    matrix = np.loadtxt(INFERENCE_CSV, delimiter=",", skiprows=1)
    return [str(label) for label in model.predict_labels(model.predict_proba(matrix))]


def test_every_case_ran(sdk_results):
    assert sorted(sdk_results) == sorted(CASES)


@pytest.mark.parametrize("case", CASES)
def test_the_sdk_gets_the_models_labels_in_order(sdk_results, expected, case):
    result = sdk_results[case]
    assert "error" not in result, result["error"]
    assert result["labels"] == expected
