"""Request bodies to a feature matrix (float64, NaN = missing), or a precise 400.

Each format has a fast path for the common case and an exact path that either
parses what the fast path refused (e.g. spaces around CSV cells) or raises an
error naming the record, the column and the value. ``benchmarks/serving_choices.py``
holds the measurements behind the choice of fast paths.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence

import numpy as np

from model_kit.serving import fastcsv
from model_kit.serving.errors import RequestError, bad_value

NAN = math.nan
Row = list[float]
# A request body, whole or in the chunks it arrived in (the server passes chunks, so a
# large CSV body is never joined into one more copy).
Body = bytes | Sequence[bytes]


def _whole(body: Body) -> bytes:
    return body if isinstance(body, bytes) else b"".join(body)


def _text(body: bytes) -> str:
    if not body.strip():
        raise RequestError(400, "request body is empty; send at least one record")
    try:
        return body.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise RequestError(
            400, f"request body is not UTF-8 text: byte {exc.start} is {body[exc.start]:#04x}"
        ) from exc


def _no_records() -> RequestError:
    return RequestError(400, "request body holds no records, only blank lines or a header")


def _csv_cell(record: int, line: int, column: str, cell: str) -> float:
    cell = cell.strip()
    if not cell:
        return NAN
    try:
        return float(cell)
    except ValueError:
        raise bad_value(record, column, cell, f" (line {line})") from None


def _csv_rows(text: str, names: Sequence[str], first_line: int) -> np.ndarray:
    """The exact CSV parser: every record checked, empty cells become NaN."""
    width = len(names)
    rows: list[Row] = []
    for line_no, line in enumerate(text.split("\n"), start=first_line):
        if not line.strip():
            continue
        record = len(rows) + 1
        cells = line.removesuffix("\r").split(",")
        if len(cells) != width:
            raise RequestError(
                400,
                f"record {record} (line {line_no}) has {len(cells)} columns; the model expects "
                f"{width}, in this order: {','.join(names)}",
                record=record,
            )
        try:
            rows.append([float(cell) if cell else NAN for cell in cells])
        except ValueError:
            rows.append(
                [
                    _csv_cell(record, line_no, name, cell)
                    for name, cell in zip(names, cells, strict=True)
                ]
            )
    if not rows:
        raise _no_records()
    return np.array(rows, dtype=np.float64)


def _without_header(chunks: list[bytes], names: Sequence[str]) -> list[bytes]:
    """The chunks without their first line if it is the feature names (a header)."""
    first = chunks[0] if chunks else b""
    first_end = first.find(b"\n")
    if first_end < 0 and len(chunks) > 1:  # the first line spans chunks
        return _without_header([b"".join(chunks)], names)
    line = first if first_end < 0 else first[:first_end]
    if line.strip() != ",".join(names).encode():
        return chunks
    return [b"" if first_end < 0 else first[first_end + 1 :], *chunks[1:]]


def parse_csv(body: Body, names: Sequence[str]) -> np.ndarray:
    """One record per line, features in training order; a header line is skipped."""
    chunks = [body] if isinstance(body, bytes) else list(body)
    # The C fast path (fastcsv.c): plain numbers and empty cells, 4x numpy.loadtxt's speed.
    matrix = fastcsv.parse(_without_header(chunks, names), len(names))
    if matrix is not None:
        return matrix
    text = _text(_whole(chunks))
    first_end = text.find("\n")
    first = text if first_end < 0 else text[:first_end]
    first_line = 1
    if first.strip() == ",".join(names):
        text = "" if first_end < 0 else text[first_end + 1 :]
        first_line = 2
    if not text.strip():
        raise _no_records()
    return _csv_rows(text, names, first_line)


def _json_number(record: int, column: str, value: object) -> float:
    if value is None:
        return NAN
    if type(value) in (int, float):
        try:
            return float(value)
        except OverflowError:
            pass
    raise bad_value(record, column, value)


def _instance_row(
    record: int, instance: object, names: Sequence[str], index: dict[str, int]
) -> Row:
    if isinstance(instance, list):
        if len(instance) != len(names):
            raise RequestError(
                400,
                f"record {record} has {len(instance)} values; the model expects {len(names)}, "
                f"in this order: {','.join(names)}",
                record=record,
            )
        return [
            _json_number(record, name, value) for name, value in zip(names, instance, strict=True)
        ]
    if isinstance(instance, dict):
        row = [NAN] * len(names)
        for key, value in instance.items():
            position = index.get(key)
            if position is None:
                raise RequestError(
                    400,
                    f"record {record}: unknown feature {key!r}; allowed: {', '.join(names)} "
                    "(a feature left out is a missing value)",
                    record=record,
                    column=key,
                )
            row[position] = _json_number(record, key, value)
        return row
    raise RequestError(
        400,
        f"record {record} is {json.dumps(instance)[:80]}; expected a list of {len(names)} "
        "values in feature order or an object keyed by feature name",
        record=record,
    )


def _instances_matrix(
    instances: list[object], names: Sequence[str], only_numbers_and_null: bool
) -> np.ndarray:
    """Rows as a matrix; numpy converts directly when the body cannot hold strings or booleans."""
    if only_numbers_and_null:
        try:
            matrix = np.array(instances, dtype=np.float64)
        except (ValueError, TypeError, OverflowError):
            matrix = None
        if matrix is not None and matrix.ndim == 2 and matrix.shape[1] == len(names):
            return matrix
    index = {name: position for position, name in enumerate(names)}
    rows = [
        _instance_row(record, instance, names, index)
        for record, instance in enumerate(instances, start=1)
    ]
    return np.array(rows, dtype=np.float64).reshape(len(rows), len(names))


def _has_no_strings_or_booleans(body: bytes, quotes_allowed: int) -> bool:
    """True when every string in the body is a key we expect: values can only be numbers/null."""
    return body.count(b'"') == quotes_allowed and b"true" not in body and b"false" not in body


def parse_json(body: Body, names: Sequence[str]) -> np.ndarray:
    """``{"instances": [...]}`` or the bare list of instances (what the SageMaker SDK's
    JSONSerializer sends for a list of lists or an array); each instance a list in feature
    order or an object by name. A flat list of numbers is one record."""
    body = _whole(body)
    text = _text(body)
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RequestError(
            400,
            f"request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
        ) from None
    except ValueError as exc:  # e.g. an integer longer than Python's 4300-digit limit
        raise RequestError(400, f"request body is not usable JSON: {exc}") from None
    if isinstance(document, list):
        instances, keys = document, 0
        if document and not any(isinstance(item, list | dict) for item in document):
            instances = [document]
    elif isinstance(document, dict) and "instances" in document:
        unknown = sorted(set(document) - {"instances"})
        if unknown:
            raise RequestError(
                400, f"unknown top-level key {unknown[0]!r} in the JSON body; allowed: 'instances'"
            )
        instances, keys = document["instances"], 1
        if not isinstance(instances, list):
            raise RequestError(400, '"instances" must be a JSON list of records')
    else:
        raise RequestError(
            400,
            'request body must be a JSON object {"instances": [...]} or a JSON list of records',
        )
    if not instances:
        raise _no_records()
    # Each key is two quotes; any other quote is a string value, which the exact path names.
    return _instances_matrix(instances, names, _has_no_strings_or_booleans(body, 2 * keys))


def parse_jsonlines(body: Body, names: Sequence[str]) -> np.ndarray:
    """One instance per line (a list in feature order or an object by name)."""
    body = _whole(body)
    text = _text(body)
    instances = []
    for line_no, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            instances.append(json.loads(line))
        except ValueError as exc:
            record = len(instances) + 1
            reason = (
                f"{exc.msg} at column {exc.colno}"
                if isinstance(exc, json.JSONDecodeError)
                else str(exc)
            )
            raise RequestError(
                400,
                f"record {record} (line {line_no}) is not valid JSON: {reason}",
                record=record,
            ) from None
    if not instances:
        raise _no_records()
    return _instances_matrix(instances, names, _has_no_strings_or_booleans(body, 0))


def parse_npy(body: Body, names: Sequence[str]) -> np.ndarray:
    """One array in NumPy's ``.npy`` format (``np.save``; the SageMaker SDK's NumpySerializer):
    2-D is records by features, 1-D is one record. Numbers only, and never a pickle."""
    data = _whole(body)
    if not data:
        raise RequestError(400, "request body is empty; send at least one record")
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as exc:  # NumPy's header reader fails in many ways (even tokenize's)
        raise RequestError(
            400,
            f"request body is not one NumPy array in .npy format (np.save): "
            f"{type(exc).__name__}: {exc}",
        ) from None
    if not isinstance(array, np.ndarray):  # an .npz archive holds several arrays
        raise RequestError(400, "request body is an .npz archive; send one array (np.save)")
    if array.dtype.kind not in "iuf":
        raise RequestError(
            400,
            f"the array's dtype is {array.dtype}; allowed: integer or floating-point numbers "
            "(NaN for a missing value)",
        )
    if array.ndim == 1:
        array = array.reshape(1, -1)
    if array.ndim != 2:
        raise RequestError(
            400,
            f"the array has {array.ndim} dimensions {array.shape}; send 2 (records by features) "
            "or 1 (one record)",
        )
    if array.shape[0] == 0:
        raise _no_records()
    if array.shape[1] != len(names):
        raise RequestError(
            400,
            f"record 1 has {array.shape[1]} values; the model expects {len(names)}, in this "
            f"order: {','.join(names)}",
            record=1,
        )
    return array.astype(np.float64)
