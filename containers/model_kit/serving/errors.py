"""Client errors that become an HTTP status and a JSON body saying what was wrong."""

from __future__ import annotations

import json
from typing import Any


class RequestError(Exception):
    """A request the server refuses; ``record`` is 1-based, ``column`` a feature name."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        record: int | None = None,
        column: str | None = None,
        allowed: list[str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.record = record
        self.column = column
        self.allowed = allowed

    def body(self) -> bytes:
        """``{"error": ..., "record": ..., "column": ..., "allowed": [...]}``, known keys only."""
        payload: dict[str, Any] = {"error": self.message}
        if self.record is not None:
            payload["record"] = self.record
        if self.column is not None:
            payload["column"] = self.column
        if self.allowed is not None:
            payload["allowed"] = self.allowed
        return json.dumps(payload).encode()


MAX_ECHOED_CHARS = 60


def bad_value(record: int, column: str, value: object, where: str = "") -> RequestError:
    """A cell that is not a number: names the record, the column and the value (shortened)."""
    shown = repr(value)
    if len(shown) > MAX_ECHOED_CHARS:
        shown = f"{shown[:MAX_ECHOED_CHARS]}... ({len(shown)} characters)"
    return RequestError(
        400,
        f"record {record}{where}, column {column!r}: {shown} is not a number "
        "(allowed: a number, or an empty cell / null for a missing value)",
        record=record,
        column=column,
    )
