"""Export scikit-learn's bundled breast-cancer data into the CSV splits in ``data/``.

Run once by a maintainer (``python data/export_sample_data.py``); the CSV files
are committed, so nothing downloads or regenerates at run time. The dataset is
the Wisconsin Diagnostic Breast Cancer set (569 rows, 30 numeric features,
labels ``malignant`` / ``benign``), which ships inside the scikit-learn wheel.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

SEED = 20240501
DATA_DIR = Path(__file__).resolve().parent
TARGET = "label"


def snake_case(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def main() -> None:
    dataset = load_breast_cancer()
    features = [snake_case(name) for name in dataset.feature_names]
    labels = [str(dataset.target_names[t]) for t in dataset.target]
    rows = [[repr(float(v)) for v in row] for row in dataset.data]
    train_rows, rest_rows, train_labels, rest_labels = train_test_split(
        rows, labels, test_size=0.4, random_state=SEED, stratify=labels
    )
    val_rows, infer_rows, val_labels, _ = train_test_split(
        rest_rows, rest_labels, test_size=0.5, random_state=SEED, stratify=rest_labels
    )
    header = [*features, TARGET]
    write_csv(
        DATA_DIR / "training" / "train.csv",
        header,
        [[*r, y] for r, y in zip(train_rows, train_labels, strict=True)],
    )
    write_csv(
        DATA_DIR / "validation" / "validation.csv",
        header,
        [[*r, y] for r, y in zip(val_rows, val_labels, strict=True)],
    )
    write_csv(DATA_DIR / "inference" / "inference.csv", features, infer_rows)


if __name__ == "__main__":
    main()
