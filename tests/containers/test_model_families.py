"""Every model family through the same paths: the real training program on the sample data
and on a three-class set with missing values, the real server answering with the model's
own predictions, and an image refusing a model of another family.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from conftest import INFERENCE_CSV, TRAINING_CSV, make_ml_root, run_train
from model_kit import families
from model_kit.model_io import load_model

from local.model_server import SERVE_PROGRAM, start_model_server
from local.services import free_port

METRIC_LINES = ("train_accuracy: ", "val_accuracy: ", "val_loss: ")


@pytest.fixture(params=sorted(families.MODULES))
def family_run(request, family_training_runs) -> tuple[str, Path, subprocess.CompletedProcess[str]]:
    """``containers/bin/train`` as an image built for one family runs it, on the sample data."""
    return request.param, *family_training_runs[request.param]


def inference_rows() -> np.ndarray:
    return np.loadtxt(INFERENCE_CSV, delimiter=",", skiprows=1)


def test_each_family_trains_on_the_sample_data_and_reports_every_metric(family_run):
    family, ml_root, result = family_run
    assert result.returncode == 0, f"training failed:\n{result.stdout}\n{result.stderr}"
    assert f"model family: {family}" in result.stdout
    for line in METRIC_LINES:
        assert result.stdout.count(f"\n{line}") == 1, line
    model = load_model(ml_root / "model")
    metadata = json.loads((ml_root / "model" / "metadata.json").read_text())
    assert model.family == metadata["family"] == family
    assert family in metadata["library_versions"]
    assert metadata["metrics"]["val_accuracy"] >= 0.90
    assert 1 <= metadata["best_iteration"] <= metadata["iterations_run"] <= 200


@pytest.mark.parametrize("family", families.names())
def test_each_family_trains_three_classes_around_missing_values(family, tmp_path):
    header, *rows = (line.split(",") for line in TRAINING_CSV.read_text().splitlines())
    radius, label = header.index("mean_radius"), header.index("label")
    relabelled = []
    for number, row in enumerate(rows):
        value = float(row[radius])
        size = "small" if value < 12 else "medium" if value < 15 else "large"
        cells = [*row[:label], size, *row[label + 1 :]]
        if number % 3 == 0:
            cells[1] = ""  # a missing texture in every third row
        relabelled.append(",".join(cells))
    text = "\n".join([",".join(header), *relabelled]) + "\n"
    ml_root = make_ml_root(
        tmp_path,
        channels={"training": {"train.csv": text}},
        hyperparameters={"num_iterations": 60},
    )
    result = run_train(ml_root, family=family)
    assert result.returncode == 0, f"training failed:\n{result.stdout}\n{result.stderr}"
    model = load_model(ml_root / "model")
    assert model.classes == ("large", "medium", "small")
    features = inference_rows()
    features[::2, 1] = np.nan
    probabilities = model.predict_proba(features)
    assert probabilities.shape == (len(features), 3)
    assert np.allclose(probabilities.sum(axis=1), 1.0)
    assert model.metadata["metrics"]["val_accuracy"] >= 0.85


def test_each_family_is_served_with_its_in_process_predictions(family_run):
    family, ml_root, _ = family_run
    model = load_model(ml_root / "model")
    expected = [str(label) for label in model.predict_labels(model.predict_proba(inference_rows()))]
    with start_model_server(ml_root, workers=2, env={families.VARIABLE: family}) as server:
        request = urllib.request.Request(
            f"{server.url}/invocations",
            data=INFERENCE_CSV.read_bytes(),
            headers={"Content-Type": "text/csv", "Accept": "text/csv"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            assert response.read().decode().split() == expected


def test_an_image_of_one_family_refuses_a_model_of_another(family_run):
    family, ml_root, _ = family_run
    other = next(name for name in families.names() if name != family)
    completed = subprocess.run(
        [sys.executable, str(SERVE_PROGRAM)],
        env={
            "ML_ROOT": str(ml_root),
            "SAGEMAKER_BIND_TO_PORT": str(free_port()),
            families.VARIABLE: other,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 1
    assert f"holds a {family} model; this image serves {other} models" in completed.stderr
