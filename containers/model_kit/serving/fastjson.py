"""JSON and JSON Lines answers in C (``fastjson.c``), through ctypes.

Encoding the answer to a 5 MB request (about 23,000 records of labels and probabilities)
took 28-40 ms with Python's %-templates, more than half of predicting it; this writes the
same bytes in about 3 ms, without the GIL (``make bench``, ``benchmarks/serving_choices.py``).
It knows no JSON: the caller gives the constant text around the numbers, and it writes each
probability exactly as ``repr`` would.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from model_kit.serving import native


class _Text(ctypes.Structure):
    _fields_ = [("start", ctypes.c_char_p), ("length", ctypes.c_size_t)]


class _Answer(ctypes.Structure):
    _fields_ = [
        ("opening", _Text),
        ("separator", _Text),
        ("closing", _Text),
        ("record_end", _Text),
        ("heads", ctypes.POINTER(_Text)),
        ("gaps", ctypes.POINTER(_Text)),
        ("classes", ctypes.c_size_t),
    ]


def _text(value: str) -> _Text:
    encoded = value.encode()
    return _Text(encoded, len(encoded))


@dataclass(frozen=True)
class AnswerText:
    """The constant text of an answer: a record is ``heads[winner] p0 gaps[1] p1 ... record_end``.

    Records are joined by ``separator`` between ``opening`` and ``closing``.
    """

    opening: str
    separator: str
    closing: str
    heads: Sequence[str]
    gaps: Sequence[str]
    record_end: str


class AnswerWriter:
    """Writes answers of one shape (one model's classes, one media type)."""

    def __init__(self, text: AnswerText) -> None:
        if not text.heads or len(text.heads) != len(text.gaps):
            raise ValueError("an answer needs one head and one gap per class, and a class")
        heads = [_text(head) for head in text.heads]
        gaps = [_text(gap) for gap in text.gaps]
        # The structure points into these arrays and their bytes: keep them alive with it.
        self._arrays = ((_Text * len(heads))(*heads), (_Text * len(gaps))(*gaps))
        self._answer = _Answer(
            _text(text.opening),
            _text(text.separator),
            _text(text.closing),
            _text(text.record_end),
            self._arrays[0],
            self._arrays[1],
            len(heads),
        )
        self._fixed = self._answer.opening.length + self._answer.closing.length
        self._record_bound = _functions()[0](ctypes.byref(self._answer))

    def write(self, winners: np.ndarray, probabilities: np.ndarray) -> bytes:
        """The answer for ``probabilities`` (records x classes) and each record's winning class."""
        winners = np.ascontiguousarray(winners, dtype=np.int64)
        probabilities = np.ascontiguousarray(probabilities, dtype=np.float64)
        records = len(winners)
        if probabilities.shape != (records, self._answer.classes):
            raise ValueError(
                f"probabilities of shape {probabilities.shape}, expected "
                f"({records}, {self._answer.classes})"
            )
        capacity = self._fixed + records * self._record_bound
        out = bytearray(capacity)
        written = _functions()[1](
            ctypes.byref(self._answer),
            winners.ctypes.data,
            probabilities.ctypes.data,
            records,
            ctypes.addressof((ctypes.c_char * capacity).from_buffer(out)),
            capacity,
        )
        if written < 0:
            raise ValueError(f"a winning class outside 0..{self._answer.classes - 1}")
        return memoryview(out)[:written].tobytes()


@functools.cache
def _functions() -> tuple[ctypes._CFuncPtr, ctypes._CFuncPtr]:  # type: ignore[name-defined]
    library = native.library()
    bound, write = library.fastjson_record_bound, library.fastjson_write
    bound.restype, bound.argtypes = ctypes.c_size_t, [ctypes.POINTER(_Answer)]
    write.restype = ctypes.c_longlong
    write.argtypes = [
        ctypes.POINTER(_Answer),
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_void_p,
        ctypes.c_size_t,
    ]
    return bound, write
