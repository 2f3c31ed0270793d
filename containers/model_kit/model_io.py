"""The model artefact: what training writes and the server loads.

A model directory holds two files:

- ``model.txt``: LightGBM's text model. Loading it parses numbers; it never
  executes code, so a model file is data, not a program (unlike pickle).
- ``metadata.json``: the schema the model was trained on (feature names in
  order, classes), the hyperparameters, the metrics and library versions.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm
import numpy as np

MODEL_FILE = "model.txt"
METADATA_FILE = "metadata.json"
FORMAT_VERSION = 1

Label = str | int


class ModelLoadError(Exception):
    """The model directory is missing, incomplete or of another format."""


def library_versions() -> dict[str, str]:
    """Versions that shape the model, recorded beside it for reproducibility."""
    return {
        "python": platform.python_version(),
        "lightgbm": lightgbm.__version__,
        "numpy": np.__version__,
    }


@dataclass(frozen=True)
class Model:
    """A trained classifier with the schema it expects."""

    booster: lightgbm.Booster
    feature_names: tuple[str, ...]
    classes: tuple[Label, ...]
    metadata: dict[str, Any]

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    def predict_proba(self, features: np.ndarray, num_threads: int = 0) -> np.ndarray:
        """Class probabilities, shape ``(rows, len(classes))``; NaN means missing."""
        raw = self.booster.predict(features, num_threads=num_threads)
        if len(self.classes) == 2:
            return np.column_stack((1.0 - raw, raw))
        return raw

    def predict_labels(self, probabilities: np.ndarray) -> list[Label]:
        return [self.classes[i] for i in probabilities.argmax(axis=1)]


def save_model(
    model_dir: Path,
    booster: lightgbm.Booster,
    *,
    feature_names: list[str],
    classes: list[Label],
    extra: dict[str, Any],
) -> None:
    """Write the model and its metadata; ``extra`` carries hyperparameters, metrics, ..."""
    model_dir.mkdir(parents=True, exist_ok=True)
    booster.save_model(str(model_dir / MODEL_FILE), num_iteration=booster.best_iteration or None)
    metadata = {
        "format_version": FORMAT_VERSION,
        "feature_names": feature_names,
        "classes": classes,
        "library_versions": library_versions(),
        **extra,
    }
    (model_dir / METADATA_FILE).write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")


def load_model(model_dir: Path) -> Model:
    """Load a model directory written by :func:`save_model`, or say what is wrong."""
    model_file, metadata_file = model_dir / MODEL_FILE, model_dir / METADATA_FILE
    for required in (model_file, metadata_file):
        if not required.is_file():
            present = sorted(p.name for p in model_dir.iterdir()) if model_dir.is_dir() else []
            raise ModelLoadError(
                f"model file {required} not found; {model_dir} holds: {present or 'nothing'}"
            )
    try:
        metadata = json.loads(metadata_file.read_text())
    except json.JSONDecodeError as exc:
        raise ModelLoadError(f"{metadata_file} is not valid JSON: {exc}") from exc
    if metadata.get("format_version") != FORMAT_VERSION:
        raise ModelLoadError(
            f"{metadata_file} has format_version {metadata.get('format_version')!r}; "
            f"this code reads format_version {FORMAT_VERSION}"
        )
    booster = lightgbm.Booster(model_file=str(model_file))
    feature_names = tuple(metadata["feature_names"])
    if booster.num_feature() != len(feature_names):
        raise ModelLoadError(
            f"{model_file} expects {booster.num_feature()} features but {metadata_file} "
            f"names {len(feature_names)}"
        )
    return Model(
        booster=booster,
        feature_names=feature_names,
        classes=tuple(metadata["classes"]),
        metadata=metadata,
    )
