"""From label text to class indices, the one place that decides what the classes are.

If every training label is an integer the classes are ints (``0``/``1`` stay
numbers in predictions); otherwise they are strings. Classes are sorted, so
the same data always gives the same class order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from model_kit.training.dataset import Table
from model_kit.training.errors import TrainingError, describe_items

# What a class is; the same union as model_io.Label, which this module does not
# import so that reading data never loads LightGBM.
Label = str | int

INTEGER = re.compile(r"[+-]?\d+")


@dataclass(frozen=True)
class EncodedLabels:
    classes: list[Label]
    codes: np.ndarray


def _as_labels(raw: np.ndarray, integers: bool) -> list[Label]:
    return [int(text) for text in raw] if integers else [str(text) for text in raw]


def encode_training_labels(table: Table, target: str) -> EncodedLabels:
    """Classes from the training labels; a classifier needs at least two."""
    integers = all(INTEGER.fullmatch(text) for text in np.unique(table.labels))
    labels = _as_labels(table.labels, integers)
    classes = sorted(set(labels))
    if len(classes) < 2:
        raise TrainingError(
            f"the training data has a single class, {classes[0]!r}, in column {target!r} "
            f"({table.n_rows} rows); a classifier needs at least 2 classes"
        )
    index = {label: code for code, label in enumerate(classes)}
    return EncodedLabels(classes, np.array([index[label] for label in labels], dtype=np.int32))


def encode_validation_labels(table: Table, classes: list[Label]) -> np.ndarray:
    """Codes of the validation labels; a label unseen in training is named with its row."""
    integers = all(isinstance(c, int) for c in classes)
    index = {str(label): code for code, label in enumerate(classes)}
    codes = np.empty(table.n_rows, dtype=np.int32)
    for row, text in enumerate(table.labels):
        key = str(int(text)) if integers and INTEGER.fullmatch(text) else str(text)
        code = index.get(key)
        if code is None:
            raise TrainingError(
                f"validation label {str(text)!r} at {table.locate(row)} is not a class of the "
                f"training data; training classes are: {describe_items([str(c) for c in classes])}"
            )
        codes[row] = code
    return codes
