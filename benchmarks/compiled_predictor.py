"""Why the server predicts with lleaves-compiled trees in a shared library: the measurements.

    .venv/bin/python -m benchmarks.compiled_predictor [--repeats 7]

Trains the model the tests train (``containers/bin/train`` on the bundled data), then
compiles it with lleaves for a generic x86-64 CPU with no optional features (the endpoint's
CPU is not the training instance's) four ways: LLVM's large code model (lleaves' default) or
the small one, all trees in one block or lleaves' default blocks of 34; each linked into a
shared library as training links it. Each predicts with one thread, as a pre-fork server
worker does, against ``Booster.predict`` at 1, 500 and ~23,000 records (a 5 MB request);
then model_kit's two predictors as the server loads them. Before each timed prediction the
5 MB CSV body is parsed, untimed, as a server parses requests between two predictions (a
predictor timed back to back on the same rows finds its branches already learned). Every
time is a median; the largest difference in probability is reported with each.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# One OpenMP thread, as in a pre-fork server worker; read when the libraries load.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import lightgbm
import lleaves
import numpy as np
from model_kit.families import compiled as shipped
from model_kit.model_io import load_model
from model_kit.serving import decoders

from benchmarks.payloads import five_megabytes
from benchmarks.timing import median_ms

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "data"
ROWS = (1, 500, 23_000)


def train_model(ml_root: Path) -> Path:
    """The sample model, trained by the real entry point in a SageMaker-shaped tree."""
    for channel, name in (("training", "train.csv"), ("validation", "validation.csv")):
        (ml_root / "input" / "data" / channel).mkdir(parents=True)
        (ml_root / "input" / "data" / channel / name).write_bytes(
            (DATA / channel / name).read_bytes()
        )
    (ml_root / "input" / "config").mkdir(parents=True)
    (ml_root / "input" / "config" / "hyperparameters.json").write_text("{}")
    subprocess.run(
        [sys.executable, str(REPO / "containers" / "bin" / "train")],
        env={**os.environ, "ML_ROOT": str(ml_root)},
        check=True,
        capture_output=True,
    )
    return ml_root / "model" / "model.txt"


def features() -> np.ndarray:
    lines = (DATA / "validation" / "validation.csv").read_text().splitlines()[1:]
    return np.array([[float(v) for v in line.split(",")[:-1]] for line in lines])


VARIANTS = {
    "large code model, one block": {"fcodemodel": "large", "fblocksize": None},
    "large code model, blocks of 34": {"fcodemodel": "large"},
    "small code model, one block": {"fcodemodel": "small", "fblocksize": None},
    "small code model, blocks of 34 (shipped)": {"fcodemodel": "small"},
}


def shared_library(model_file: Path, out: Path, options: dict) -> tuple[Any, float]:
    """``model_file`` compiled with ``options`` and linked as training links it: its entry
    point, and the seconds compiling took."""
    trees = lleaves.Model(model_file=str(model_file))
    if options.get("fblocksize", 0) is None:
        options = {**options, "fblocksize": trees.num_trees()}
    started = time.perf_counter()
    trees.compile(
        cache=str(out.with_suffix(".o")), target_cpu="x86-64", target_cpu_features="", **options
    )
    seconds = time.perf_counter() - started
    subprocess.run(
        [
            "ld",
            *shipped.LINK_FLAGS,
            "-o",
            str(out),
            str(out.with_suffix(".o")),
            *shipped.LINK_LIBRARIES,
        ],
        check=True,
    )
    return shipped.EntryFunction((shipped.ENTRY, ctypes.CDLL(str(out)))), seconds


def predict_with(entry: Any, batch: np.ndarray) -> np.ndarray:
    out = np.empty(len(batch))
    pointer = ctypes.POINTER(ctypes.c_double)
    entry(batch.ctypes.data_as(pointer), out.ctypes.data_as(pointer), 0, len(batch))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    body = five_megabytes().body
    with tempfile.TemporaryDirectory() as tmp:
        model_file = train_model(Path(tmp))
        booster = lightgbm.Booster(model_file=str(model_file))
        names = booster.feature_name()

        def parse_a_request() -> None:
            decoders.parse_csv(body, names)

        sample = features()
        batches = {rows: np.resize(sample, (rows, sample.shape[1])) for rows in ROWS}
        print(f"model: {booster.num_trees()} trees, {booster.num_feature()} features")
        library_ms = {
            rows: median_ms(
                lambda b=batch: booster.predict(b, num_threads=1), args.repeats, parse_a_request
            )
            for rows, batch in batches.items()
        }
        for label, options in VARIANTS.items():
            out = Path(tmp) / f"{len(label)}-{options['fcodemodel']}.so"
            entry, compile_s = shared_library(model_file, out, dict(options))
            print(f"\nlleaves, {label}: compiled in {compile_s:.2f} s, {out.stat().st_size} bytes")
            for rows, batch in batches.items():
                compiled_ms = median_ms(
                    lambda b=batch, e=entry: predict_with(e, b), args.repeats, parse_a_request
                )
                difference = np.abs(predict_with(entry, batch) - booster.predict(batch)).max()
                print(
                    f"  {rows:>6} records: Booster {library_ms[rows]:8.3f} ms, "
                    f"lleaves {compiled_ms:8.3f} ms ({library_ms[rows] / compiled_ms:4.1f}x), "
                    f"max |difference| {difference:.1e}"
                )
        # What the server runs: model_kit's predictors, as load_model gives them.
        started = time.perf_counter()
        fast = load_model(model_file.parent, compiled=True)
        print(
            f"\nmodel_kit, {fast.predictor_kind}: loaded in {time.perf_counter() - started:.3f} s"
        )
        library = load_model(model_file.parent)
        for rows, batch in batches.items():
            library_ms[rows] = median_ms(
                lambda b=batch: library.predict_proba(b, 1), args.repeats, parse_a_request
            )
            compiled_ms = median_ms(
                lambda b=batch: fast.predict_proba(b, 1), args.repeats, parse_a_request
            )
            print(
                f"  {rows:>6} records: library {library_ms[rows]:8.3f} ms, "
                f"compiled {compiled_ms:8.3f} ms ({library_ms[rows] / compiled_ms:4.1f}x)"
            )


if __name__ == "__main__":
    main()
