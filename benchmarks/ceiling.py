"""The ceiling: how fast the model predicts in process, with no server around it."""

from __future__ import annotations

import os
import statistics
import threading
import time

import numpy as np
from model_kit.model_io import Model
from model_kit.serving.decoders import parse_csv
from model_kit.serving.encoders import PredictionEncoders


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


def server_work_records_per_s(model: Model, body: bytes, threads: int, seconds: float) -> float:
    """Records/s of a worker's whole job on ``body`` (parse, predict, encode), with no HTTP.

    ``threads`` threads in this process, one OpenMP thread each, for ``seconds``:
    what a server could reach if receiving and answering requests cost nothing.
    """
    encoders = PredictionEncoders(model.classes)
    records_per_call = len(parse_csv(body, model.feature_names))
    done = [0] * threads
    started = time.perf_counter()
    stop = started + seconds

    def work(slot: int) -> None:
        while time.perf_counter() < stop:
            probabilities = model.predict_proba(parse_csv(body, model.feature_names), 1)
            encoders.csv(probabilities.argmax(axis=1), probabilities)
            done[slot] += 1

    workers = [threading.Thread(target=work, args=(slot,)) for slot in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    return sum(done) * records_per_call / elapsed


def available_cpus() -> int:
    return len(os.sched_getaffinity(0))
