"""Why the server predicts with lleaves-compiled trees: the measurements.

    .venv/bin/python -m benchmarks.compiled_predictor [--repeats 7]

Trains the model the tests train (``containers/bin/train`` on the bundled data), then
compiles it with lleaves (one block of trees, as training does) twice: for this host's CPU
(lleaves' default) and for a generic x86-64 CPU with no optional features (what training
ships: the endpoint's CPU is not the training instance's). Each predicts with one thread, as
a pre-fork server worker does, against ``Booster.predict`` at 1, 500 and ~23,000 records (a
5 MB request); then model_kit's two predictors as the server loads them. Every time is a
median; the largest difference in probability is reported with each.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# One OpenMP thread, as in a pre-fork server worker; read when the libraries load.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import lightgbm
import lleaves
import numpy as np
from model_kit.model_io import load_model

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model_file = train_model(Path(tmp))
        booster = lightgbm.Booster(model_file=str(model_file))
        sample = features()
        batches = {rows: np.resize(sample, (rows, sample.shape[1])) for rows in ROWS}
        print(f"model: {booster.num_trees()} trees, {booster.num_feature()} features")
        for label, cpu, cpu_features in (
            ("host CPU", None, None),
            ("generic x86-64", "x86-64", ""),
        ):
            compiled = lleaves.Model(model_file=str(model_file))
            cache = Path(tmp) / f"{label.replace(' ', '_')}.o"
            started = time.perf_counter()
            compiled.compile(
                cache=str(cache),
                fblocksize=compiled.num_trees(),
                target_cpu=cpu,
                target_cpu_features=cpu_features,
            )
            compile_s = time.perf_counter() - started
            print(
                f"\nlleaves, {label}: compiled in {compile_s:.2f} s, {cache.stat().st_size} bytes"
            )
            for rows, batch in batches.items():
                library_ms = median_ms(
                    lambda b=batch: booster.predict(b, num_threads=1), args.repeats
                )
                compiled_ms = median_ms(
                    lambda b=batch, m=compiled: m.predict(b, n_jobs=1), args.repeats
                )
                difference = np.abs(
                    compiled.predict(batch, n_jobs=1) - booster.predict(batch)
                ).max()
                print(
                    f"  {rows:>6} records: Booster {library_ms:8.3f} ms, "
                    f"lleaves {compiled_ms:8.3f} ms ({library_ms / compiled_ms:4.1f}x), "
                    f"max |difference| {difference:.1e}"
                )
            reloaded = lleaves.Model(model_file=str(model_file))
            started = time.perf_counter()
            reloaded.compile(cache=str(cache), target_cpu=cpu, target_cpu_features=cpu_features)
            print(f"  loading the cached object: {(time.perf_counter() - started) * 1e3:.1f} ms")
        # What the server runs: model_kit's predictors, as load_model gives them.
        started = time.perf_counter()
        fast = load_model(model_file.parent, compiled=True)
        print(
            f"\nmodel_kit, {fast.predictor_kind}: loaded in {time.perf_counter() - started:.3f} s"
        )
        library = load_model(model_file.parent)
        for rows, batch in batches.items():
            library_ms = median_ms(lambda b=batch: library.predict_proba(b, 1), args.repeats)
            compiled_ms = median_ms(lambda b=batch: fast.predict_proba(b, 1), args.repeats)
            print(
                f"  {rows:>6} records: library {library_ms:8.3f} ms, "
                f"compiled {compiled_ms:8.3f} ms ({library_ms / compiled_ms:4.1f}x)"
            )


if __name__ == "__main__":
    main()
