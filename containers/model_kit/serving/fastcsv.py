"""CSV bodies of plain numbers to a feature matrix in C (``fastcsv.c``), through ctypes.

On a 5 MB body ``numpy.loadtxt`` took 26 ms against 54 ms for LightGBM's prediction;
this takes ~5.3 ms (3.8 ms of it in C; 5.7 ms before its reader of plain decimals), and
without the GIL (ctypes releases it), so another request's Python code runs meanwhile
(``benchmarks/serving_choices.py``).
It reads the body in the chunks the server received it in, so a 5 MB body is
not joined into one more 5 MB copy first (5 MB requests: 30 -> 32 requests/s).
It is only a fast path: on a body it does not fully understand it returns
``None``, and ``decoders.parse_csv`` parses the body exactly in Python, or
names what is wrong.

The library is built by ``native.py``.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Sequence

import numpy as np

from model_kit.serving import native


@functools.cache
def _parse_function() -> ctypes._CFuncPtr:  # type: ignore[name-defined]
    function = native.library().fastcsv_parse
    function.restype = ctypes.c_longlong
    function.argtypes = [
        ctypes.POINTER(ctypes.c_char_p),
        ctypes.POINTER(ctypes.c_size_t),
        ctypes.c_size_t,
        ctypes.c_size_t,
        ctypes.c_void_p,
        ctypes.c_size_t,
    ]
    return function


def parse(chunks: Sequence[bytes], width: int) -> np.ndarray | None:
    """The records of a body, given in the chunks it arrived in, as a ``(records, width)``
    float64 matrix; or None.

    None means the body holds something other than plain numbers and empty cells
    in exactly ``width`` columns (or no record at all): the exact parser decides.
    """
    count = len(chunks)
    capacity = sum(chunk.count(b"\n") for chunk in chunks) + 1
    matrix = np.empty((capacity, width), dtype=np.float64)
    starts = (ctypes.c_char_p * count)(*chunks)
    lengths = (ctypes.c_size_t * count)(*map(len, chunks))
    rows = _parse_function()(starts, lengths, count, width, matrix.ctypes.data, capacity)
    if rows <= 0:
        return None
    return matrix[:rows]
