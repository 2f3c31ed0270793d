"""The one timer of the benchmarks: a median of repeated runs (the machine is shared and noisy)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_ms(
    action: Callable[[], object], repeats: int = 7, between: Callable[[], object] | None = None
) -> float:
    """Median wall time of ``action`` over ``repeats`` runs, in milliseconds; ``between``, if
    given, runs untimed before each run (e.g. the other work a server does between two)."""
    timings = []
    for _ in range(repeats):
        if between is not None:
            between()
        started = time.perf_counter()
        action()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings) * 1e3
