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


def _label_values(texts: np.ndarray, integers: bool) -> list[Label]:
    return [int(text) for text in texts] if integers else [str(text) for text in texts]


def encode_training_labels(table: Table, target: str) -> EncodedLabels:
    """Classes from the training labels; a classifier needs at least two."""
    texts, inverse = np.unique(table.labels, return_inverse=True)
    integers = all(INTEGER.fullmatch(text) for text in texts)
    values = _label_values(texts, integers)
    classes = sorted(set(values))
    if len(classes) < 2:
        raise TrainingError(
            f"the training data has a single class, {classes[0]!r}, in column {target!r} "
            f"({table.n_rows} rows); a classifier needs at least 2 classes"
        )
    code_of_text = np.array([classes.index(value) for value in values], dtype=np.int32)
    return EncodedLabels(classes, code_of_text[inverse])


def encode_validation_labels(table: Table, classes: list[Label]) -> np.ndarray:
    """Codes of the validation labels; a label unseen in training is named with its row."""
    texts, first_rows, inverse = np.unique(table.labels, return_index=True, return_inverse=True)
    integers = all(isinstance(c, int) for c in classes)
    index = {str(label): code for code, label in enumerate(classes)}
    keys = [str(int(t)) if integers and INTEGER.fullmatch(t) else str(t) for t in texts]
    unknown = [i for i, key in enumerate(keys) if key not in index]
    if unknown:
        first = min(unknown, key=lambda i: first_rows[i])
        raise TrainingError(
            f"validation label {str(texts[first])!r} at {table.locate(int(first_rows[first]))} "
            "is not a class of the training data; training classes are: "
            f"{describe_items([str(c) for c in classes])}"
        )
    return np.array([index[key] for key in keys], dtype=np.int32)[inverse]
