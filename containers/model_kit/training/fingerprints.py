"""What a checkpoint must have been trained on to be continued: the same data and settings.

Continuing one model on other data, with another learning rate or under another library
version would give a model no single run could have trained, so a checkpoint records both
fingerprints and a run resumes only a checkpoint whose fingerprints equal its own.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

import numpy as np

from model_kit.training.hyperparameters import CHECKPOINT_SETTINGS

if TYPE_CHECKING:
    from model_kit.families.base import ModelFamily
    from model_kit.training.hyperparameters import Hyperparameters
    from model_kit.training.prepare import PreparedData


def data_sha256(data: PreparedData) -> str:
    """Of the arrays the family trains on, after the validation split: the data that counts."""
    digest = hashlib.sha256(json.dumps([data.feature_names, data.classes]).encode())
    for array in (data.train_x, data.train_y, data.val_x, data.val_y):
        contiguous = np.ascontiguousarray(array)
        digest.update(f"{contiguous.dtype.str}{contiguous.shape}".encode())
        digest.update(contiguous.data)
    return digest.hexdigest()


def model_settings(hp: Hyperparameters, family: ModelFamily) -> dict[str, Any]:
    """Everything that shapes the model besides the data; how often to checkpoint does not."""
    hyperparameters = {k: v for k, v in hp.as_dict().items() if k not in CHECKPOINT_SETTINGS}
    return {
        "family": family.name,
        "library_versions": family.library_versions(),
        "hyperparameters": hyperparameters,
    }


def settings_sha256(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()
