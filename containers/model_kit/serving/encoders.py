"""Predictions to response bodies, one output record per input record, in input order.

The per-class pieces of each record (the label as JSON or CSV, the
probability keys) are rendered once per model, so a response is a string
format per row: 4x faster than ``json.dumps`` of a list of dicts on 5 MB
(see ``benchmarks/serving_choices.py``). Floats use ``repr``, the shortest
text that reads back to the same float.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence

import numpy as np

from model_kit.model_io import Label


def _csv_field(label: Label) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow([label])
    return out.getvalue()


class PredictionEncoders:
    """Encoders for one model's classes (`formats` says which media type uses which)."""

    def __init__(self, classes: Sequence[Label]) -> None:
        self._csv_labels = [_csv_field(label) for label in classes]
        # Labels are data: escape "%" so a class named "50%" cannot break the template.
        json_labels = [json.dumps(label).replace("%", "%%") for label in classes]
        probability_keys = ",".join(
            json.dumps(str(label)).replace("%", "%%") + ":%r" for label in classes
        )
        # One %-template per class: the label is constant, the probabilities vary.
        self._json_records = [
            f'{{"label":{label},"probabilities":{{{probability_keys}}}}}' for label in json_labels
        ]
        # Integer classes stay integers, names stay strings (NumPy's own dtypes, no pickle).
        self._label_array = np.array(list(classes))

    def csv(self, winners: np.ndarray, probabilities: np.ndarray) -> bytes:
        """One label per line."""
        labels = self._csv_labels
        return ("\n".join([labels[i] for i in winners.tolist()]) + "\n").encode()

    def _records(self, winners: np.ndarray, probabilities: np.ndarray) -> list[str]:
        templates = self._json_records
        return [
            templates[i] % tuple(row)
            for i, row in zip(winners.tolist(), probabilities.tolist(), strict=True)
        ]

    def json(self, winners: np.ndarray, probabilities: np.ndarray) -> bytes:
        """``{"predictions": [{"label": ..., "probabilities": {"<class>": p, ...}}, ...]}``."""
        return (
            '{"predictions":[' + ",".join(self._records(winners, probabilities)) + "]}"
        ).encode()

    def jsonlines(self, winners: np.ndarray, probabilities: np.ndarray) -> bytes:
        """One ``{"label": ..., "probabilities": {...}}`` object per line."""
        return ("\n".join(self._records(winners, probabilities)) + "\n").encode()

    def npy(self, winners: np.ndarray, probabilities: np.ndarray) -> bytes:
        """The labels as one array in NumPy's ``.npy`` format (``np.save``)."""
        out = io.BytesIO()
        np.save(out, self._label_array[winners], allow_pickle=False)
        return out.getvalue()
