"""The ceiling: how fast the model predicts in process, with no server around it."""

from __future__ import annotations

import os
import statistics
import time

import numpy as np
from model_kit.model_io import Model


def parse(body: bytes) -> np.ndarray:
    """The payload as a float matrix (parsing is not part of the ceiling)."""
    lines = body.decode().splitlines()
    return np.array([[float(cell) for cell in line.split(",")] for line in lines])


def predict_records_per_s(model: Model, features: np.ndarray, threads: int) -> float:
    """Median records/s of ``predict_proba`` on ``features`` with ``threads`` OpenMP threads.

    Repeats for at least half a second so that 1-record batches are timed over
    many calls, not one.
    """
    model.predict_proba(features, num_threads=threads)
    rates = []
    for _ in range(5):
        calls, started = 0, time.perf_counter()
        while True:
            model.predict_proba(features, num_threads=threads)
            calls += 1
            elapsed = time.perf_counter() - started
            if elapsed >= 0.1:
                break
        rates.append(calls * len(features) / elapsed)
    return statistics.median(rates)


def available_cpus() -> int:
    return len(os.sched_getaffinity(0))
