"""Why LightGBM by default, and XGBoost as the second family: the measurements.

    .venv/bin/python -m benchmarks.model_choice [--repeats 5]

LightGBM, XGBoost and scikit-learn's HistGradientBoostingClassifier fit the
bundled training split with the same settings (200 rounds, 31 leaves grown
leaf-wise, learning rate 0.1, one thread, as a pre-fork server worker predicts)
and are scored on the validation split. A real-time endpoint spends
most of its calls on one record, so the 1-record prediction time decides; the
5 MB batch (~23,000 records) shows the other end. Every time is a median.
"""

from __future__ import annotations

import argparse
import csv
import os
from pathlib import Path

# One OpenMP thread, as in a pre-fork server worker; read when the libraries load.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import lightgbm
import numpy as np
import xgboost
from sklearn.ensemble import HistGradientBoostingClassifier

from benchmarks.timing import median_ms

DATA = Path(__file__).resolve().parent.parent / "data"


def load(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with path.open() as handle:
        rows = list(csv.reader(handle))[1:]
    features = np.array([[float(v) for v in row[:-1]] for row in rows])
    return features, np.array([row[-1] == "malignant" for row in rows], dtype=int)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    train_x, train_y = load(DATA / "training" / "train.csv")
    val_x, val_y = load(DATA / "validation" / "validation.csv")
    one, batch = val_x[:1], np.tile(val_x, (200, 1))

    def fit_sklearn() -> HistGradientBoostingClassifier:
        return HistGradientBoostingClassifier(
            max_iter=200, max_leaf_nodes=31, learning_rate=0.1, early_stopping=False, random_state=0
        ).fit(train_x, train_y)

    def fit_lightgbm() -> lightgbm.Booster:
        params = {"objective": "binary", "num_leaves": 31, "learning_rate": 0.1}
        params |= {"num_threads": 1, "seed": 0, "verbose": -1, "deterministic": True}
        return lightgbm.train(params, lightgbm.Dataset(train_x, train_y), num_boost_round=200)

    def fit_xgboost() -> xgboost.Booster:
        params = {"objective": "binary:logistic", "eta": 0.1, "tree_method": "hist"}
        params |= {"grow_policy": "lossguide", "max_leaves": 31, "max_depth": 0}
        params |= {"nthread": 1, "seed": 0, "verbosity": 0}
        return xgboost.train(params, xgboost.DMatrix(train_x, train_y), num_boost_round=200)

    sklearn_model, lightgbm_model, xgboost_model = fit_sklearn(), fit_lightgbm(), fit_xgboost()
    candidates = {
        "HistGradientBoostingClassifier": (
            fit_sklearn,
            lambda x: sklearn_model.predict_proba(x)[:, 1],
        ),
        "LightGBM": (fit_lightgbm, lambda x: lightgbm_model.predict(x, num_threads=1)),
        "XGBoost": (fit_xgboost, lambda x: xgboost_model.inplace_predict(x)),
    }
    print(f"{'model':<32}{'fit s':>8}{'val acc':>9}{'1 record µs':>13}{'batch ms':>10}")
    for name, (fit, predict) in candidates.items():
        fit_s = median_ms(fit, args.repeats) / 1e3
        accuracy = float(((predict(val_x) > 0.5) == val_y).mean())
        one_us = median_ms(lambda p=predict: p(one), args.repeats * 200) * 1e3
        batch_ms = median_ms(lambda p=predict: p(batch), args.repeats)
        print(f"{name:<32}{fit_s:>8.2f}{accuracy:>9.4f}{one_us:>13.1f}{batch_ms:>10.1f}")
    print(f"batch: {len(batch)} records; one thread everywhere")


if __name__ == "__main__":
    main()
