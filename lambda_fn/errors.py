"""The one distinction the handler lives by: is a failure the file's fault or not?

A ``PermanentError`` means retrying cannot help (the file is malformed, of an
unsupported type, or rejected by the model), so it becomes an error report and
the event counts as handled. Every other exception is transient: the handler
raises it so Lambda's asynchronous retries and the on-failure destination keep
the event.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Attempts at one object by a service that runs it for us (an asynchronous invocation, a batch
# transform job) before a failure that is not the file's becomes its error report.
SUBMISSION_ATTEMPTS = 3


@dataclass
class PermanentError(Exception):
    """A failure caused by the object itself; written to ``<key>.error.json``."""

    reason: str
    record: int | None = None
    line: int | None = None
    endpoint_status: int | None = None
    endpoint_message: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        where = f" (record {self.record})" if self.record is not None else ""
        return f"{self.reason}{where}"
