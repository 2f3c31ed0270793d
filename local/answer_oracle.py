"""The JSON and JSON Lines answers as the server wrote them before they moved to C.

``fastjson.c`` must write exactly these bytes (tests/containers/test_serving_answers.py):
one %-template per class, floats by ``repr``, labels and keys by ``json.dumps``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
from model_kit.model_io import Label


def _records(classes: Sequence[Label], winners: np.ndarray, probabilities: np.ndarray) -> list[str]:
    # Labels are data: escape "%" so a class named "50%" cannot break the template.
    keys = ",".join(json.dumps(str(label)).replace("%", "%%") + ":%r" for label in classes)
    templates = [
        f'{{"label":{json.dumps(label).replace("%", "%%")},"probabilities":{{{keys}}}}}'
        for label in classes
    ]
    return [
        templates[i] % tuple(row)
        for i, row in zip(winners.tolist(), probabilities.tolist(), strict=True)
    ]


def json_answer(classes: Sequence[Label], winners: np.ndarray, probabilities: np.ndarray) -> bytes:
    records = _records(classes, winners, probabilities)
    return ('{"predictions":[' + ",".join(records) + "]}").encode()


def jsonlines_answer(
    classes: Sequence[Label], winners: np.ndarray, probabilities: np.ndarray
) -> bytes:
    return ("\n".join(_records(classes, winners, probabilities)) + "\n").encode()


def check_answers(data: bytes) -> None:
    """Any bytes, read as doubles in rows of three classes: the C writer equals the templates."""
    from model_kit.serving.encoders import PredictionEncoders

    classes = ["a", 'say "50%"', 7]
    usable = len(data) // 24 * 24
    probabilities = np.frombuffer(data[:usable], dtype=np.float64).reshape(-1, len(classes))
    winners = np.arange(len(probabilities)) % len(classes)
    encoders = PredictionEncoders(classes)
    assert encoders.json(winners, probabilities) == json_answer(classes, winners, probabilities)
    assert encoders.jsonlines(winners, probabilities) == jsonlines_answer(
        classes, winners, probabilities
    )
