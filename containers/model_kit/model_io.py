"""The model artefact: what training writes and the server loads.

A model directory holds ``metadata.json`` (the schema the model was trained on: feature
names in order and classes; the model family; the hyperparameters, metrics and library
versions) and the family's own model file(s), e.g. LightGBM's ``model.txt``. Every family
stores its model as data that loading parses, never as code it runs (no pickle).
"""

from __future__ import annotations

import json
import logging
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from model_kit import families
from model_kit.families.base import CompiledUnavailable, CompilingFamily, ModelLoadError

if TYPE_CHECKING:
    from model_kit.families.base import Fitted, ModelFamily, Predictor

log = logging.getLogger(__name__)

__all__ = ["Label", "Model", "ModelLoadError", "library_versions", "load_model", "save_model"]

METADATA_FILE = "metadata.json"
# 2: the metadata names the model family.
FORMAT_VERSION = 2

Label = str | int


def library_versions(family: ModelFamily) -> dict[str, str]:
    """Versions that shape the model, recorded beside it for reproducibility."""
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        **family.library_versions(),
    }


@dataclass(frozen=True)
class Model:
    """A trained classifier of some family, with the schema it expects."""

    predictor: Predictor
    family: str
    feature_names: tuple[str, ...]
    classes: tuple[Label, ...]
    metadata: dict[str, Any]
    # What predicts: "compiled" (the family's compiled trees) or "library" (its library).
    predictor_kind: str = "library"

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    def predict_proba(self, features: np.ndarray, num_threads: int = 0) -> np.ndarray:
        """Class probabilities, shape ``(rows, len(classes))``; NaN means missing."""
        return self.predictor.predict_proba(features, num_threads=num_threads)

    def predict_labels(self, probabilities: np.ndarray) -> list[Label]:
        return [self.classes[i] for i in probabilities.argmax(axis=1)]


def save_model(
    model_dir: Path,
    fitted: Fitted,
    family: ModelFamily,
    *,
    feature_names: list[str],
    classes: list[Label],
    extra: dict[str, Any],
) -> None:
    """Write the model and its metadata; ``extra`` carries hyperparameters, metrics, ..."""
    model_dir.mkdir(parents=True, exist_ok=True)
    fitted.save(model_dir)
    metadata = {
        "format_version": FORMAT_VERSION,
        "family": family.name,
        "feature_names": feature_names,
        "classes": classes,
        "library_versions": library_versions(family),
        **fitted.summary(),
        **extra,
    }
    (model_dir / METADATA_FILE).write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")


def load_model(model_dir: Path, family: str | None = None, *, compiled: bool = False) -> Model:
    """Load a model directory written by :func:`save_model`, or say what is wrong.

    ``family``: the one family this process serves (an image's); None takes the family
    the metadata names. ``compiled``: predict with the family's compiled model when there is
    one for this model and machine (the server's choice; off, the library's own objects).
    """
    metadata_file = model_dir / METADATA_FILE
    if not metadata_file.is_file():
        present = sorted(p.name for p in model_dir.iterdir()) if model_dir.is_dir() else []
        raise ModelLoadError(
            f"model file {metadata_file} not found; {model_dir} holds: {present or 'nothing'}"
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
    trained_by = metadata.get("family")
    if family is not None and trained_by != family:
        raise ModelLoadError(
            f"{model_dir} holds a {trained_by} model; this image serves {family} models "
            "(build both images for one model family)"
        )
    try:
        own = families.get(trained_by)
    except families.UnknownFamily as exc:
        raise ModelLoadError(f"{metadata_file}: {exc}") from exc
    feature_names = tuple(metadata["feature_names"])
    classes = tuple(metadata["classes"])
    shape = (len(feature_names), len(classes))
    predictor = _compiled_predictor(own, model_dir, *shape) if compiled else None
    return Model(
        predictor=predictor or own.load(model_dir, *shape),
        family=trained_by,
        feature_names=feature_names,
        classes=classes,
        metadata=metadata,
        predictor_kind="library" if predictor is None else "compiled",
    )


def _compiled_predictor(
    family: ModelFamily, model_dir: Path, n_features: int, n_classes: int
) -> Predictor | None:
    """The family's compiled model, or None after logging why the library must predict."""
    if not isinstance(family, CompilingFamily):
        log.info("the %s family has no compiled predictor; its library predicts", family.name)
        return None
    try:
        return family.load_compiled(model_dir, n_features, n_classes)
    except CompiledUnavailable as exc:
        log.warning("compiled predictor not used, %s predicts: %s", family.name, exc)
        return None
