"""What a model family implements: the protocol training, serving and the app rely on.

Training calls ``fit`` with the prepared data and the parsed hyperparameters (the common
ones, and the family's own under ``hp.model``) and saves what it returns; the server calls
``load``. A family's module imports its library only inside these methods, so its
hyperparameter rules can be read where the library is not installed (the CDK app at synth).

Early stopping and checkpoints are the kit's, behind ``on_iteration``: a family reports each
iteration's losses and a way to serialize its model (``snapshot``), and continues from such
bytes when it is given a ``Resume``. A family that gives no snapshot is never checkpointed.

A family may also save a compiled form of its model, faster to predict with
(``CompilingFamily``); the server then asks for it first and, when it cannot be used on this
machine, is told why (``CompiledUnavailable``) and loads the model with ``load``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np

    from model_kit.rules import Rule
    from model_kit.training.hyperparameters import Hyperparameters
    from model_kit.training.prepare import PreparedData


class ModelLoadError(Exception):
    """The model directory is missing, incomplete or of another format or family."""


class CompiledUnavailable(Exception):
    """Why a model's compiled predictor cannot serve on this machine; the library serves."""


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


Loss = tuple[str, str, float]
"""``(data set, metric, value)`` after an iteration, e.g. ``("validation", "binary_logloss",
0.21)``."""

Snapshot = Callable[[int], bytes]
"""The model's first ``n`` iterations as bytes that a ``Resume`` brings back to ``fit``."""


class OnIteration(Protocol):
    def __call__(
        self,
        done: int,
        total: int,
        losses: Sequence[Loss] = (),
        snapshot: Snapshot | None = None,
    ) -> int | None:
        """After iteration ``done`` of ``total`` (resumed ones counted): log it, watch the
        first loss for early stopping, checkpoint ``snapshot(done)`` now and then.

        None: go on. A number: training ends here (early stopping, or the last iteration) and
        the model keeps that many iterations.
        """
        ...


@dataclass(frozen=True)
class Resume:
    """A fit to continue from a checkpoint: ``model`` is what ``snapshot(iterations)`` gave.

    ``keep`` is set when training had already ended there: the model keeps its first ``keep``
    iterations and nothing more is trained.
    """

    iterations: int
    model: bytes
    keep: int | None = None


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
        on_iteration: OnIteration,
        resume: Resume | None = None,
    ) -> Fitted:
        """Fit on ``data.train_*``, watch ``data.val_*``; after each iteration call
        ``on_iteration`` and stop when it returns the number of iterations to keep.

        ``resume`` is passed only to a family that gave snapshots: continue from its bytes.
        """
        ...

    def load(self, model_dir: Path, n_features: int, n_classes: int) -> Predictor:
        """The model ``save`` wrote into ``model_dir``; ModelLoadError if it is not one."""
        ...


@runtime_checkable
class CompilingFamily(ModelFamily, Protocol):
    """A family whose training also compiles its model to native code, which serves faster.

    The server asks for it (``load_compiled``) and falls back to ``load`` when it cannot.
    """

    def load_compiled(self, model_dir: Path, n_features: int, n_classes: int) -> Predictor:
        """The model's compiled form, answering as ``load``'s would; never compiles.

        CompiledUnavailable (with the reason) when there is none, or none for this model
        and machine.
        """
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
