"""Progress lines every family's training logs."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from model_kit.families.base import Loss

log = logging.getLogger("model_kit.training")

# Progress lines: every 10 iterations, or fewer so a long run logs about 50 lines.
LOG_EVERY_ITERATIONS = 10
MAX_PROGRESS_LINES = 50


def log_progress(done: int, total: int, losses: Sequence[Loss]) -> None:
    """After iteration ``done`` of ``total``: its (data, metric, value) losses, now and then."""
    every = max(LOG_EVERY_ITERATIONS, total // MAX_PROGRESS_LINES)
    if done % every == 0 or done in (1, total):
        text = ", ".join(f"{data} {metric} {value:.6f}" for data, metric, value in losses)
        log.info("iteration %d/%d: %s", done, total, text)
