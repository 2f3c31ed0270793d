"""Group records into request bodies that stay under the endpoint's payload limit.

A record is never split: a body closes before the record that would push it
over the limit, and a record that cannot fit even alone is the file's fault.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from input_formats import InputFormat, Record, RecordStream, record_too_large


@dataclass(frozen=True)
class Batch:
    """One request: its records' numbers (and lines) in the file, and its body."""

    index: int
    first_record: int
    lines: tuple[int | None, ...]
    body: bytes

    @property
    def count(self) -> int:
        return len(self.lines)

    def file_record(self, request_record: int) -> int | None:
        """The file-level number of the request's 1-based record ``request_record``."""
        if 1 <= request_record <= self.count:
            return self.first_record + request_record - 1
        return None

    def file_line(self, request_record: int) -> int | None:
        if 1 <= request_record <= self.count:
            return self.lines[request_record - 1]
        return None


def batches(fmt: InputFormat, stream: RecordStream, max_bytes: int) -> Iterator[Batch]:
    """Yield request bodies of at most ``max_bytes`` holding consecutive records."""
    prefix = fmt.request_prefix(stream.header)
    separator, suffix = fmt.request_separator, fmt.request_suffix
    pending: list[Record] = []
    size = 0
    index = 0
    for record in stream.records:
        added = len(record.data) + (len(separator) if pending else 0)
        if pending and len(prefix) + size + added + len(suffix) > max_bytes:
            index += 1
            yield _batch(index, prefix, separator, suffix, pending)
            pending, added, size = [], len(record.data), 0
        if len(prefix) + added + len(suffix) > max_bytes:
            raise record_too_large(
                record.number, record.line, max_bytes - len(prefix) - len(suffix)
            )
        pending.append(record)
        size += added
    if pending:
        yield _batch(index + 1, prefix, separator, suffix, pending)


def _batch(
    index: int, prefix: bytes, separator: bytes, suffix: bytes, records: list[Record]
) -> Batch:
    return Batch(
        index=index,
        first_record=records[0].number,
        lines=tuple(r.line for r in records),
        body=prefix + separator.join(r.data for r in records) + suffix,
    )
