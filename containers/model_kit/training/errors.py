"""The two ways a training run ends early, kept apart because they exit differently."""

from __future__ import annotations


class TrainingError(Exception):
    """Bad input or configuration; the message tells the user what to fix.

    Messages lead with what is wrong and where (file, row, column, key), then
    what would be valid, so the part SageMaker keeps (1024 characters) says it.
    """


class TrainingStopped(BaseException):
    """SIGTERM/SIGINT arrived (``StopTrainingJob``).

    A ``BaseException`` so that no ``except Exception`` on the way (logging's
    error handler, for one) can swallow it.
    """


def describe_items(items: list[str], limit: int = 20) -> str:
    """``a, b, c`` — shortened so a long column list cannot push the key facts out."""
    shown = ", ".join(items[:limit])
    if len(items) > limit:
        shown += f", ... ({len(items) - limit} more)"
    return shown or "(none)"
