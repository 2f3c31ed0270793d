"""Predictions to response bodies, one output record per input record, in input order.

The per-class pieces of each record (the label as JSON or CSV, the probability keys) are
rendered once per model. JSON and JSON Lines answers are then written in C
(``fastjson.py``), floats as ``repr`` writes them, the shortest text that reads back to the
same float: about 10x faster than Python %-templates on a 5 MB answer, which were 3-4x faster
than ``json.dumps`` of a list of dicts (``benchmarks/serving_choices.py``).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence

import numpy as np

from model_kit.model_io import Label
from model_kit.serving.fastjson import AnswerText, AnswerWriter


def _csv_field(label: Label) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow([label])
    return out.getvalue()


class PredictionEncoders:
    """Encoders for one model's classes (`formats` says which media type uses which)."""

    def __init__(self, classes: Sequence[Label]) -> None:
        self._csv_labels = [_csv_field(label) for label in classes]
        keys = [json.dumps(str(label)) + ":" for label in classes]
        heads = [f'{{"label":{json.dumps(label)},"probabilities":{{{keys[0]}' for label in classes]
        gaps = ["", *("," + key for key in keys[1:])]
        record = {"heads": heads, "gaps": gaps, "record_end": "}}"}
        self._json = AnswerWriter(AnswerText('{"predictions":[', ",", "]}", **record))
        self._jsonlines = AnswerWriter(AnswerText("", "\n", "\n", **record))
        # Integer classes stay integers, names stay strings (NumPy's own dtypes, no pickle).
        self._label_array = np.array(list(classes))

    def csv(self, winners: np.ndarray, probabilities: np.ndarray) -> bytes:
        """One label per line."""
        labels = self._csv_labels
        return ("\n".join([labels[i] for i in winners.tolist()]) + "\n").encode()

    def json(self, winners: np.ndarray, probabilities: np.ndarray) -> bytes:
        """``{"predictions": [{"label": ..., "probabilities": {"<class>": p, ...}}, ...]}``."""
        return self._json.write(winners, probabilities)

    def jsonlines(self, winners: np.ndarray, probabilities: np.ndarray) -> bytes:
        """One ``{"label": ..., "probabilities": {...}}`` object per line."""
        return self._jsonlines.write(winners, probabilities)

    def npy(self, winners: np.ndarray, probabilities: np.ndarray) -> bytes:
        """The labels as one array in NumPy's ``.npy`` format (``np.save``)."""
        out = io.BytesIO()
        np.save(out, self._label_array[winners], allow_pickle=False)
        return out.getvalue()
