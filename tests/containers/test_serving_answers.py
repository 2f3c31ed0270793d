"""JSON and JSON Lines answers, written in C (`fastjson.c`), byte for byte as Python wrote them.

- Every double is written exactly as `repr` writes it: the shortest text that reads back to
  the same double, positional or with an exponent where Python switches.
- Whole answers equal the %-templates the server used before (`local.answer_oracle`), for
  any labels (integers, text with quotes, "%", non-ASCII) and any probabilities.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from model_kit.serving.encoders import PredictionEncoders
from model_kit.serving.fastjson import AnswerText, AnswerWriter

from local.answer_oracle import json_answer, jsonlines_answer

# One value per line, between "<" and ">": the writer's own text around each double.
ONE_PER_LINE = AnswerWriter(AnswerText("", "\n", "\n", ["<"], [""], ">"))


def written(values: np.ndarray) -> list[str]:
    values = np.ascontiguousarray(values, dtype=np.float64).reshape(-1, 1)
    answer = ONE_PER_LINE.write(np.zeros(len(values), dtype=np.int64), values).decode()
    return [line[1:-1] for line in answer.splitlines()]


def assert_written_as_repr(values: np.ndarray) -> None:
    expected = [repr(value) for value in values.tolist()]
    mismatches = [(e, w) for e, w in zip(expected, written(values), strict=True) if e != w]
    assert not mismatches, f"{len(mismatches)} of {len(expected)} differ, e.g. {mismatches[:5]}"


def test_every_kind_of_double_is_written_as_repr():
    powers = np.concatenate([2.0 ** np.arange(-1074, 1024), 10.0 ** np.arange(-323, 309)])
    edges = np.array(
        [0.0, -0.0, 0.1, 1 / 3, 1e-5, 1e-4, 9.999e-5, 1e15, 1e16, 9007199254740993.0, 5e-324,
         2.2250738585072014e-308, 1.7976931348623157e308, np.inf, -np.inf, np.nan, -np.nan]
    )  # fmt: skip
    neighbours = np.concatenate([np.nextafter(powers, np.inf), np.nextafter(powers, 0)])
    assert_written_as_repr(np.concatenate([powers, edges, neighbours, -powers]))


def test_a_million_random_doubles_are_written_as_repr():
    rng = np.random.default_rng(20261130)
    bit_patterns = rng.integers(0, 2**64, size=500_000, dtype=np.uint64).view(np.float64)
    probabilities = rng.random(300_000) ** rng.integers(1, 60, 300_000)
    short_decimals = np.array(
        [float(f"{m}e{e}") for m, e in zip(rng.integers(1, 10**6, 200_000),
                                           rng.integers(-330, 305, 200_000), strict=True)]
    )  # fmt: skip
    assert_written_as_repr(np.concatenate([bit_patterns, probabilities, short_decimals]))


labels = st.one_of(
    st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1), min_size=1, max_size=5),
    st.lists(st.text(max_size=8), min_size=1, max_size=5),
).filter(lambda classes: len({str(label) for label in classes}) == len(classes))


@settings(max_examples=300, deadline=None)
@given(data=st.data(), classes=labels)
def test_answers_are_byte_identical_to_the_python_templates(data, classes):
    records = data.draw(st.integers(min_value=0, max_value=20))
    probabilities = data.draw(
        hnp.arrays(np.float64, (records, len(classes)), elements=st.floats(width=64))
    )
    winners = data.draw(hnp.arrays(np.int64, records, elements=st.integers(0, len(classes) - 1)))
    encoders = PredictionEncoders(classes)
    assert encoders.json(winners, probabilities) == json_answer(classes, winners, probabilities)
    assert encoders.jsonlines(winners, probabilities) == jsonlines_answer(
        classes, winners, probabilities
    )


def test_an_answer_reads_back_with_json_to_the_same_labels_and_floats():
    probabilities = np.random.default_rng(1).dirichlet([1, 1, 1], size=500)
    winners = probabilities.argmax(axis=1)
    classes = ["setosa", 'say "50%"', 7]
    answer = json.loads(PredictionEncoders(classes).json(winners, probabilities))
    assert [record["label"] for record in answer["predictions"]] == [
        classes[i] for i in winners.tolist()
    ]
    assert [list(record["probabilities"].values()) for record in answer["predictions"]] == (
        probabilities.tolist()
    )


def test_the_writer_refuses_a_winner_outside_the_classes_and_a_wrong_shape():
    encoders = PredictionEncoders(["a", "b"])
    with pytest.raises(ValueError, match=r"a winning class outside 0\.\.1"):
        encoders.json(np.array([2]), np.array([[0.5, 0.5]]))
    with pytest.raises(ValueError, match=r"probabilities of shape \(1, 3\), expected \(1, 2\)"):
        encoders.jsonlines(np.array([0]), np.array([[0.2, 0.3, 0.5]]))
