"""Training the model on prepared data, reporting its metrics, and saving it."""

from __future__ import annotations

import logging

from model_kit.families.base import ModelFamily
from model_kit.model_io import Model, save_model
from model_kit.paths import MLPaths
from model_kit.training.checkpoints import CheckpointFolder
from model_kit.training.errors import TrainingStopped
from model_kit.training.evaluation import accuracy, log_loss, metric_line
from model_kit.training.hyperparameters import Hyperparameters
from model_kit.training.monitor import TrainingMonitor
from model_kit.training.prepare import PreparedData
from model_kit.training.stop_signal import StopRequest

log = logging.getLogger(__name__)


def train_and_save(
    paths: MLPaths,
    hp: Hyperparameters,
    data: PreparedData,
    stop: StopRequest,
    family: ModelFamily,
) -> None:
    """Fit (from a checkpoint if there is one), print the metric lines SageMaker parses, then
    write the model directory. Stopped before that, checkpoint where training got to."""
    monitor = TrainingMonitor(hp, stop, CheckpointFolder.open(paths, hp, data, family))
    resume = monitor.resume
    try:
        # Only a family that gave snapshots is resumed: another's fit need not take resume.
        if resume is None:
            fitted = family.fit(data, hp, monitor)
        else:
            fitted = family.fit(data, hp, monitor, resume=resume)
        model = Model(fitted, family.name, tuple(data.feature_names), tuple(data.classes), {})
        metrics = {
            "train_accuracy": accuracy(model, data.train_x, data.train_y),
            "val_accuracy": accuracy(model, data.val_x, data.val_y),
            "val_loss": log_loss(model, data.val_x, data.val_y),
        }
        for name, value in metrics.items():
            print(metric_line(name, value), flush=True)
    except TrainingStopped as stopped:
        raise TrainingStopped(f"{stopped}{monitor.checkpoint_on_stop()}") from None

    stop.finish()
    save_model(
        paths.model_dir,
        fitted,
        family,
        feature_names=data.feature_names,
        classes=data.classes,
        extra={
            "target": hp.target,
            "hyperparameters": hp.as_dict(),
            "metrics": metrics,
            "validation_source": data.validation_source,
            "rows": {"training": int(data.train_y.size), "validation": int(data.val_y.size)},
            "resumed_from_iteration": resume.iterations if resume else None,
        },
    )
    log.info("model saved to %s", paths.model_dir)
