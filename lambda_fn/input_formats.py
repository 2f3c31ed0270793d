"""The three input formats: how to read records, frame requests and keep predictions.

The format comes from the key's extension alone, and the Accept type always
equals the Content-Type, so a ``.csv`` yields a ``.out`` of CSV labels, a
``.jsonl`` one JSON prediction per line, a ``.json`` one
``{"predictions": [...]}`` document: the output reads like the input.
"""

from __future__ import annotations

import itertools
import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from errors import PermanentError
from file_types import MEDIA_TYPES
from json_instances import InstanceTooLarge, json_instances
from line_records import LineTooLong, numbered_lines

UTF8_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class Record:
    """One input record: its 1-based number in the file, its line (line formats) and bytes."""

    number: int
    line: int | None
    data: bytes


@dataclass(frozen=True)
class Header:
    """A CSV header: resent atop every request, and named when the endpoint rejects it."""

    line: int
    data: bytes


@dataclass(frozen=True)
class RecordStream:
    """One object as read: its header, known before any record, and its records, lazily."""

    header: Header | None
    records: Iterator[Record]


def record_too_large(number: int, line: int | None, limit: int) -> PermanentError:
    where = f" (line {line})" if line is not None else ""
    return PermanentError(
        f"record {number}{where} is larger than the request limit of {limit} bytes; "
        "a record cannot be split across requests",
        record=number,
        line=line,
    )


class InputFormat(ABC):
    """Reads records and frames them for the endpoint; stateless, so one instance serves all."""

    content_type: str
    request_separator: bytes = b"\n"
    request_suffix: bytes = b""
    output_prefix: bytes = b""
    output_suffix: bytes = b""

    @abstractmethod
    def read(self, chunks: Iterable[bytes], max_record_bytes: int) -> RecordStream:
        """The object's header and its records, in order.

        The header is part of the returned value, so what a request holds never
        depends on how far some other reader has consumed the records.
        """

    def request_prefix(self, header: Header | None) -> bytes:
        """What opens every request body of an object with ``header``."""
        return header.data + b"\n" if header else b""

    def predictions(self, body: bytes) -> list[bytes]:
        """Split a response body into one serialized prediction per record."""
        return [line.removesuffix(b"\r") for line in body.split(b"\n") if line.strip()]

    def render(self, predictions: list[bytes], first: bool) -> bytes:
        """The output bytes for predictions of one response (``first``: none written yet)."""
        return b"".join(p + b"\n" for p in predictions)


class _LineFormat(InputFormat):
    """One record per non-blank line; blank lines are not records.

    The first non-blank line is read at once: whether it is a header must be
    known before any request can be framed.
    """

    def read(self, chunks: Iterable[bytes], max_record_bytes: int) -> RecordStream:
        lines = _content_lines(chunks, max_record_bytes)
        try:
            first = next(lines, None)
        except LineTooLong as exc:
            raise record_too_large(1, exc.line_number, max_record_bytes) from exc
        if first is not None and self.is_header(first[1]):
            return RecordStream(Header(*first), _line_records(lines, max_record_bytes))
        rest = lines if first is None else itertools.chain([first], lines)
        return RecordStream(None, _line_records(rest, max_record_bytes))

    def is_header(self, line: bytes) -> bool:
        return False


def _content_lines(chunks: Iterable[bytes], max_line_bytes: int) -> Iterator[tuple[int, bytes]]:
    """The numbered non-blank lines, without a UTF-8 byte order mark."""
    for line_number, line in numbered_lines(chunks, max_line_bytes):
        if line_number == 1:
            line = line.removeprefix(UTF8_BOM)
        if line.strip():
            yield line_number, line


def _line_records(lines: Iterator[tuple[int, bytes]], max_record_bytes: int) -> Iterator[Record]:
    number = 0
    try:
        for line_number, line in lines:
            number += 1
            yield Record(number, line_number, line)
    except LineTooLong as exc:
        raise record_too_large(number + 1, exc.line_number, max_record_bytes) from exc


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

    def read(self, chunks: Iterable[bytes], max_record_bytes: int) -> RecordStream:
        return RecordStream(None, _json_records(chunks, max_record_bytes))

    def request_prefix(self, header: Header | None) -> bytes:
        return b'{"instances":['

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


def _json_records(chunks: Iterable[bytes], max_record_bytes: int) -> Iterator[Record]:
    try:
        for number, data in enumerate(json_instances(chunks, max_record_bytes), start=1):
            yield Record(number, None, data)
    except InstanceTooLarge as exc:
        raise record_too_large(exc.record, None, max_record_bytes) from exc


def _is_number(cell: bytes) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


_BY_MEDIA_TYPE = {fmt.content_type: fmt for fmt in (CsvFormat(), JsonLinesFormat(), JsonFormat())}
FORMATS: dict[str, InputFormat] = {
    extension: _BY_MEDIA_TYPE[media_type] for extension, media_type in MEDIA_TYPES.items()
}


def format_for_key(key: str) -> InputFormat:
    """The format of ``key``'s extension (case-insensitive), or a ``PermanentError``."""
    dot = key.rfind(".")
    extension = key[dot:].lower() if dot > key.rfind("/") else ""
    if extension not in FORMATS:
        raise PermanentError(
            f"unsupported file extension {extension or '(none)'!r} of key {key!r}; "
            f"supported: {', '.join(FORMATS)}"
        )
    return FORMATS[extension]
