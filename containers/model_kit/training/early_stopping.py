"""Early stopping decided by the kit, so that its state can go into a checkpoint.

The libraries' own callbacks keep their count where no checkpoint can reach it: a resumed
run would start counting afresh and stop elsewhere. The rule is theirs, with ``min_delta``
0: an iteration improves when its validation loss is strictly lower than the best so far
(the first one always does), and training stops once ``rounds`` iterations in a row have not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class EarlyStopping:
    """The best iteration so far; immutable, so a signal never sees half an update."""

    rounds: int  # 0: off
    best_iteration: int = 0
    best_loss: float = math.inf

    def after(self, done: int, loss: float) -> EarlyStopping:
        if self.best_iteration == 0 or loss < self.best_loss:
            return replace(self, best_iteration=done, best_loss=loss)
        return self

    def stops(self, done: int) -> bool:
        """``rounds`` iterations without improvement (never when no loss was seen)."""
        if self.rounds == 0 or self.best_iteration == 0:
            return False
        return done - self.best_iteration >= self.rounds

    def final(self, done: int, total: int) -> int | None:
        """If training ends after iteration ``done`` of ``total``: the iterations the model
        keeps (the best, or all of them when early stopping is off or saw no loss)."""
        if not (self.stops(done) or done >= total):
            return None
        return self.best_iteration if self.rounds and self.best_iteration else done
