"""Checkpoints: the real training program stopped part-way, then run again on the same folder.

SageMaker restores ``/opt/ml/checkpoints`` into a rerun of a job; here the reruns share one
ML_ROOT. A resumed run must end with the model an uninterrupted run trains, early stopping
included, and must pass over, with a reason, every checkpoint it cannot continue.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    TRAIN_PROGRAM,
    TRAINING_CSV,
    VALIDATION_CSV,
    csv_text,
    make_ml_root,
    read_csv_rows,
)
from model_kit import families
from model_kit.families.base import Resume
from model_kit.model_io import METADATA_FILE, load_model
from model_kit.paths import MLPaths
from model_kit.training import checkpoints
from model_kit.training.checkpoint_files import (
    InvalidCheckpoint,
    Manifest,
    read_checkpoint,
    write_checkpoint,
)
from model_kit.training.checkpoints import CheckpointFolder, Identity
from model_kit.training.errors import TrainingError
from model_kit.training.hyperparameters import Hyperparameters, parse_hyperparameters
from model_kit.training.prepare import prepare_data
from test_training_stop import EXIT_STOPPED, large_training_csv

FAMILIES = sorted(families.MODULES)
TIMEOUT = 120
WRITTEN = re.compile(r"checkpoint checkpoint-(\d+)\.ckpt written")
CHECKPOINTED = re.compile(
    r"; checkpoint-(\d{6})\.ckpt holds iteration (\d+): a rerun of this job resumes from it$"
)
# Early stopping ends these runs (best iteration 141 or 181, then 150 more); the data makes
# an iteration take milliseconds, so that a SIGTERM lands where the test aims it.
NUM_ITERATIONS = 2000
EARLY_STOPPING = {
    "num_iterations": NUM_ITERATIONS,
    "learning_rate": 0.02,
    "early_stopping_rounds": 150,
    "checkpoint_every_iterations": 10,
}
SHORT = {"num_iterations": 30, "early_stopping_rounds": 0, "checkpoint_every_iterations": 10}


@dataclass(frozen=True)
class Run:
    exit_code: int
    log: str
    failure: str
    checkpoints: list[str]  # the checkpoint folder's files when the run had ended


class Training:
    """The training program running on ``ml_root``, as an image for ``family`` runs it."""

    def __init__(self, ml_root: Path, family: str) -> None:
        (ml_root / "output" / "failure").unlink(missing_ok=True)  # a new container's output
        self.ml_root = ml_root
        self.log_file = Path(tempfile.mkstemp(suffix=".log", dir=ml_root.parent)[1])
        with self.log_file.open("w") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(TRAIN_PROGRAM)],
                env={**os.environ, "ML_ROOT": str(ml_root), families.VARIABLE: family},
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def stop_when(self, condition: Callable[[str], bool]) -> Training:
        """SIGTERM as soon as ``condition`` holds for the log so far."""
        deadline = time.monotonic() + TIMEOUT
        try:
            while not condition(self.log_file.read_text()):
                assert self.process.poll() is None, f"ended early:\n{self.log_file.read_text()}"
                assert time.monotonic() < deadline, self.log_file.read_text()
                time.sleep(0.01)
        except BaseException:
            self._kill()
            raise
        self.process.send_signal(signal.SIGTERM)
        return self

    def result(self) -> Run:
        try:
            exit_code = self.process.wait(timeout=TIMEOUT)
        finally:
            self._kill()
        failure = self.ml_root / "output" / "failure"
        folder = self.ml_root / "checkpoints"
        return Run(
            exit_code,
            self.log_file.read_text(),
            failure.read_text() if failure.exists() else "",
            sorted(p.name for p in folder.iterdir()) if folder.is_dir() else [],
        )

    def _kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def train_all(ml_roots: list[Path], family: str) -> list[Run]:
    """Several runs at once: most of a short run is importing the libraries."""
    return [training.result() for training in [Training(root, family) for root in ml_roots]]


def written_after(iteration: int) -> Callable[[str], bool]:
    return lambda log: any(int(n) > iteration for n in WRITTEN.findall(log))


def checkpointed_iteration(run: Run) -> int:
    """The iteration a stopped run's failure reason says it checkpointed."""
    assert run.exit_code == EXIT_STOPPED, run.log
    match = CHECKPOINTED.search(run.failure.rstrip())
    assert match, run.failure
    assert int(match[1]) == int(match[2])
    return int(match[2])


def metadata(ml_root: Path) -> dict:
    return json.loads((ml_root / "model" / METADATA_FILE).read_text())


def model_files(ml_root: Path) -> dict[str, bytes]:
    """The family's own model file(s): what the trees are."""
    model_dir = ml_root / "model"
    return {p.name: p.read_bytes() for p in model_dir.iterdir() if p.name != METADATA_FILE}


@pytest.fixture(scope="module")
def tiled_channels() -> dict:
    return {"training": {"big.csv": large_training_csv(copies=60)}, "validation": VALIDATION_CSV}


@dataclass(frozen=True)
class StoppedTwice:
    """One run uninterrupted; one stopped before its best iteration, resumed, stopped again
    between its best iteration and early stopping, and resumed to the end."""

    reference_root: Path
    reference: Run
    ml_root: Path
    first: Run
    second: Run
    third: Run


@pytest.fixture(scope="module", params=FAMILIES)
def stopped_twice(request, tmp_path_factory, tiled_channels) -> StoppedTwice:
    family = request.param
    tmp = tmp_path_factory.mktemp(f"stopped_twice_{family}")
    reference_root, ml_root = (
        make_ml_root(tmp / name, channels=tiled_channels, hyperparameters=EARLY_STOPPING)
        for name in ("reference", "ml")
    )
    (ml_root / "checkpoints").mkdir()
    uninterrupted = Training(reference_root, family)
    first = Training(ml_root, family).stop_when(written_after(0)).result()
    reference = uninterrupted.result()
    assert reference.exit_code == 0, reference.log
    best = metadata(reference_root)["best_iteration"]
    second = Training(ml_root, family).stop_when(written_after(best)).result()
    third = Training(ml_root, family).result()
    return StoppedTwice(reference_root, reference, ml_root, first, second, third)


def test_sigterm_checkpoints_the_last_iteration_and_the_reason_says_so(stopped_twice):
    first = stopped_twice.first
    iteration = checkpointed_iteration(first)
    assert re.match(
        r"training stopped by SIGTERM \(StopTrainingJob or interrupt\) while training, after "
        rf"iteration \d+ of {NUM_ITERATIONS}; no model was saved; ",
        first.failure,
    )
    assert f"checkpoint-{iteration:06d}.ckpt" in first.checkpoints
    assert len(first.checkpoints) <= 2, "only the newest two are kept"
    assert all(name.endswith(".ckpt") for name in first.checkpoints)
    assert "Traceback" not in first.log


def test_each_rerun_resumes_from_the_checkpoint_the_stopped_run_named(stopped_twice):
    first, second, third = stopped_twice.first, stopped_twice.second, stopped_twice.third
    for stopped, rerun in ((first, second), (second, third)):
        iteration = checkpointed_iteration(stopped)
        assert (
            f"resuming from checkpoint-{iteration:06d}.ckpt: iteration {iteration} of "
            f"{NUM_ITERATIONS} (best iteration "
        ) in rerun.log
    assert third.exit_code == 0, third.log
    assert metadata(stopped_twice.ml_root)["resumed_from_iteration"] == checkpointed_iteration(
        second
    )
    assert metadata(stopped_twice.reference_root)["resumed_from_iteration"] is None


def test_the_resumed_model_is_the_uninterrupted_one(stopped_twice):
    """With the defaults (deterministic, no row or column sampling) both libraries grow the
    same trees after a resume: the model files are byte for byte the same."""
    reference_root, ml_root = stopped_twice.reference_root, stopped_twice.ml_root
    best = metadata(reference_root)["best_iteration"]
    assert checkpointed_iteration(stopped_twice.first) < best, "trees grown after a resume count"
    assert model_files(ml_root) == model_files(reference_root)
    _, rows = read_csv_rows(VALIDATION_CSV)
    features = np.array([[float(v) for v in row[:-1]] for row in rows])
    resumed, uninterrupted = load_model(ml_root / "model"), load_model(reference_root / "model")
    assert np.array_equal(resumed.predict_proba(features), uninterrupted.predict_proba(features))


def test_early_stopping_goes_on_counting_from_where_it_was(stopped_twice):
    """Stopped between the best iteration and early stopping: a count started afresh at the
    resume would stop later than the uninterrupted run."""
    reference = metadata(stopped_twice.reference_root)
    resumed = metadata(stopped_twice.ml_root)
    stopped_at = checkpointed_iteration(stopped_twice.second)
    assert reference["best_iteration"] < stopped_at < reference["iterations_run"] < NUM_ITERATIONS
    assert resumed["best_iteration"] == reference["best_iteration"]
    assert resumed["iterations_run"] == reference["iterations_run"]
    assert f"early stopping after iteration {reference['iterations_run']}: " in (
        stopped_twice.third.log
    )


def test_without_a_checkpoint_folder_nothing_is_written(stopped_twice):
    reference_root, reference = stopped_twice.reference_root, stopped_twice.reference
    assert f"checkpoints off: {reference_root / 'checkpoints'} does not exist" in reference.log
    assert not list(reference_root.rglob("*checkpoint*"))


@dataclass(frozen=True)
class PassedOver:
    """A run that finds a leftover partial write and, newest first, a truncated checkpoint,
    one of another learning rate, one of other data, and a valid one; and the uninterrupted
    run that wrote the valid one, run again."""

    valid_root: Path
    run: Run
    rerun: Run
    ml_root: Path


@pytest.fixture(scope="module", params=FAMILIES)
def passed_over(request, tmp_path_factory) -> PassedOver:
    family = request.param
    tmp = tmp_path_factory.mktemp(f"passed_over_{family}")
    channels = {"training": TRAINING_CSV, "validation": VALIDATION_CSV}
    header, rows = read_csv_rows(TRAINING_CSV)
    other_data = {"training": {"t.csv": csv_text(header, rows[:300])}, "validation": VALIDATION_CSV}
    # Checkpoints every 10, 9 and 13 iterations: the folders keep 20 and 30, 18 and 27, 13 and 26.
    sources = {
        "valid": (channels, SHORT),
        "other_rate": (channels, {**SHORT, "learning_rate": 0.2, "checkpoint_every_iterations": 9}),
        "other_data": (other_data, {**SHORT, "checkpoint_every_iterations": 13}),
    }
    roots = [
        make_ml_root(tmp / name, channels=source_channels, hyperparameters=hyperparameters)
        for name, (source_channels, hyperparameters) in sources.items()
    ]
    for root in roots:
        (root / "checkpoints").mkdir()
    for result in train_all(roots, family):
        assert result.exit_code == 0, result.log
    folders = {root.name: root / "checkpoints" for root in roots}
    # How often to checkpoint is no part of what a checkpoint must match.
    ml_root = make_ml_root(
        tmp / "ml",
        channels=channels,
        hyperparameters={**SHORT, "checkpoint_every_iterations": 5, "checkpoint_every_seconds": 60},
    )
    folder = ml_root / "checkpoints"
    folder.mkdir()
    shutil.copy(folders["valid"] / "checkpoint-000020.ckpt", folder)
    shutil.copy(folders["other_rate"] / "checkpoint-000027.ckpt", folder)
    shutil.copy(folders["other_data"] / "checkpoint-000026.ckpt", folder)
    whole = (folders["valid"] / "checkpoint-000030.ckpt").read_bytes()
    (folder / "checkpoint-000040.ckpt").write_bytes(whole[: len(whole) // 2])
    (folder / ".checkpoint-000035.ckpt.partial").write_bytes(whole[:100])
    run, rerun = train_all([ml_root, tmp / "valid"], family)
    return PassedOver(tmp / "valid", run, rerun, ml_root)


def test_checkpoints_that_cannot_be_continued_are_passed_over_with_a_reason(passed_over):
    run = passed_over.run
    assert run.exit_code == 0, run.log
    expected = [
        "deleted .checkpoint-000035.ckpt.partial, left by an interrupted checkpoint write",
        "ignoring checkpoint checkpoint-000040.ckpt: truncated or corrupt: ",
        "ignoring checkpoint checkpoint-000027.ckpt: written with other settings: "
        "learning_rate 0.2 there, 0.1 here",
        "ignoring checkpoint checkpoint-000026.ckpt: written for other data",
        "resuming from checkpoint-000020.ckpt: iteration 20 of 30 (best iteration ",
    ]
    positions = [run.log.find(line) for line in expected]
    assert -1 not in positions and positions == sorted(positions), run.log
    assert model_files(passed_over.ml_root) == model_files(passed_over.valid_root)
    assert run.checkpoints == ["checkpoint-000025.ckpt", "checkpoint-000030.ckpt"]


def test_a_checkpoint_of_a_finished_run_resumes_straight_to_saving(passed_over):
    rerun = passed_over.rerun
    assert rerun.exit_code == 0, rerun.log
    assert "resuming from checkpoint-000030.ckpt: iteration 30 of 30 (best iteration " in rerun.log
    assert "training had ended there, keeping 30 iterations" in rerun.log
    assert "iteration 30/30" not in rerun.log.split("resuming from")[1]
    assert metadata(passed_over.valid_root)["resumed_from_iteration"] == 30
    assert metadata(passed_over.valid_root)["iterations_run"] == 30


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(
    ("key", "allowed"),
    [
        ("checkpoint_every_iterations", "a whole number >= 1 (iterations between two checkpoints)"),
        ("checkpoint_every_seconds", "a whole number >= 1 (seconds between two checkpoints)"),
    ],
)
@pytest.mark.parametrize("value", ["0", "-5", "2.5", "often"])
def test_checkpoint_settings_refuse_bad_values(family, key, allowed, value):
    with pytest.raises(TrainingError) as raised:
        parse_hyperparameters({key: value}, source="hyperparameters.json", family=family)
    assert str(raised.value) == (
        f"hyperparameter {key!r} in hyperparameters.json is {value!r}; allowed: {allowed}"
    )


def test_checkpoint_settings_default_to_50_iterations_and_300_seconds():
    parsed = parse_hyperparameters({"checkpoint_every_seconds": "60.0"}, source="h.json")
    assert (parsed.checkpoint_every_iterations, parsed.checkpoint_every_seconds) == (50, 60)


@pytest.fixture(scope="module")
def sample_data(tmp_path_factory):
    root = make_ml_root(
        tmp_path_factory.mktemp("sample"),
        channels={"training": TRAINING_CSV, "validation": VALIDATION_CSV},
    )
    return prepare_data(MLPaths(root), Hyperparameters())


@pytest.mark.parametrize("family", FAMILIES)
def test_a_snapshot_holds_the_iterations_asked_for_whatever_the_booster_grew_since(
    family, sample_data
):
    """A SIGTERM can land after the library grew an iteration the monitor has not seen."""
    taken: dict[str, bytes] = {}

    def on_iteration(done, total, losses=(), snapshot=None):
        if done in (10, 20):
            taken[f"at {done}"] = snapshot(10)
        return 20 if done == 20 else None

    families.get(family).fit(sample_data, Hyperparameters(), on_iteration)
    assert taken["at 20"] == taken["at 10"]


@pytest.mark.parametrize("family", FAMILIES)
def test_a_fit_resumed_after_its_end_keeps_what_it_kept_without_training(family, sample_data):
    hp = Hyperparameters()
    own = families.get(family)
    taken: list[bytes] = []

    def on_iteration(done, total, losses=(), snapshot=None):
        if done == 20:
            taken.append(snapshot(done))
            return 12
        return None

    fitted = own.fit(sample_data, hp, on_iteration)
    resumed = own.fit(sample_data, hp, on_iteration, resume=Resume(20, taken[0], keep=12))
    assert len(taken) == 1, "nothing was trained"
    assert resumed.summary() == fitted.summary()
    assert (fitted.summary()["best_iteration"], fitted.summary()["iterations_run"]) == (12, 20)
    features = sample_data.val_x
    assert np.array_equal(resumed.predict_proba(features), fitted.predict_proba(features))


def test_a_checkpoint_is_due_after_so_many_iterations_or_seconds(monkeypatch, tmp_path):
    now = [1000.0]
    monkeypatch.setattr(checkpoints.time, "monotonic", lambda: now[0])
    hp = Hyperparameters(checkpoint_every_iterations=50, checkpoint_every_seconds=300)
    folder = CheckpointFolder(tmp_path, Identity("lightgbm", "", {}, ""), hp)
    assert (folder.due(49), folder.due(50)) == (False, True)
    now[0] += 299
    assert not folder.due(1)
    now[0] += 1
    assert folder.due(1)


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda b: b[:-3], "truncated or corrupt: 8 bytes of model where its manifest says 11"),
        (lambda b: b[:-1] + b"?", "corrupt: its model bytes do not have the sha256 of its"),
        (lambda b: b[:40], "truncated within its manifest"),
        (lambda b: b[:10], "truncated or not a checkpoint: its first line is not the magic"),
        (
            lambda b: b.replace(b'"iteration": 7', b'"iteration": "7"'),
            "bad manifest: iteration is not of type int",
        ),
        (lambda b: b.replace(b'"format_version": 1', b'"format_version": 2'), "format version 2"),
    ],
)
def test_a_damaged_checkpoint_file_is_refused_with_what_is_wrong(tmp_path, damage, reason):
    manifest = Manifest("lightgbm", 7, "data", {}, "settings", 5, 0.25, 1.5)
    path = write_checkpoint(tmp_path, manifest, b"model bytes")
    assert read_checkpoint(path) == (manifest, b"model bytes")
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(InvalidCheckpoint, match=re.escape(reason)):
        read_checkpoint(path)


def test_a_checkpoint_file_renamed_to_another_iteration_is_refused(tmp_path):
    manifest = Manifest("lightgbm", 7, "data", {}, "settings", 5, 0.25, 1.5)
    path = write_checkpoint(tmp_path, manifest, b"model bytes")
    renamed = path.rename(tmp_path / "checkpoint-000070.ckpt")
    with pytest.raises(InvalidCheckpoint, match="bad manifest: it is of iteration 7"):
        read_checkpoint(renamed)
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint-000070.ckpt"], "no temporary left"
