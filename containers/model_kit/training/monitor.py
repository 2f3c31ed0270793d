"""What the kit does after each iteration of any family: the ``on_iteration`` of ``fit``.

It logs progress, keeps the early-stopping state, names the phase a StopTrainingJob would
interrupt, and writes checkpoints: now and then, and of the last iteration it recorded when
the job is stopped. SIGTERM raises where Python happens to be, possibly after the library
grew iteration k + 1 but before this saw it: a checkpoint is therefore always of the
iteration recorded here, cut from the model by the family's snapshot, never of the booster
as it stands.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from model_kit.families.base import Resume
from model_kit.training.early_stopping import EarlyStopping
from model_kit.training.progress import log_progress

if TYPE_CHECKING:
    from model_kit.families.base import Loss, Snapshot
    from model_kit.training.checkpoints import Checkpoint, CheckpointFolder
    from model_kit.training.hyperparameters import Hyperparameters
    from model_kit.training.stop_signal import StopRequest

log = logging.getLogger("model_kit.training")


@dataclass(frozen=True)
class Recorded:
    """The last iteration seen and what a checkpoint of it needs; replaced in one assignment,
    so a signal finds the previous iteration or this one, never a mix."""

    done: int
    stopping: EarlyStopping
    snapshot: Snapshot | None = None


class TrainingMonitor:
    """Called by the family after each iteration; says when training ends."""

    def __init__(
        self, hp: Hyperparameters, stop: StopRequest, checkpoints: CheckpointFolder | None
    ) -> None:
        self._stop = stop
        self._checkpoints = checkpoints
        self._started = time.monotonic()
        self._elapsed_before = 0.0
        self._recorded = Recorded(0, EarlyStopping(hp.early_stopping_rounds))
        # Where the family continues from, if a checkpoint allows it.
        self.resume: Resume | None = None
        if checkpoints is None:
            return
        checkpoint = checkpoints.newest_valid()
        if checkpoint is None:
            log.info("no checkpoint to resume from: training from the first iteration")
        else:
            self._resume_from(checkpoint, hp)

    def _resume_from(self, checkpoint: Checkpoint, hp: Hyperparameters) -> None:
        manifest = checkpoint.manifest
        stopping = EarlyStopping(
            hp.early_stopping_rounds, manifest.best_iteration, manifest.best_loss
        )
        keep = stopping.final(manifest.iteration, hp.num_iterations)
        self._recorded = Recorded(manifest.iteration, stopping)
        self._elapsed_before = manifest.elapsed_seconds
        self._stop.on_iteration(manifest.iteration, hp.num_iterations)
        self.resume = Resume(manifest.iteration, checkpoint.payload, keep)
        log.info(
            "resuming from %s: iteration %d of %d (best iteration %d, validation loss %.6f; "
            "%.1f s of training before)%s",
            checkpoint.path.name,
            manifest.iteration,
            hp.num_iterations,
            manifest.best_iteration,
            manifest.best_loss,
            manifest.elapsed_seconds,
            "" if keep is None else f"; training had ended there, keeping {keep} iterations",
        )

    def __call__(
        self,
        done: int,
        total: int,
        losses: Sequence[Loss] = (),
        snapshot: Snapshot | None = None,
    ) -> int | None:
        stopping = self._recorded.stopping
        if losses:
            stopping = stopping.after(done, losses[0][2])
        self._recorded = Recorded(done, stopping, snapshot)
        self._stop.on_iteration(done, total)
        log_progress(done, total, losses)
        checkpoints = self._checkpoints
        if checkpoints is not None and snapshot is not None and checkpoints.due(done):
            self._write(checkpoints, self._recorded, snapshot)
        keep = stopping.final(done, total)
        if keep is not None and done < total:
            log.info(
                "early stopping after iteration %d: the validation loss has not improved for "
                "%d iterations; best iteration %d",
                done,
                stopping.rounds,
                keep,
            )
        return keep

    def checkpoint_on_stop(self) -> str:
        """After SIGTERM: a checkpoint of the last recorded iteration; words for the reason."""
        recorded, checkpoints = self._recorded, self._checkpoints
        if checkpoints is None or recorded.done == 0:
            return ""
        path = checkpoints.latest(recorded.done)
        if path is None and recorded.snapshot is not None:
            path = self._write(checkpoints, recorded, recorded.snapshot)
        if path is None:
            return ""
        return f"; {path.name} holds iteration {recorded.done}: a rerun of this job resumes from it"

    def _write(
        self, checkpoints: CheckpointFolder, recorded: Recorded, snapshot: Snapshot
    ) -> Path | None:
        elapsed = self._elapsed_before + time.monotonic() - self._started
        payload = snapshot(recorded.done)
        return checkpoints.write(recorded.done, recorded.stopping, elapsed, payload)
