"""Progress lines every family's training logs."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from model_kit.training.hyperparameters import Hyperparameters

log = logging.getLogger("model_kit.training")

# Progress lines: every 10 iterations, or fewer so a long run logs about 50 lines.
LOG_EVERY_ITERATIONS = 10
MAX_PROGRESS_LINES = 50


class ProgressLog:
    """Logs the validation losses every few iterations and counts the iterations run.

    The count is kept here because a model returned after early stopping knows only its
    best iteration, not how many were run.
    """

    def __init__(self, on_iteration: Callable[[int, int], None]) -> None:
        self.done = 0
        self._on_iteration = on_iteration

    def iteration(self, done: int, total: int, losses: list[tuple[str, str, float]]) -> None:
        """After iteration ``done`` of ``total``: the (data, metric, value) losses."""
        self.done = done
        self._on_iteration(done, total)
        every = max(LOG_EVERY_ITERATIONS, total // MAX_PROGRESS_LINES)
        if done % every == 0 or done in (1, total):
            text = ", ".join(f"{data} {metric} {value:.6f}" for data, metric, value in losses)
            log.info("iteration %d/%d: %s", done, total, text)

    def finished(self, hp: Hyperparameters, best_iteration: int) -> None:
        if self.done < hp.num_iterations:
            log.info(
                "early stopping after iteration %d: the validation loss has not improved for "
                "%d iterations; best iteration %d",
                self.done,
                hp.early_stopping_rounds,
                best_iteration,
            )
