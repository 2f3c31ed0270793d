"""XGBoost's gradient-boosted trees (the ``xgboost-cpu`` wheel: no GPU libraries).

The second family, proof that the seam holds (see the README's "Bring your own model").
The model file is XGBoost's JSON format (``model.json``), data that loading parses, never
code. XGBoost is imported only inside the methods (see ``families.base``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from model_kit.families.base import (
    FitFacts,
    ModelLoadError,
    OnIteration,
    Resume,
    check_feature_count,
    class_probabilities,
    existing_model_file,
)
from model_kit.rules import Rule, available_cpus, parse_float, parse_int

if TYPE_CHECKING:
    import numpy as np
    import xgboost

    from model_kit.training.hyperparameters import Hyperparameters
    from model_kit.training.prepare import PreparedData

log = logging.getLogger(__name__)

MODEL_FILE = "model.json"


def xgboost_params(hp: Hyperparameters, n_classes: int) -> dict[str, object]:
    """XGBoost parameters: the hyperparameters plus its histogram method on every core."""
    binary = n_classes == 2
    params: dict[str, object] = {
        "objective": objective_for(n_classes),
        "eval_metric": "logloss" if binary else "mlogloss",
        "eta": hp.learning_rate,
        **hp.model,
        "seed": hp.seed,
        "tree_method": "hist",
        "nthread": available_cpus(),
        "verbosity": 0,
    }
    if not binary:
        params["num_class"] = n_classes
    return params


def model_bytes(booster: xgboost.Booster, iterations: int) -> bytes:
    """The first ``iterations`` iterations, whatever the booster has grown since."""
    return bytes(booster[:iterations].save_raw("ubj"))


@dataclass
class BoosterPredictor:
    booster: xgboost.Booster
    n_classes: int
    # The booster's nthread, set when a call asks for another (a server asks for the same).
    _threads: int = field(default=0, init=False)

    def predict_proba(self, features: np.ndarray, num_threads: int = 0) -> np.ndarray:
        import numpy as np

        threads = num_threads or available_cpus()
        if threads != self._threads:
            self.booster.set_param({"nthread": threads})
            self._threads = threads
        raw = self.booster.inplace_predict(features, missing=np.nan)
        return class_probabilities(raw, self.n_classes)


@dataclass
class FittedBooster(BoosterPredictor):
    facts: FitFacts

    def save(self, model_dir: Path) -> None:
        self.booster.save_model(str(model_dir / MODEL_FILE))

    def summary(self) -> dict[str, Any]:
        return self.facts.summary()


def objective_for(n_classes: int) -> str:
    return "binary:logistic" if n_classes == 2 else "multi:softprob"


class XGBoostTrees:
    name = "xgboost"
    rules: ClassVar[Mapping[str, Rule]] = {
        "max_depth": Rule(parse_int, "a whole number >= 0 (0: no limit)", lambda v: v >= 0),
        "min_child_weight": Rule(parse_float, "a number >= 0", lambda v: v >= 0),
        "subsample": Rule(parse_float, "a number in (0, 1]", lambda v: 0 < v <= 1),
        "colsample_bytree": Rule(parse_float, "a number in (0, 1]", lambda v: 0 < v <= 1),
        "reg_lambda": Rule(parse_float, "a number >= 0", lambda v: v >= 0),
    }
    defaults: ClassVar[Mapping[str, Any]] = {
        "max_depth": 6,
        "min_child_weight": 1.0,
        "subsample": 1.0,
        "colsample_bytree": 1.0,
        "reg_lambda": 1.0,
    }

    def library_versions(self) -> dict[str, str]:
        import xgboost

        return {"xgboost": xgboost.__version__}

    def fit(
        self,
        data: PreparedData,
        hp: Hyperparameters,
        on_iteration: OnIteration,
        resume: Resume | None = None,
    ) -> FittedBooster:
        """Train on the training set, watch the validation set, until ``on_iteration`` ends
        training; the booster is cut to the iteration it names before it is kept."""
        import numpy as np
        import xgboost

        n_classes = len(data.classes)
        log.info("training XGBoost (%s, %d classes)", objective_for(n_classes), n_classes)
        done, keep = (resume.iterations, resume.keep) if resume else (0, None)
        booster = xgboost.Booster(model_file=bytearray(resume.model)) if resume else None
        if keep is None:
            train_set = xgboost.DMatrix(data.train_x, label=data.train_y, missing=np.nan)
            validation_set = xgboost.DMatrix(data.val_x, label=data.val_y, missing=np.nan)

            class Report(xgboost.callback.TrainingCallback):
                def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
                    nonlocal done, keep
                    # Not epoch + 1: epochs count from 0 again when training continues.
                    done = model.num_boosted_rounds()
                    losses = [
                        (name, metric, values[-1])
                        for name, metrics in evals_log.items()
                        for metric, values in metrics.items()
                    ]
                    keep = on_iteration(
                        done, hp.num_iterations, losses, partial(model_bytes, model)
                    )
                    return keep is not None

            booster = xgboost.train(
                xgboost_params(hp, n_classes),
                train_set,
                num_boost_round=hp.num_iterations - done,
                evals=[(validation_set, "validation")],
                xgb_model=booster,
                callbacks=[Report()],
                verbose_eval=False,
            )
        facts = FitFacts(objective_for(n_classes), keep, done)
        return FittedBooster(booster[:keep], n_classes, facts)

    def load(self, model_dir: Path, n_features: int, n_classes: int) -> BoosterPredictor:
        import xgboost

        model_file = existing_model_file(model_dir, MODEL_FILE)
        booster = xgboost.Booster()
        try:
            booster.load_model(str(model_file))
        except xgboost.core.XGBoostError as exc:
            raise ModelLoadError(f"{model_file} is not an XGBoost model: {exc}") from exc
        check_feature_count(model_file, booster.num_features(), n_features)
        return BoosterPredictor(booster, n_classes)


FAMILY = XGBoostTrees()
