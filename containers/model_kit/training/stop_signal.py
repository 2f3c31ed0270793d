"""Stopping on SIGTERM: what ``StopTrainingJob`` sends, 120 s before SIGKILL.

The handler raises :class:`TrainingStopped` at once, so it interrupts data
loading as well as training (the model libraries return to Python after every boosting
iteration, where the exception surfaces). Once the model is being saved, a
signal is only recorded: a half-written model would be worse than a late exit.
"""

from __future__ import annotations

import logging
import signal
from types import FrameType

from model_kit.training.errors import TrainingStopped

log = logging.getLogger(__name__)


class StopRequest:
    """Turns SIGTERM and SIGINT into :class:`TrainingStopped` while interruptible."""

    def __init__(self) -> None:
        self.phase = "starting"
        self.received: str | None = None
        self._interruptible = True

    def install(self) -> StopRequest:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._handle)
        return self

    def finish(self) -> None:
        """From here on, record signals instead of raising them."""
        self._interruptible = False

    def on_iteration(self, done: int, total: int) -> None:
        self.phase = f"training, after iteration {done} of {total}"

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        first = self.received is None
        self.received = signal.Signals(signum).name
        if self._interruptible and first:
            raise TrainingStopped(
                f"training stopped by {self.received} (StopTrainingJob or interrupt) while "
                f"{self.phase}; no model was saved"
            )
        log.warning("%s received while %s; finishing", self.received, self.phase)
