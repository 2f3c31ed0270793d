"""From channel folders to the arrays a model family trains on, with the validation set decided."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from model_kit.paths import MLPaths
from model_kit.training.dataset import Table, read_channel
from model_kit.training.errors import TrainingError, describe_items
from model_kit.training.holdout import stratified_holdout
from model_kit.training.hyperparameters import Hyperparameters
from model_kit.training.job_config import TRAINING_CHANNEL, VALIDATION_CHANNEL
from model_kit.training.labels import Label, encode_training_labels, encode_validation_labels

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreparedData:
    """Features (NaN = missing) and class indices for training and validation."""

    feature_names: list[str]
    classes: list[Label]
    train_x: np.ndarray
    train_y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray
    validation_source: str


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


def prepare_data(paths: MLPaths, hp: Hyperparameters) -> PreparedData:
    """Read the channels; without a validation channel, hold out part of training."""
    training = read_channel(paths.channel_dir(TRAINING_CHANNEL), TRAINING_CHANNEL, hp.target)
    log.info("training: read %d rows from %d file(s)", training.n_rows, len(training.parts))
    labels = encode_training_labels(training, hp.target)
    validation_dir = paths.channel_dir(VALIDATION_CHANNEL)
    if validation_dir.exists():
        validation = align_validation(
            training, read_channel(validation_dir, VALIDATION_CHANNEL, hp.target)
        )
        log.info(
            "validation: read %d rows from %d file(s)", validation.n_rows, len(validation.parts)
        )
        data = PreparedData(
            feature_names=training.feature_names,
            classes=labels.classes,
            train_x=training.features,
            train_y=labels.codes,
            val_x=validation.features,
            val_y=encode_validation_labels(validation, labels.classes),
            validation_source="validation channel",
        )
    else:
        train_rows, val_rows = stratified_holdout(labels.codes, hp.validation_fraction, hp.seed)
        log.info("no validation channel: holding out %d training rows", val_rows.size)
        data = PreparedData(
            feature_names=training.feature_names,
            classes=labels.classes,
            train_x=training.features[train_rows],
            train_y=labels.codes[train_rows],
            val_x=training.features[val_rows],
            val_y=labels.codes[val_rows],
            validation_source=(
                f"stratified holdout of {hp.validation_fraction} of training (seeded)"
            ),
        )
    log.info("%d features: %s", len(data.feature_names), describe_items(data.feature_names))
    log_class_counts("training set", data.train_y, data.classes)
    log_class_counts(f"validation set ({data.validation_source})", data.val_y, data.classes)
    return data
