"""Every request decoder under property-based fuzzing (a short pass; `make fuzz` runs long ones).

- The C CSV parser (`fastcsv.c`) either agrees exactly with the Python reference parser,
  value for value and bit for bit, or refuses and leaves the body to it; it never accepts
  what the reference refuses.
- Every decoder (CSV, JSON, JSON Lines, npy), on any bytes, returns a float64 matrix of the
  model's width or a RequestError: never another exception, a crash or a hang.
- Inputs that once broke a decoder (found by `make fuzz`) stay as regressions
  (`fuzz_regressions/`).
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from model_kit.serving.formats import FORMATS

from local.decoder_oracles import check_csv, cut, decode_or_refuse

REGRESSIONS = sorted(Path(__file__).with_name("fuzz_regressions").glob("*"))
QUICK = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Cells a CSV client may send: numbers of every shape, blanks, and near-numbers.
numbers = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, width=64).map(repr),
    st.floats(allow_nan=False, allow_infinity=False, width=32).map(lambda v: f"{v:.9g}"),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.from_regex(r"[+-]?[0-9]{0,25}(\.[0-9]{0,25})?([eE][+-]?[0-9]{1,3})?", fullmatch=True),
)
cells = st.one_of(
    numbers,
    st.just(""),
    st.text(alphabet="0123456789+-.eE nainfNAIF\"'x\t", max_size=10),
)
lines = st.lists(cells, min_size=1, max_size=5).map(",".join)
bodies = st.tuples(
    st.lists(lines, min_size=0, max_size=12), st.sampled_from(["\n", "\r\n"]), st.booleans()
).map(lambda parts: parts[1].join(parts[0]) + (parts[1] if parts[2] else ""))


@QUICK
@given(text=bodies, positions=st.lists(st.integers(min_value=0), max_size=4))
def test_c_csv_parser_agrees_with_python_or_refuses(text, positions):
    body = text.encode()
    check_csv(body, cut(body, positions))


@QUICK
@given(body=st.binary(max_size=200), positions=st.lists(st.integers(min_value=0), max_size=3))
def test_c_csv_parser_on_any_bytes(body, positions):
    check_csv(body, cut(body, positions))


json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(10**400), max_value=10**400),
        st.floats(),
        st.text(max_size=5),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.dictionaries(st.sampled_from(["a", "b", "c", "d", "instances"]), inner, max_size=4),
    ),
    max_leaves=20,
)


@QUICK
@given(value=json_values)
def test_json_decoders_return_a_matrix_or_a_400(value):
    text = json.dumps(value, allow_nan=True)
    for fmt in FORMATS:
        if fmt.media_type.endswith("json"):
            decode_or_refuse(fmt.decode, text.encode())
            decode_or_refuse(fmt.decode, json.dumps({"instances": value}).encode())
        if fmt.media_type.endswith("jsonlines"):
            rows = value if isinstance(value, list) else [value]
            decode_or_refuse(fmt.decode, "\n".join(json.dumps(r) for r in rows).encode())


def filled(shape: tuple[int, ...], dtype: str, fill: float) -> np.ndarray:
    with np.errstate(invalid="ignore"):  # NaN or infinity cast to an integer dtype
        return np.full(shape, fill).astype(dtype)


arrays = st.builds(
    filled,
    st.lists(st.integers(min_value=0, max_value=4), min_size=0, max_size=3).map(tuple),
    st.sampled_from(["f8", "f4", "f2", "i8", "u1", "i2", "b1", "c16", "U3", ">f8"]),
    st.sampled_from([0, 1, -1, math.nan, math.inf]),
)


def npy_bytes(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, array)
    return out.getvalue()


@QUICK
@given(array=arrays, cut_at=st.integers(min_value=0, max_value=400))
def test_npy_decoder_returns_a_matrix_or_a_400(array, cut_at):
    (npy,) = (fmt for fmt in FORMATS if fmt.media_type == "application/x-npy")
    body = npy_bytes(array)
    decode_or_refuse(npy.decode, body)
    decode_or_refuse(npy.decode, body[:cut_at])


@QUICK
@given(body=st.binary(max_size=300))
def test_every_decoder_on_any_bytes_returns_a_matrix_or_a_400(body):
    for fmt in FORMATS:
        decode_or_refuse(fmt.decode, body)


@pytest.mark.parametrize("path", REGRESSIONS, ids=lambda path: path.name)
def test_inputs_that_once_broke_a_decoder(path):
    body = path.read_bytes()
    check_csv(body, [body])
    for fmt in FORMATS:
        decode_or_refuse(fmt.decode, body)
