"""What a model family implements: the protocol training, serving and the app rely on.

Training calls ``fit`` with the prepared data and the parsed hyperparameters (the common
ones, and the family's own under ``hp.model``) and saves what it returns; the server calls
``load``. A family's module imports its library only inside these methods, so its
hyperparameter rules can be read where the library is not installed (the CDK app at synth).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np

    from model_kit.rules import Rule
    from model_kit.training.hyperparameters import Hyperparameters
    from model_kit.training.prepare import PreparedData


class ModelLoadError(Exception):
    """The model directory is missing, incomplete or of another format or family."""


class Predictor(Protocol):
    def predict_proba(self, features: np.ndarray, num_threads: int = 0) -> np.ndarray:
        """Class probabilities, shape ``(rows, classes)``; NaN features are missing values.

        ``num_threads`` 0 means the library's default (every CPU).
        """
        ...


class Fitted(Predictor, Protocol):
    def save(self, model_dir: Path) -> None:
        """Write the model's own file(s) into ``model_dir`` (beside ``metadata.json``)."""
        ...

    def summary(self) -> dict[str, Any]:
        """Facts about the fit for ``metadata.json``: at least ``iterations_run`` and
        ``best_iteration``."""
        ...


class ModelFamily(Protocol):
    name: str
    # The family's own hyperparameters, beyond the common ones, with their defaults.
    rules: Mapping[str, Rule]
    defaults: Mapping[str, Any]

    def library_versions(self) -> dict[str, str]:
        """The versions that shape its models, recorded beside each one."""
        ...

    def fit(
        self,
        data: PreparedData,
        hp: Hyperparameters,
        on_iteration: Callable[[int, int], None],
    ) -> Fitted:
        """Fit on ``data.train_*``, watch ``data.val_*``, stop early as ``hp`` says; call
        ``on_iteration(done, total)`` after each iteration."""
        ...

    def load(self, model_dir: Path, n_features: int, n_classes: int) -> Predictor:
        """The model ``save`` wrote into ``model_dir``; ModelLoadError if it is not one."""
        ...


# Pieces the shipped families share.


@dataclass(frozen=True)
class FitFacts:
    """What ``Fitted.summary`` reports for a boosted model."""

    objective: str
    best_iteration: int
    iterations_run: int

    def summary(self) -> dict[str, Any]:
        return asdict(self)


def class_probabilities(raw: np.ndarray, n_classes: int) -> np.ndarray:
    """A binary model's P(second class) as two columns; a multiclass model's rows as they are."""
    import numpy as np

    return np.column_stack((1.0 - raw, raw)) if n_classes == 2 else raw


def existing_model_file(model_dir: Path, name: str) -> Path:
    path = model_dir / name
    if not path.is_file():
        raise ModelLoadError(f"model file {path} not found")
    return path


def check_feature_count(model_file: Path, found: int, expected: int) -> None:
    if found != expected:
        raise ModelLoadError(
            f"{model_file} expects {found} features but the metadata names {expected}"
        )
