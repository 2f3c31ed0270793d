"""The checkpoint folder of a run: which checkpoint to resume, when to write one, what to delete.

SageMaker creates ``/opt/ml/checkpoints`` only for a job with a CheckpointConfig, syncs it to
S3 and restores it into a new run of the job (managed spot training, or a stopped job
retried). Without the folder nothing is written. A checkpoint is resumed only by a run of
the same family on the same data with the same settings (``fingerprints``); the newest such
one wins, and every checkpoint passed over is logged with the reason.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from model_kit.training.checkpoint_files import (
    InvalidCheckpoint,
    Manifest,
    checkpoint_files,
    read_checkpoint,
    remove_partial_writes,
    write_checkpoint,
)
from model_kit.training.errors import describe_items
from model_kit.training.fingerprints import data_sha256, model_settings, settings_sha256

if TYPE_CHECKING:
    from model_kit.families.base import ModelFamily
    from model_kit.paths import MLPaths
    from model_kit.training.early_stopping import EarlyStopping
    from model_kit.training.hyperparameters import Hyperparameters
    from model_kit.training.prepare import PreparedData

log = logging.getLogger(__name__)

# Complete checkpoints kept in the folder: the newest, and one in case it is damaged later.
KEEP = 2


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    manifest: Manifest
    payload: bytes


@dataclass(frozen=True)
class Identity:
    """What this run would write into a manifest, and a resumable checkpoint must hold."""

    family: str
    data_sha256: str
    settings: dict[str, Any]
    settings_sha256: str

    def check(self, manifest: Manifest) -> None:
        if manifest.family != self.family:
            raise InvalidCheckpoint(
                f"written by the {manifest.family} family; this run trains {self.family}"
            )
        if manifest.settings_sha256 != self.settings_sha256:
            raise InvalidCheckpoint(
                "written with other settings: "
                + describe_items(differences(manifest.settings, self.settings))
            )
        if manifest.data_sha256 != self.data_sha256:
            raise InvalidCheckpoint(
                "written for other data: the training or validation set differs from this run's"
            )


def differences(there: dict[str, Any], here: dict[str, Any]) -> list[str]:
    """``learning_rate 0.2 there, 0.1 here``: the values of two settings that differ."""
    changes = []
    for section in sorted(there.keys() | here.keys()):
        old, new = there.get(section), here.get(section)
        if isinstance(old, dict) and isinstance(new, dict):
            changes += [
                f"{key} {old.get(key)!r} there, {new.get(key)!r} here"
                for key in sorted(old.keys() | new.keys())
                if old.get(key) != new.get(key)
            ]
        elif old != new:
            changes.append(f"{section} {old!r} there, {new!r} here")
    return changes


class CheckpointFolder:
    """Reads the folder once at start, then writes a checkpoint when one is due."""

    def __init__(self, folder: Path, identity: Identity, hp: Hyperparameters) -> None:
        self.folder = folder
        self._identity = identity
        self._every_iterations = hp.checkpoint_every_iterations
        self._every_seconds = hp.checkpoint_every_seconds
        # This run's complete checkpoints (the one it resumed, those it wrote), oldest first.
        self._complete: list[tuple[int, Path]] = []
        self._due_after = (0, time.monotonic())

    @classmethod
    def open(
        cls, paths: MLPaths, hp: Hyperparameters, data: PreparedData, family: ModelFamily
    ) -> CheckpointFolder | None:
        """The run's checkpoint folder; None, logged, when the job has none."""
        folder = paths.checkpoint_dir
        if not folder.is_dir():
            log.info(
                "checkpoints off: %s does not exist (SageMaker creates it for a job with a "
                "CheckpointConfig)",
                folder,
            )
            return None
        for name in remove_partial_writes(folder):
            log.info("deleted %s, left by an interrupted checkpoint write", name)
        settings = model_settings(hp, family)
        identity = Identity(family.name, data_sha256(data), settings, settings_sha256(settings))
        log.info(
            "checkpoints on, in %s: every %d iterations or %d s, and when stopped",
            folder,
            hp.checkpoint_every_iterations,
            hp.checkpoint_every_seconds,
        )
        return cls(folder, identity, hp)

    def newest_valid(self) -> Checkpoint | None:
        """The newest checkpoint this run can continue; each one passed over is logged."""
        for path in checkpoint_files(self.folder):
            try:
                manifest, payload = read_checkpoint(path)
                self._identity.check(manifest)
            except InvalidCheckpoint as reason:
                log.warning("ignoring checkpoint %s: %s", path.name, reason)
                continue
            self._complete.append((manifest.iteration, path))
            self._due_after = (manifest.iteration, time.monotonic())
            return Checkpoint(path, manifest, payload)
        return None

    def due(self, done: int) -> bool:
        iteration, when = self._due_after
        return (
            done - iteration >= self._every_iterations
            or time.monotonic() - when >= self._every_seconds
        )

    def latest(self, iteration: int) -> Path | None:
        """This run's newest complete checkpoint, if it is of ``iteration``."""
        if self._complete and self._complete[-1][0] == iteration:
            return self._complete[-1][1]
        return None

    def write(
        self, iteration: int, stopping: EarlyStopping, elapsed: float, payload: bytes
    ) -> Path | None:
        """Write the checkpoint of ``iteration``, then delete all but the newest ones.

        A failed write (a full disk) is logged and training goes on: a checkpoint saves
        time, the model is what the job is for.
        """
        self._due_after = (iteration, time.monotonic())
        manifest = Manifest(
            family=self._identity.family,
            iteration=iteration,
            data_sha256=self._identity.data_sha256,
            settings=self._identity.settings,
            settings_sha256=self._identity.settings_sha256,
            best_iteration=stopping.best_iteration,
            best_loss=float(stopping.best_loss),
            elapsed_seconds=round(elapsed, 3),
        )
        try:
            path = write_checkpoint(self.folder, manifest, payload)
        except OSError as exc:
            log.warning("checkpoint of iteration %d not written: %s", iteration, exc)
            return None
        self._complete.append((iteration, path))
        self._delete_older()
        log.info("checkpoint %s written (%d bytes of model)", path.name, len(payload))
        return path

    def _delete_older(self) -> None:
        """Every checkpoint but this run's newest: older ones, and any it could not use."""
        keep = {path for _, path in self._complete[-KEEP:]}
        for path in checkpoint_files(self.folder):
            if path not in keep:
                path.unlink(missing_ok=True)
