"""Split a byte stream into lines without ever holding more than one record.

S3 delivers the object in chunks; a line may span chunks. A line longer than
the request limit can never be sent, so it is reported as soon as it grows past
the limit instead of being buffered to the end.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator


class LineTooLong(Exception):
    """Line ``line_number`` exceeds the byte limit."""

    def __init__(self, line_number: int) -> None:
        super().__init__(line_number)
        self.line_number = line_number


def numbered_lines(chunks: Iterable[bytes], max_line_bytes: int) -> Iterator[tuple[int, bytes]]:
    """Yield ``(line_number, line)`` (1-based, without ``\\n`` or a trailing ``\\r``)."""
    pending = b""
    line_number = 0
    for chunk in chunks:
        pieces = (pending + chunk).split(b"\n")
        pending = pieces.pop()
        for piece in pieces:
            line_number += 1
            yield line_number, _checked(piece.removesuffix(b"\r"), line_number, max_line_bytes)
        if len(pending) > max_line_bytes:
            raise LineTooLong(line_number + 1)
    if pending:
        line_number += 1
        yield line_number, _checked(pending.removesuffix(b"\r"), line_number, max_line_bytes)


def _checked(line: bytes, line_number: int, max_line_bytes: int) -> bytes:
    if len(line) > max_line_bytes:
        raise LineTooLong(line_number)
    return line
