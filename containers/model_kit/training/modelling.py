"""Training the model on prepared data, reporting its metrics, and saving it."""

from __future__ import annotations

import logging

from model_kit.model_io import Model, save_model
from model_kit.paths import MLPaths
from model_kit.training.booster import fit, objective_for
from model_kit.training.evaluation import accuracy, log_loss, metric_line
from model_kit.training.hyperparameters import Hyperparameters
from model_kit.training.prepare import PreparedData
from model_kit.training.stop_signal import StopRequest

log = logging.getLogger(__name__)


def train_and_save(
    paths: MLPaths, hp: Hyperparameters, data: PreparedData, stop: StopRequest
) -> None:
    """Fit, print the metric lines SageMaker parses, then write the model directory."""
    n_classes = len(data.classes)
    objective = objective_for(n_classes)
    log.info("training LightGBM (%s, %d classes)", objective, n_classes)
    booster, iterations_run = fit(
        hp=hp,
        n_classes=n_classes,
        feature_names=data.feature_names,
        train=(data.train_x, data.train_y),
        validation=(data.val_x, data.val_y),
        on_iteration=stop.on_iteration,
    )
    model = Model(booster, tuple(data.feature_names), tuple(data.classes), metadata={})
    metrics = {
        "train_accuracy": accuracy(model, data.train_x, data.train_y),
        "val_accuracy": accuracy(model, data.val_x, data.val_y),
        "val_loss": log_loss(model, data.val_x, data.val_y),
    }
    for name, value in metrics.items():
        print(metric_line(name, value), flush=True)

    stop.finish()
    save_model(
        paths.model_dir,
        booster,
        feature_names=data.feature_names,
        classes=data.classes,
        extra={
            "target": hp.target,
            "objective": objective,
            "hyperparameters": hp.as_dict(),
            "metrics": metrics,
            "best_iteration": booster.best_iteration or iterations_run,
            "iterations_run": iterations_run,
            "validation_source": data.validation_source,
            "rows": {"training": int(data.train_y.size), "validation": int(data.val_y.size)},
        },
    )
    log.info("model saved to %s", paths.model_dir)
