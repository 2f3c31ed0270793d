"""LightGBM's gradient-boosted trees, the default family.

The model file is LightGBM's text format (``model.txt``): loading it parses numbers and
never executes code, so a model file is data, not a program (unlike pickle). LightGBM is
imported only inside the methods (see ``families.base``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from model_kit.families import compiled
from model_kit.families.base import (
    FitFacts,
    OnIteration,
    Resume,
    check_feature_count,
    class_probabilities,
    existing_model_file,
)
from model_kit.rules import Rule, available_cpus, parse_float, parse_int

if TYPE_CHECKING:
    import lightgbm
    import numpy as np

    from model_kit.families.compiled import CompiledPredictor
    from model_kit.training.hyperparameters import Hyperparameters
    from model_kit.training.prepare import PreparedData

log = logging.getLogger(__name__)

MODEL_FILE = "model.txt"
# Characters LightGBM refuses in feature names (its model file embeds them in JSON).
UNSTORABLE_IN_NAMES = re.compile(r'[",:\[\]{}]')


def objective_for(n_classes: int) -> str:
    return "binary" if n_classes == 2 else "multiclass"


def lightgbm_params(hp: Hyperparameters, n_classes: int) -> dict[str, object]:
    """LightGBM parameters: the hyperparameters plus what makes runs reproducible.

    ``deterministic`` with ``force_col_wise`` is LightGBM's documented recipe
    for identical models from identical data and seed on the same machine.
    """
    objective = objective_for(n_classes)
    params: dict[str, object] = {
        "objective": objective,
        "metric": "binary_logloss" if objective == "binary" else "multi_logloss",
        "learning_rate": hp.learning_rate,
        **hp.model,
        "seed": hp.seed,
        "deterministic": True,
        "force_col_wise": True,
        "num_threads": available_cpus(),
        "verbosity": -1,
    }
    if objective == "multiclass":
        params["num_class"] = n_classes
    return params


def lightgbm_feature_names(feature_names: list[str]) -> list[str]:
    """Names LightGBM accepts: its forbidden characters become ``_``, as it does for spaces.

    The real names stay the schema of record in ``metadata.json``; these only
    label the trees in ``model.txt``.
    """
    from model_kit.training.errors import TrainingError

    stored = [UNSTORABLE_IN_NAMES.sub("_", name) for name in feature_names]
    for index, name in enumerate(stored):
        if name in stored[:index]:
            first = feature_names[stored.index(name)]
            raise TrainingError(
                f"columns {first!r} and {feature_names[index]!r} differ only in characters "
                'LightGBM cannot store in a model (" , : [ ] { }); rename one of them'
            )
    return stored


def model_bytes(booster: lightgbm.Booster, iterations: int) -> bytes:
    """The first ``iterations`` iterations, whatever the booster has grown since."""
    return booster.model_to_string(num_iteration=iterations).encode()


@dataclass(frozen=True)
class BoosterPredictor:
    booster: lightgbm.Booster
    n_classes: int

    def predict_proba(self, features: np.ndarray, num_threads: int = 0) -> np.ndarray:
        raw = self.booster.predict(features, num_threads=num_threads)
        return class_probabilities(raw, self.n_classes)


@dataclass(frozen=True)
class FittedBooster(BoosterPredictor):
    facts: FitFacts
    # Rows of the training data the compiled trees must answer as LightGBM does.
    check_rows: np.ndarray = field(repr=False, compare=False)
    # What ``save`` compiled (its record), or why it could not: for ``summary``.
    compiled: dict[str, Any] = field(default_factory=dict, compare=False)

    def save(self, model_dir: Path) -> None:
        """``model.txt``, then its compiled form beside it (``compiled.py``): a model that
        fails to compile is still a model, served by LightGBM, so that never fails training."""
        import lightgbm

        self.booster.save_model(
            str(model_dir / MODEL_FILE), num_iteration=self.booster.best_iteration or None
        )
        try:
            # What LightGBM answers with the saved file: what would serve without the library.
            saved = BoosterPredictor(
                lightgbm.Booster(model_file=str(model_dir / MODEL_FILE)), self.n_classes
            )
            record = compiled.compile_model(
                model_dir, MODEL_FILE, self.check_rows, saved.predict_proba(self.check_rows)
            )
        except Exception as exc:
            log.warning("model not compiled, LightGBM will serve it: %s", exc)
            self.compiled.update(compiled=False, reason=f"{type(exc).__name__}: {exc}")
        else:
            log.info(
                "model compiled for %s CPUs (%s %s) into %s; it answers as LightGBM on %d "
                "training rows (largest difference %.1e)",
                record["target"]["cpu"],
                record["target"]["machine"],
                record["target"]["system"],
                record["library_file"],
                record["checked"]["rows"],
                record["checked"]["largest_difference"],
            )
            self.compiled.update(compiled=True, record=compiled.RECORD_FILE)

    def summary(self) -> dict[str, Any]:
        return {**self.facts.summary(), "compiled_predictor": dict(self.compiled)}


class LightGBMTrees:
    name = "lightgbm"
    rules: ClassVar[Mapping[str, Rule]] = {
        "num_leaves": Rule(
            parse_int, "a whole number from 2 to 131072", lambda v: 2 <= v <= 131072
        ),
        "max_depth": Rule(
            parse_int, "-1 (no limit) or a whole number >= 1", lambda v: v == -1 or v >= 1
        ),
        "min_data_in_leaf": Rule(parse_int, "a whole number >= 0", lambda v: v >= 0),
        "feature_fraction": Rule(parse_float, "a number in (0, 1]", lambda v: 0 < v <= 1),
        "lambda_l2": Rule(parse_float, "a number >= 0", lambda v: v >= 0),
    }
    defaults: ClassVar[Mapping[str, Any]] = {
        "num_leaves": 31,
        "max_depth": -1,
        "min_data_in_leaf": 20,
        "feature_fraction": 1.0,
        "lambda_l2": 0.0,
    }

    def library_versions(self) -> dict[str, str]:
        import lightgbm

        return {"lightgbm": lightgbm.__version__}

    def fit(
        self,
        data: PreparedData,
        hp: Hyperparameters,
        on_iteration: OnIteration,
        resume: Resume | None = None,
    ) -> FittedBooster:
        """Train on the training set, watch the validation set, until ``on_iteration`` ends
        training; the booster is kept at the iteration it names."""
        import lightgbm

        n_classes = len(data.classes)
        log.info("training LightGBM (%s, %d classes)", objective_for(n_classes), n_classes)
        done, keep = (resume.iterations, resume.keep) if resume else (0, None)
        booster = lightgbm.Booster(model_str=resume.model.decode()) if resume else None
        if keep is None:
            train_set = lightgbm.Dataset(
                data.train_x,
                label=data.train_y,
                feature_name=lightgbm_feature_names(data.feature_names),
            )
            validation_set = train_set.create_valid(data.val_x, label=data.val_y)

            def after_iteration(env: lightgbm.callback.CallbackEnv) -> None:
                nonlocal done, keep
                # Counts on from an init model's iterations.
                done = env.iteration + 1
                losses = [(d, m, v) for d, m, v, *_ in env.evaluation_result_list or []]
                keep = on_iteration(
                    done, hp.num_iterations, losses, partial(model_bytes, env.model)
                )
                if keep is not None:
                    # The scores at the best iteration are on_iteration's; LightGBM's copy of
                    # them (booster.best_score) is not read.
                    raise lightgbm.callback.EarlyStopException(keep - 1, [])

            booster = lightgbm.train(
                lightgbm_params(hp, n_classes),
                train_set,
                # All of them even when resuming (on_iteration ends training in time): the
                # model file then records the parameters an uninterrupted run records.
                num_boost_round=hp.num_iterations,
                init_model=booster,
                # Only the validation loss is evaluated per iteration: also scoring the
                # training set cost 12 % more CPU (82k rows, 100 iterations, 1 thread).
                valid_sets=[validation_set],
                valid_names=["validation"],
                callbacks=[after_iteration],
                # Not reloaded at the end: a snapshot taken after a late StopTrainingJob
                # must not read a booster that is being freed.
                keep_training_booster=True,
            )
        booster.best_iteration = keep
        return FittedBooster(
            booster,
            n_classes,
            FitFacts(objective_for(n_classes), keep, done),
            compiled.check_rows(data.train_x, data.val_x),
        )

    def load(self, model_dir: Path, n_features: int, n_classes: int) -> BoosterPredictor:
        import lightgbm

        model_file = existing_model_file(model_dir, MODEL_FILE)
        booster = lightgbm.Booster(model_file=str(model_file))
        check_feature_count(model_file, booster.num_feature(), n_features)
        return BoosterPredictor(booster, n_classes)

    def load_compiled(self, model_dir: Path, n_features: int, n_classes: int) -> CompiledPredictor:
        return compiled.load_compiled(model_dir, MODEL_FILE, n_features, n_classes)


FAMILY = LightGBMTrees()
