"""What every request decoder must do on any input: the oracles of the fuzzers.

The short pass in `make test` (hypothesis, tests/containers/test_serving_fuzz.py) and the long
coverage-guided runs of `make fuzz` (atheris, `local.fuzz`) check the same two properties:

- the C CSV parser (`fastcsv.c`) either agrees exactly with the Python reference parser, value
  for value and bit for bit, or refuses and leaves the body to it; it never accepts what the
  reference refuses;
- every decoder, on any bytes, returns a float64 matrix of the model's width or raises a
  RequestError (a 4xx), never anything else.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import numpy as np
from model_kit.serving import fastcsv
from model_kit.serving.decoders import _csv_rows, _text
from model_kit.serving.errors import RequestError

NAMES = ("a", "b", "c")


def cut(body: bytes, positions: list[int]) -> list[bytes]:
    """The body in the chunks a server may receive it in."""
    edges = sorted({0, len(body), *(p % (len(body) + 1) for p in positions)})
    return [body[start:end] for start, end in itertools.pairwise(edges)] or [b""]


def reference(body: bytes) -> np.ndarray | None:
    """The exact Python parser's matrix, or None where it refuses the body."""
    try:
        text = _text(body)
        return None if not text.strip() else _csv_rows(text, NAMES, 1)
    except RequestError:
        return None


def same_bits(left: np.ndarray, right: np.ndarray) -> bool:
    """Equal as stored doubles (-0.0 is not 0.0), every NaN equal to every NaN."""
    if left.shape != right.shape:
        return False
    both_nan = np.isnan(left) & np.isnan(right)
    return bool(((left.view(np.uint64) == right.view(np.uint64)) | both_nan).all())


def check_csv(body: bytes, chunks: list[bytes]) -> None:
    fast = fastcsv.parse(chunks, len(NAMES))
    if fast is None:
        return  # refused: the exact parser takes the body over, as the server does
    exact = reference(body)
    assert exact is not None, f"C accepted what Python refuses: {body!r}"
    assert same_bits(fast, exact), f"C and Python differ on {body!r}:\n{fast}\n{exact}"


def decode_or_refuse(decode: Callable[[bytes, Sequence[str]], np.ndarray], body: bytes) -> None:
    try:
        matrix = decode(body, NAMES)
    except RequestError as error:
        assert 400 <= error.status < 500
        return
    assert matrix.dtype == np.float64
    assert matrix.ndim == 2 and matrix.shape[1] == len(NAMES) and matrix.shape[0] >= 1
