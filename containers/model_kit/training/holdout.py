"""A seeded, stratified validation split for jobs without a validation channel.

Stratified so that a rare class is represented in both parts in its usual
proportion; seeded so that the same job gives the same split and model.
"""

from __future__ import annotations

import numpy as np

from model_kit.training.errors import TrainingError


def stratified_holdout(
    codes: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted row indices ``(train, validation)``; a class keeps a row on each side if it can."""
    rng = np.random.default_rng(seed)
    train_parts, validation_parts = [], []
    for code in np.unique(codes):
        rows = rng.permutation(np.flatnonzero(codes == code))
        n_validation = min(max(round(len(rows) * fraction), 1), len(rows) - 1)
        validation_parts.append(rows[:n_validation])
        train_parts.append(rows[n_validation:])
    validation = np.sort(np.concatenate(validation_parts))
    if validation.size == 0:
        raise TrainingError(
            f"the training channel has too few rows ({codes.size}) to hold out a validation "
            "set; add rows or provide a 'validation' channel"
        )
    return np.sort(np.concatenate(train_parts)), validation
