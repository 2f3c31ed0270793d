"""The metrics SageMaker reads from the log, computed the way the server will predict."""

from __future__ import annotations

import numpy as np

from model_kit.model_io import Model

# Clip probabilities so one confident mistake gives a large, finite loss.
EPSILON = 1e-15


def accuracy(model: Model, features: np.ndarray, codes: np.ndarray) -> float:
    return float(np.mean(model.predict_proba(features).argmax(axis=1) == codes))


def log_loss(model: Model, features: np.ndarray, codes: np.ndarray) -> float:
    probabilities = model.predict_proba(features)[np.arange(codes.size), codes]
    return float(-np.mean(np.log(np.clip(probabilities, EPSILON, 1.0))))


def metric_line(name: str, value: float) -> str:
    """``val_accuracy: 0.947368`` — fixed-point, so ``([0-9\\.]+)`` reads the whole value."""
    return f"{name}: {value:.6f}"
