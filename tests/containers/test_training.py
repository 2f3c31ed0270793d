"""The training program, run as a process on real data in a SageMaker-shaped tree."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from conftest import (
    TRAIN_PROGRAM,
    TRAINING_CSV,
    VALIDATION_CSV,
    csv_text,
    make_ml_root,
    read_csv_rows,
    run_train,
)
from model_kit.model_io import load_model

# The seed's SageMaker metric definition, and the other two metric names.
SEED_METRIC_REGEX = r"val_accuracy: ([0-9\.]+)"
METRIC_NAMES = ("train_accuracy", "val_accuracy", "val_loss")


def metadata_of(model_dir):
    return json.loads((model_dir / "metadata.json").read_text())


def assert_trained(result, ml_root):
    assert result.returncode == 0, f"training failed:\n{result.stdout}\n{result.stderr}"
    assert not (ml_root / "output" / "failure").exists()
    return metadata_of(ml_root / "model")


def sample_with_labels(path, relabel):
    """The sample CSV with its label column rewritten by ``relabel(row) -> label``."""
    header, rows = read_csv_rows(path)
    label = header.index("label")
    return csv_text(header, [[*r[:label], relabel(r), *r[label + 1 :]] for r in rows])


def test_sample_run_prints_every_metric_once_in_the_seed_regex_format(
    sample_training_run, trained_model_dir
):
    _, result = sample_training_run
    for name in METRIC_NAMES:
        lines = re.findall(rf"^{name}: ([0-9\.]+)$", result.stdout, re.MULTILINE)
        assert len(lines) == 1, f"{name} should be logged once:\n{result.stdout}"
    [val_accuracy] = re.findall(SEED_METRIC_REGEX, result.stdout)
    metrics = metadata_of(trained_model_dir)["metrics"]
    assert float(val_accuracy) == pytest.approx(metrics["val_accuracy"], abs=1e-6)
    assert metrics["val_accuracy"] >= 0.90
    assert "training: read 341 rows from 1 file(s)" in result.stdout
    assert "validation: read 114 rows from 1 file(s)" in result.stdout
    assert "channel training: content type text/csv, input mode File" in result.stdout
    assert "host algo-1 (ml.m5.large)" in result.stdout
    assert re.search(r"iteration 10/200: validation binary_logloss [0-9.]+$", result.stdout, re.M)


def test_trained_model_loads_with_its_schema_and_training_facts(trained_model_dir):
    model = load_model(trained_model_dir)
    header, rows = read_csv_rows(VALIDATION_CSV)
    assert model.feature_names == tuple(c for c in header if c != "label")
    assert model.classes == ("benign", "malignant")
    features = np.array([[float(v) for v in r[:-1]] for r in rows])
    predicted = model.predict_labels(model.predict_proba(features))
    assert np.mean([p == r[-1] for p, r in zip(predicted, rows, strict=True)]) >= 0.90
    metadata = model.metadata
    assert metadata["target"] == "label"
    assert metadata["objective"] == "binary"
    assert metadata["rows"] == {"training": 341, "validation": 114}
    assert metadata["validation_source"] == "validation channel"
    assert metadata["hyperparameters"]["learning_rate"] == 0.1
    assert 1 <= metadata["best_iteration"] <= metadata["iterations_run"] <= 200
    assert metadata["family"] == model.family == "lightgbm"
    assert model.predictor.booster.current_iteration() == metadata["best_iteration"]


def test_runs_by_path_from_any_directory_without_config_files(tmp_path):
    """As in the image: `train` on PATH via its shebang, cwd elsewhere, no config files."""
    ml_root = make_ml_root(
        tmp_path / "ml", channels={"training": TRAINING_CSV}, write_job_config=False
    )
    venv_bin = os.path.dirname(sys.executable)
    result = subprocess.run(
        [str(TRAIN_PROGRAM)],
        cwd=tmp_path,
        env={**os.environ, "ML_ROOT": str(ml_root), "PATH": f"{venv_bin}:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    metadata = assert_trained(result, ml_root)
    assert "using the default hyperparameters" in result.stdout
    assert metadata["hyperparameters"]["num_leaves"] == 31


def test_hyperparameters_are_applied_and_platform_keys_ignored(tmp_path):
    ml_root = make_ml_root(
        tmp_path,
        channels={"training": TRAINING_CSV, "validation": VALIDATION_CSV},
        hyperparameters={
            "num_iterations": "7",
            "early_stopping_rounds": "0",
            "learning_rate": "0.3",
            "num_leaves": "4",
            "_tuning_objective_metric": "val_accuracy",
        },
    )
    metadata = assert_trained(run_train(ml_root), ml_root)
    assert metadata["iterations_run"] == metadata["best_iteration"] == 7
    assert metadata["hyperparameters"]["learning_rate"] == 0.3
    assert metadata["hyperparameters"]["num_leaves"] == 4
    model_text = (ml_root / "model" / "model.txt").read_text()
    assert "[learning_rate: 0.3]" in model_text
    assert "[num_leaves: 4]" in model_text


def test_channel_with_several_files_in_nested_folders_and_other_files(tmp_path):
    header, rows = read_csv_rows(TRAINING_CSV)
    ml_root = make_ml_root(
        tmp_path,
        channels={
            "training": {
                "part-b.csv": csv_text(header, rows[:100]),
                "2024/part-a.csv": csv_text(header, rows[100:250]),
                "2024/06/part-c.CSV": csv_text(header, rows[250:]),
                "_SUCCESS": "",
                "2024/manifest.json": "{}",
                ".ipynb_checkpoints/part-b-checkpoint.csv": csv_text(header, rows[:100]),
            },
            "validation": VALIDATION_CSV,
        },
    )
    result = run_train(ml_root)
    metadata = assert_trained(result, ml_root)
    assert metadata["rows"]["training"] == 341
    assert "training: read 341 rows from 3 file(s)" in result.stdout
    for skipped in ("_SUCCESS", "2024/manifest.json", ".ipynb_checkpoints/part-b-checkpoint.csv"):
        assert f"skipping {skipped} (not a .csv file, or hidden)" in result.stdout


def holdout_run(tmp_path, seed):
    ml_root = make_ml_root(
        tmp_path / f"seed-{seed}",
        channels={"training": TRAINING_CSV},
        hyperparameters={"seed": seed, "validation_fraction": "0.2"},
    )
    result = run_train(ml_root)
    return result, assert_trained(result, ml_root), (ml_root / "model" / "model.txt").read_text()


def test_without_validation_channel_a_seeded_stratified_holdout_is_used(tmp_path):
    result, metadata, model_text = holdout_run(tmp_path, seed=42)
    assert metadata["validation_source"].startswith("stratified holdout")
    assert metadata["rows"] == {"training": 273, "validation": 68}
    # 214 benign and 127 malignant rows: 20 % of each class is held out.
    assert "validation set (stratified holdout" in result.stdout
    assert re.search(
        r"validation set \(.*\): 68 rows; classes: benign=43, malignant=25", result.stdout
    )
    assert metadata["metrics"]["val_accuracy"] >= 0.85

    _, same_metadata, same_model_text = holdout_run(tmp_path, seed=42)
    assert same_model_text == model_text
    assert same_metadata["metrics"] == metadata["metrics"]
    _, _, other_model_text = holdout_run(tmp_path, seed=7)
    assert other_model_text != model_text


def test_integer_labels_stay_integers(tmp_path):
    as_int = {"benign": "0", "malignant": "1"}
    ml_root = make_ml_root(
        tmp_path,
        channels={
            "training": {"train.csv": sample_with_labels(TRAINING_CSV, lambda r: as_int[r[-1]])},
            "validation": {"v.csv": sample_with_labels(VALIDATION_CSV, lambda r: as_int[r[-1]])},
        },
    )
    metadata = assert_trained(run_train(ml_root), ml_root)
    model = load_model(ml_root / "model")
    assert model.classes == (0, 1)
    assert metadata["classes"] == [0, 1]
    assert metadata["metrics"]["val_accuracy"] >= 0.90


def with_missing_cells(path, every):
    """The sample CSV with every ``every``-th feature cell emptied (or spelt NaN)."""
    header, rows = read_csv_rows(path)
    n_features = len(header) - 1
    for index, row in enumerate(rows):
        for column in range(n_features):
            if (index * n_features + column) % every == 0:
                row[column] = "" if column % 2 else "NaN"
    return csv_text(header, rows)


def test_missing_values_are_learned_around(tmp_path):
    ml_root = make_ml_root(
        tmp_path,
        channels={
            "training": {"train.csv": with_missing_cells(TRAINING_CSV, every=7)},
            "validation": {"validation.csv": with_missing_cells(VALIDATION_CSV, every=5)},
        },
        hyperparameters={"num_iterations": 60},
    )
    metadata = assert_trained(run_train(ml_root), ml_root)
    assert metadata["metrics"]["val_accuracy"] >= 0.85
    model = load_model(ml_root / "model")
    probabilities = model.predict_proba(np.full((1, model.n_features), np.nan))
    assert probabilities.sum() == pytest.approx(1.0)


def test_three_classes_train_a_multiclass_model(tmp_path):
    header, _ = read_csv_rows(TRAINING_CSV)
    radius = header.index("mean_radius")

    def size(row):
        value = float(row[radius])
        return "small" if value < 12 else "medium" if value < 15 else "large"

    ml_root = make_ml_root(
        tmp_path,
        channels={
            "training": {"train.csv": sample_with_labels(TRAINING_CSV, size)},
            "validation": {"validation.csv": sample_with_labels(VALIDATION_CSV, size)},
        },
        hyperparameters={"num_iterations": 60},
    )
    result = run_train(ml_root)
    metadata = assert_trained(result, ml_root)
    assert metadata["objective"] == "multiclass"
    assert "multi_logloss" in result.stdout
    model = load_model(ml_root / "model")
    assert model.classes == ("large", "medium", "small")
    _, rows = read_csv_rows(VALIDATION_CSV)
    features = np.array([[float(v) for v in r[:-1]] for r in rows])
    probabilities = model.predict_proba(features)
    assert probabilities.shape == (len(rows), 3)
    assert np.allclose(probabilities.sum(axis=1), 1.0)
    assert metadata["metrics"]["val_accuracy"] >= 0.90


def test_column_names_lightgbm_cannot_store_keep_their_real_names_in_metadata(tmp_path):
    header, rows = read_csv_rows(TRAINING_CSV)
    header[:2] = ["radius [mm]", "texture: mean"]
    ml_root = make_ml_root(
        tmp_path,
        channels={"training": {"t.csv": csv_text(header, rows)}},
        hyperparameters={"num_iterations": 20},
    )
    assert_trained(run_train(ml_root), ml_root)
    model = load_model(ml_root / "model")
    assert model.feature_names[:2] == ("radius [mm]", "texture: mean")
    assert model.predictor.booster.feature_name()[:2] == ["radius__mm_", "texture__mean"]
