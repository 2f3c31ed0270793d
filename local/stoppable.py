"""The one shape of every local service: ``stop()`` ends it, a ``with`` block stops it."""

from __future__ import annotations

from types import TracebackType
from typing import Any, Self


class Stoppable:
    """Mixed into each local service, so tests and the demo can stack them in ``with``."""

    def stop(self) -> Any:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
