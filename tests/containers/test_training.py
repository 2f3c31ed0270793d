"""The training program, run as a process on real data in a SageMaker-shaped tree."""

from __future__ import annotations

import json
import re

from conftest import VALIDATION_CSV
from model_kit.model_io import load_model

# The seed's SageMaker metric definition.
METRIC_REGEX = {
    name: re.compile(rf"^{name}: ([0-9\.]+)$", re.MULTILINE)
    for name in ("train_accuracy", "val_accuracy", "val_loss")
}


def test_trained_model_dir_loads_and_predicts_the_validation_data(trained_model_dir):
    model = load_model(trained_model_dir)
    assert model.classes == ("benign", "malignant")
    assert len(model.feature_names) == 30
    metadata = json.loads((trained_model_dir / "metadata.json").read_text())
    assert metadata["target"] == "label"
    assert metadata["objective"] == "binary"
    assert metadata["rows"] == {"training": 341, "validation": 114}
    assert metadata["metrics"]["val_accuracy"] >= 0.90
    assert VALIDATION_CSV.is_file()
