"""The README's "Bring your own model", followed with a family defined right here.

A nearest-centroid classifier in a few lines of numpy implements the `ModelFamily` protocol,
is registered, trains through the real training program's steps on the sample data and is
served by the real server app: nothing else in the kit changes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from conftest import INFERENCE_CSV, TRAINING_CSV, VALIDATION_CSV, make_ml_root
from model_kit import families
from model_kit.families.base import ModelLoadError
from model_kit.model_io import load_model
from model_kit.paths import MLPaths
from model_kit.rules import Rule, parse_float
from model_kit.serving.app import InferenceApp
from model_kit.serving.config import ServerConfig
from model_kit.training.stop_signal import StopRequest
from model_kit.training.train import train

from local.asgi_call import call

MODEL_FILE = "centroids.json"


@dataclass(frozen=True)
class Centroids:
    """Class probabilities from distances to each class's mean (NaN: that feature's mean)."""

    means: np.ndarray
    scale: np.ndarray
    sharpness: float

    def predict_proba(self, features: np.ndarray, num_threads: int = 0) -> np.ndarray:
        filled = np.where(np.isnan(features), self.means.mean(axis=0), features)
        distances = np.linalg.norm((filled[:, None, :] - self.means) / self.scale, axis=2)
        scores = np.exp(-self.sharpness * (distances - distances.min(axis=1, keepdims=True)))
        return scores / scores.sum(axis=1, keepdims=True)

    def save(self, model_dir: Path) -> None:
        data = {
            "means": self.means.tolist(),
            "scale": self.scale.tolist(),
            "sharpness": self.sharpness,
        }
        (model_dir / MODEL_FILE).write_text(json.dumps(data))

    def summary(self) -> dict[str, Any]:
        return {"best_iteration": 1, "iterations_run": 1}


class NearestCentroid:
    name = "centroid"
    rules: ClassVar[Mapping[str, Rule]] = {
        "sharpness": Rule(parse_float, "a number > 0", lambda v: v > 0)
    }
    defaults: ClassVar[Mapping[str, Any]] = {"sharpness": 1.0}

    def library_versions(self) -> dict[str, str]:
        return {}

    def fit(self, data, hp, on_iteration: Callable[[int, int], None]) -> Centroids:
        means = np.array(
            [np.nanmean(data.train_x[data.train_y == k], axis=0) for k in range(len(data.classes))]
        )
        on_iteration(1, 1)
        scale = np.nanstd(data.train_x, axis=0) + 1e-12
        return Centroids(means, scale, hp.model["sharpness"])

    def load(self, model_dir: Path, n_features: int, n_classes: int) -> Centroids:
        data = json.loads((model_dir / MODEL_FILE).read_text())
        means = np.array(data["means"])
        if means.shape != (n_classes, n_features):
            raise ModelLoadError(f"{MODEL_FILE} holds {means.shape} means")
        return Centroids(means, np.array(data["scale"]), data["sharpness"])


@pytest.fixture
def centroid_family(monkeypatch):
    family = NearestCentroid()
    # Registered for this test only: the registry is left as it was.
    monkeypatch.setattr(families, "_registered", {})
    families.register(family)
    monkeypatch.setenv(families.VARIABLE, family.name)
    return family


def test_a_family_defined_outside_the_kit_trains_and_serves(centroid_family, tmp_path, monkeypatch):
    ml_root = make_ml_root(
        tmp_path,
        channels={"training": TRAINING_CSV, "validation": VALIDATION_CSV},
        hyperparameters={"sharpness": "2.0", "num_iterations": "1"},
    )
    monkeypatch.setenv("ML_ROOT", str(ml_root))
    train(MLPaths.from_env(), StopRequest())

    model = load_model(ml_root / "model", family="centroid")
    assert model.metadata["family"] == "centroid"
    assert model.metadata["hyperparameters"]["sharpness"] == 2.0
    assert model.metadata["metrics"]["val_accuracy"] >= 0.85
    app = InferenceApp(model, ServerConfig.from_env({}), threads=1)
    headers = {"Content-Type": "text/csv", "Accept": "application/json"}
    status, body = call(app, "/invocations", INFERENCE_CSV.read_bytes(), headers)
    assert status == 200
    predictions = json.loads(body)["predictions"]
    assert len(predictions) == INFERENCE_CSV.read_text().count("\n") - 1
    assert {p["label"] for p in predictions} <= {"benign", "malignant"}


def test_a_family_refuses_another_familys_hyperparameters(centroid_family, tmp_path, monkeypatch):
    from model_kit.training.errors import TrainingError

    ml_root = make_ml_root(
        tmp_path, channels={"training": TRAINING_CSV}, hyperparameters={"num_leaves": "31"}
    )
    monkeypatch.setenv("ML_ROOT", str(ml_root))
    with pytest.raises(TrainingError, match=r"'num_leaves'.*\(model family centroid\)"):
        train(MLPaths.from_env(), StopRequest())
