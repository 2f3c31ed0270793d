"""The ``train`` entry point: configuration, data, model, metrics — or a failure reason.

Exit codes: 0 trained; 1 bad input or configuration (the reason says what to
fix); 2 unexpected error (a bug: the reason carries the exception and a
traceback follows it); 143 stopped by SIGTERM, the shell's 128 + 15, so that
whoever reads the code sees which signal ended the run.
"""

from __future__ import annotations

import logging
import sys
import traceback

import numpy as np

from model_kit.model_io import Label, Model, save_model
from model_kit.paths import MLPaths
from model_kit.training.booster import fit, objective_for
from model_kit.training.dataset import Table, read_channel
from model_kit.training.errors import TrainingError, TrainingStopped, describe_items
from model_kit.training.evaluation import accuracy, log_loss, metric_line
from model_kit.training.failure import report_failure
from model_kit.training.holdout import stratified_holdout
from model_kit.training.hyperparameters import Hyperparameters, read_hyperparameters
from model_kit.training.job_config import (
    TRAINING_CHANNEL,
    VALIDATION_CHANNEL,
    check_input_data_config,
    log_resource_config,
)
from model_kit.training.labels import encode_training_labels, encode_validation_labels
from model_kit.training.stop_signal import StopRequest

log = logging.getLogger("model_kit.training")

EXIT_BAD_INPUT = 1
EXIT_UNEXPECTED = 2
EXIT_STOPPED = 128 + 15


def configure_logging() -> None:
    """Line-buffered output: SageMaker ships each line to CloudWatch as it is written."""
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(line_buffering=True)
    logging.basicConfig(
        stream=sys.stdout, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s"
    )


def align_validation(training: Table, validation: Table) -> Table:
    """The validation table with the training's feature order; same columns required."""
    if set(validation.columns) != set(training.columns):
        missing = [c for c in training.columns if c not in validation.columns]
        extra = [c for c in validation.columns if c not in training.columns]
        raise TrainingError(
            f"the validation columns differ from the training columns: missing "
            f"{describe_items(missing)}; unexpected {describe_items(extra)}"
        )
    return validation.reorder_features(training.feature_names)


def log_class_counts(name: str, codes: np.ndarray, classes: list[Label]) -> None:
    counts = np.bincount(codes, minlength=len(classes))
    per_class = ", ".join(f"{c}={n}" for c, n in zip(classes, counts, strict=True))
    log.info("%s: %d rows; classes: %s", name, codes.size, per_class)


def train(paths: MLPaths, stop: StopRequest) -> None:
    """Everything between reading the configuration and writing the model."""
    stop.phase = "reading the configuration"
    hp: Hyperparameters = read_hyperparameters(paths.hyperparameters_file)
    log.info("hyperparameters: %s", hp.as_dict())
    check_input_data_config(paths)
    log_resource_config(paths)

    stop.phase = "loading data"
    training = read_channel(paths.channel_dir(TRAINING_CHANNEL), TRAINING_CHANNEL, hp.target)
    log.info("training: read %d rows from %d file(s)", training.n_rows, len(training.parts))
    labels = encode_training_labels(training, hp.target)
    train_x, train_y = training.features, labels.codes
    validation_dir = paths.channel_dir(VALIDATION_CHANNEL)
    if validation_dir.exists():
        validation = align_validation(
            training, read_channel(validation_dir, VALIDATION_CHANNEL, hp.target)
        )
        log.info(
            "validation: read %d rows from %d file(s)", validation.n_rows, len(validation.parts)
        )
        val_x, val_y = validation.features, encode_validation_labels(validation, labels.classes)
        validation_source = "validation channel"
    else:
        train_rows, val_rows = stratified_holdout(labels.codes, hp.validation_fraction, hp.seed)
        train_x, train_y = training.features[train_rows], labels.codes[train_rows]
        val_x, val_y = training.features[val_rows], labels.codes[val_rows]
        validation_source = f"stratified holdout of {hp.validation_fraction} of training (seeded)"
        log.info("no validation channel: holding out %d training rows", val_y.size)
    log.info("%d features: %s", len(training.feature_names), describe_items(training.feature_names))
    log_class_counts("training set", train_y, labels.classes)
    log_class_counts(f"validation set ({validation_source})", val_y, labels.classes)

    objective = objective_for(len(labels.classes))
    log.info("training LightGBM (%s, %d classes)", objective, len(labels.classes))
    booster, iterations_run = fit(
        hp=hp,
        n_classes=len(labels.classes),
        feature_names=training.feature_names,
        train=(train_x, train_y),
        validation=(val_x, val_y),
        on_iteration=stop.on_iteration,
    )
    model = Model(booster, tuple(training.feature_names), tuple(labels.classes), metadata={})
    metrics = {
        "train_accuracy": accuracy(model, train_x, train_y),
        "val_accuracy": accuracy(model, val_x, val_y),
        "val_loss": log_loss(model, val_x, val_y),
    }
    for name, value in metrics.items():
        print(metric_line(name, value), flush=True)

    stop.finish()
    save_model(
        paths.model_dir,
        booster,
        feature_names=training.feature_names,
        classes=labels.classes,
        extra={
            "target": hp.target,
            "objective": objective,
            "hyperparameters": hp.as_dict(),
            "metrics": metrics,
            "best_iteration": booster.best_iteration or iterations_run,
            "iterations_run": iterations_run,
            "validation_source": validation_source,
            "rows": {"training": int(train_y.size), "validation": int(val_y.size)},
        },
    )
    log.info("model saved to %s", paths.model_dir)


def main() -> int:
    """Run training; turn every way it can end into an exit code and, if failed, a reason."""
    configure_logging()
    paths = MLPaths.from_env()
    stop = StopRequest().install()
    try:
        train(paths, stop)
    except TrainingStopped as stopped:
        stop.finish()
        report_failure(paths, str(stopped))
        return EXIT_STOPPED
    except TrainingError as error:
        stop.finish()
        report_failure(paths, str(error))
        return EXIT_BAD_INPUT
    except Exception as error:
        stop.finish()
        report_failure(
            paths, f"unexpected error: {type(error).__name__}: {error}", traceback.format_exc()
        )
        return EXIT_UNEXPECTED
    return 0
