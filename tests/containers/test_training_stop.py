"""StopTrainingJob sends SIGTERM, then SIGKILL 120 s later: training must end cleanly and fast."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
from conftest import (
    TRAIN_PROGRAM,
    TRAINING_CSV,
    VALIDATION_CSV,
    csv_text,
    make_ml_root,
    read_csv_rows,
)

EXIT_STOPPED = 128 + signal.SIGTERM


def large_training_csv(copies: int) -> str:
    """The sample data tiled ``copies`` times with 1 % noise: a run of many seconds."""
    header, rows = read_csv_rows(TRAINING_CSV)
    features = np.array([[float(v) for v in r[:-1]] for r in rows])
    rng = np.random.default_rng(0)
    tiled = np.tile(features, (copies, 1))
    noisy = tiled * (1 + 0.01 * rng.standard_normal(tiled.shape))
    labels = [r[-1] for r in rows] * copies
    return csv_text(
        header, [[f"{v:.5g}" for v in row] + [y] for row, y in zip(noisy, labels, strict=True)]
    )


def wait_for(path, text, process, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text():
            return
        assert process.poll() is None, f"training ended early:\n{path.read_text()}"
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not logged within {timeout} s:\n{path.read_text()}")


def run_until(ml_root, log_file, logged, timeout=60):
    """Start training, wait until ``logged`` appears, send SIGTERM: (exit code, seconds)."""
    with log_file.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, str(TRAIN_PROGRAM)],
            env={**os.environ, "ML_ROOT": str(ml_root)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for(log_file, logged, process, timeout)
            sent = time.monotonic()
            process.send_signal(signal.SIGTERM)
            exit_code = process.wait(timeout=10)
            return exit_code, time.monotonic() - sent
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


def test_sigterm_during_training_stops_within_seconds(tmp_path):
    ml_root = make_ml_root(
        tmp_path / "ml",
        channels={"training": {"big.csv": large_training_csv(copies=60)}},
        hyperparameters={"num_iterations": 1_000_000, "early_stopping_rounds": 0},
    )
    log_file = tmp_path / "train.log"
    exit_code, elapsed = run_until(ml_root, log_file, "iteration 1/1000000")
    assert exit_code == EXIT_STOPPED, log_file.read_text()
    assert elapsed < 3, f"took {elapsed:.1f} s to stop"
    reason = (ml_root / "output" / "failure").read_text()
    assert reason.startswith(
        "training stopped by SIGTERM (StopTrainingJob or interrupt) while training, after "
        "iteration "
    )
    assert reason.rstrip().endswith("of 1000000; no model was saved")
    assert not (ml_root / "model" / "model.txt").exists()
    assert "Traceback" not in log_file.read_text()


def test_sigterm_while_loading_data_stops_at_once(tmp_path):
    """A 340k-row file takes seconds to parse; the stop must not wait for it."""
    header_line, *lines = TRAINING_CSV.read_text().splitlines()
    body = "\n".join(lines) + "\n"
    ml_root = make_ml_root(tmp_path / "ml", channels={"training": {"big.csv": ""}})
    (ml_root / "input" / "data" / "training" / "big.csv").write_text(
        header_line + "\n" + body * 1000
    )
    log_file = tmp_path / "train.log"
    exit_code, elapsed = run_until(ml_root, log_file, "host algo-1")
    assert exit_code == EXIT_STOPPED, log_file.read_text()
    assert elapsed < 3, f"took {elapsed:.1f} s to stop"
    reason = (ml_root / "output" / "failure").read_text()
    assert reason.rstrip() == (
        "training stopped by SIGTERM (StopTrainingJob or interrupt) while loading data; "
        "no model was saved"
    )


def test_sigterm_after_loading_before_the_first_iteration_names_that_phase(tmp_path):
    """Between the data and the first iteration (LightGBM's import, about a second), the
    reason must not say "while loading data": the data was loaded."""
    ml_root = make_ml_root(
        tmp_path / "ml",
        channels={"training": TRAINING_CSV, "validation": VALIDATION_CSV},
        hyperparameters={},
    )
    log_file = tmp_path / "train.log"
    exit_code, _elapsed = run_until(ml_root, log_file, "data loaded; starting to train")
    assert exit_code == EXIT_STOPPED, log_file.read_text()
    reason = (ml_root / "output" / "failure").read_text()
    assert reason.rstrip() == (
        "training stopped by SIGTERM (StopTrainingJob or interrupt) while starting to train, "
        "before the first iteration; no model was saved"
    )
