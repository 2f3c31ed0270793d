"""The three input formats: how to read records, frame requests and keep predictions.

The format comes from the key's extension alone, and the Accept type always
equals the Content-Type, so a ``.csv`` yields a ``.out`` of CSV labels, a
``.jsonl`` one JSON prediction per line, a ``.json`` one
``{"predictions": [...]}`` document: the output reads like the input.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from errors import PermanentError
from json_instances import InstanceTooLarge, json_instances
from line_records import LineTooLong, numbered_lines

UTF8_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class Record:
    """One input record: its 1-based number in the file, its line (line formats) and bytes."""

    number: int
    line: int | None
    data: bytes


def record_too_large(number: int, line: int | None, limit: int) -> PermanentError:
    where = f" (line {line})" if line is not None else ""
    return PermanentError(
        f"record {number}{where} is larger than the request limit of {limit} bytes; "
        "a record cannot be split across requests",
        record=number,
        line=line,
    )


class InputFormat(ABC):
    """Reads one object's records and frames them for the endpoint; one instance per object."""

    content_type: str
    request_separator: bytes = b"\n"
    request_suffix: bytes = b""
    output_prefix: bytes = b""
    output_suffix: bytes = b""

    def __init__(self) -> None:
        self.request_prefix = b""
        self.header_line: int | None = None

    @abstractmethod
    def records(self, chunks: Iterable[bytes], max_record_bytes: int) -> Iterator[Record]:
        """Every record of the object, in order; may set ``request_prefix`` (a header)."""

    def predictions(self, body: bytes) -> list[bytes]:
        """Split a response body into one serialized prediction per record."""
        return [line.removesuffix(b"\r") for line in body.split(b"\n") if line.strip()]

    def render(self, predictions: list[bytes], first: bool) -> bytes:
        """The output bytes for predictions of one response (``first``: none written yet)."""
        return b"".join(p + b"\n" for p in predictions)


class _LineFormat(InputFormat):
    """One record per non-blank line; blank lines are not records."""

    def records(self, chunks: Iterable[bytes], max_record_bytes: int) -> Iterator[Record]:
        number = 0
        try:
            for line_number, line in numbered_lines(chunks, max_record_bytes):
                if line_number == 1:
                    line = line.removeprefix(UTF8_BOM)
                if not line.strip():
                    continue
                if number == 0 and self.is_header(line):
                    self.request_prefix = line + b"\n"
                    self.header_line = line_number
                    continue
                number += 1
                yield Record(number, line_number, line)
        except LineTooLong as exc:
            raise record_too_large(number + 1, exc.line_number, max_record_bytes) from exc

    def is_header(self, line: bytes) -> bool:
        return False


class CsvFormat(_LineFormat):
    """CSV, one record per line, features in training order.

    A first line in which no cell is a number is a header. It is sent again at
    the top of every request (the server accepts a header only as a request's
    first line), so the server can check the column names on every request
    rather than the client silently dropping them.
    """

    content_type = "text/csv"

    def is_header(self, line: bytes) -> bool:
        cells = [c.strip().strip(b'"').strip() for c in line.split(b",")]
        return any(cells) and not any(_is_number(c) for c in cells if c)


class JsonLinesFormat(_LineFormat):
    """JSON Lines, one instance (list or object) per line."""

    content_type = "application/jsonlines"


class JsonFormat(InputFormat):
    """One JSON document, streamed instance by instance (see ``json_instances``)."""

    content_type = "application/json"
    request_separator = b","
    request_suffix = b"]}"
    output_prefix = b'{"predictions":['
    output_suffix = b"]}\n"

    def __init__(self) -> None:
        super().__init__()
        self.request_prefix = b'{"instances":['

    def records(self, chunks: Iterable[bytes], max_record_bytes: int) -> Iterator[Record]:
        try:
            for number, data in enumerate(json_instances(chunks, max_record_bytes), start=1):
                yield Record(number, None, data)
        except InstanceTooLarge as exc:
            raise record_too_large(exc.record, None, max_record_bytes) from exc

    def predictions(self, body: bytes) -> list[bytes]:
        try:
            predictions = json.loads(body)["predictions"]
        except (ValueError, KeyError, TypeError) as exc:
            raise PermanentError(
                f'the endpoint answered without a {{"predictions": [...]}} document: {body[:200]!r}'
            ) from exc
        return [
            json.dumps(p, separators=(",", ":"), ensure_ascii=False).encode() for p in predictions
        ]

    def render(self, predictions: list[bytes], first: bool) -> bytes:
        joined = b",".join(predictions)
        return joined if first or not joined else b"," + joined


def _is_number(cell: bytes) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


FORMATS: dict[str, type[InputFormat]] = {
    ".csv": CsvFormat,
    ".jsonl": JsonLinesFormat,
    ".jsonlines": JsonLinesFormat,
    ".json": JsonFormat,
}


def format_for_key(key: str) -> InputFormat:
    """A fresh reader for ``key``'s extension (case-insensitive), or a ``PermanentError``."""
    dot = key.rfind(".")
    extension = key[dot:].lower() if dot > key.rfind("/") else ""
    if extension not in FORMATS:
        raise PermanentError(
            f"unsupported file extension {extension or '(none)'!r} of key {key!r}; "
            f"supported: {', '.join(FORMATS)}"
        )
    return FORMATS[extension]()
