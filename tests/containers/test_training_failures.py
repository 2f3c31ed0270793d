"""Every way the training input can be wrong ends in a clear reason and a non-zero exit.

The reason must name what is wrong and where, within the first 1024
characters (SageMaker's FailureReason), in ``output/failure`` and on stderr.
"""

from __future__ import annotations

import pytest
from conftest import (
    TRAINING_CSV,
    VALIDATION_CSV,
    csv_text,
    make_ml_root,
    read_csv_rows,
    run_train,
)

EXIT_BAD_INPUT = 1
EXIT_UNEXPECTED = 2


def failure_of(ml_root, expected_exit=EXIT_BAD_INPUT):
    """Run training, check it failed the documented way, return the failure reason."""
    result = run_train(ml_root)
    assert result.returncode == expected_exit, result.stdout + result.stderr
    reason = (ml_root / "output" / "failure").read_text()
    first_line = reason.splitlines()[0]
    assert len(first_line) <= 1024
    assert first_line in result.stderr
    assert not (ml_root / "model" / "model.txt").exists()
    return first_line


def test_missing_training_folder(tmp_path):
    ml_root = make_ml_root(
        tmp_path, channels={"validation": VALIDATION_CSV}, write_job_config=False
    )
    reason = failure_of(ml_root)
    assert reason.startswith("channel 'training' not found:")
    assert str(ml_root / "input" / "data" / "training") in reason


def test_input_data_config_without_training_channel(tmp_path):
    ml_root = make_ml_root(tmp_path, channels={"validation": VALIDATION_CSV})
    reason = failure_of(ml_root)
    assert "declares the channels validation but not 'training', which is required" in reason


def test_channel_without_csv_files(tmp_path):
    ml_root = make_ml_root(
        tmp_path, channels={"training": {"README.txt": "data goes here", "data.json": "{}"}}
    )
    reason = failure_of(ml_root)
    assert "channel 'training' holds no .csv file" in reason
    assert "found: README.txt, data.json" in reason


def test_missing_target_column(tmp_path):
    ml_root = make_ml_root(
        tmp_path, channels={"training": TRAINING_CSV}, hyperparameters={"target": "diagnosis"}
    )
    reason = failure_of(ml_root)
    assert reason.startswith("target column 'diagnosis' not found in training/train.csv;")
    assert "columns are: mean_radius, mean_texture," in reason


def test_non_numeric_feature_names_file_row_column_and_value(tmp_path):
    header, rows = read_csv_rows(TRAINING_CSV)
    rows[16][header.index("mean_texture")] = "abc"
    ml_root = make_ml_root(
        tmp_path,
        channels={
            "training": {
                "a.csv": csv_text(header, rows[:100]),
                "b.csv": csv_text(header, rows[100:]),
            }
        },
    )
    reason = failure_of(ml_root)
    assert reason.startswith(
        "column 'mean_texture', training/a.csv row 17 (line 18): 'abc' is not a finite number"
    )


def test_infinite_feature_value_is_refused(tmp_path):
    header, rows = read_csv_rows(TRAINING_CSV)
    rows[3][0] = "inf"
    ml_root = make_ml_root(tmp_path, channels={"training": {"t.csv": csv_text(header, rows)}})
    reason = failure_of(ml_root)
    assert "column 'mean_radius', training/t.csv row 4 (line 5): 'inf' is not a finite" in reason


def test_row_with_the_wrong_number_of_fields(tmp_path):
    header, rows = read_csv_rows(TRAINING_CSV)
    rows[9] = rows[9][:-2]
    ml_root = make_ml_root(tmp_path, channels={"training": {"t.csv": csv_text(header, rows)}})
    reason = failure_of(ml_root)
    assert reason.startswith("training/t.csv line 11 has 29 fields but the header has 31")


def test_empty_label(tmp_path):
    header, rows = read_csv_rows(TRAINING_CSV)
    rows[4][-1] = " "
    ml_root = make_ml_root(tmp_path, channels={"training": {"t.csv": csv_text(header, rows)}})
    reason = failure_of(ml_root)
    assert reason.startswith(
        "training/t.csv row 5 (line 6): the target column 'label' is empty; every row needs"
    )


def test_unknown_hyperparameter_lists_the_allowed_ones(tmp_path):
    ml_root = make_ml_root(
        tmp_path, channels={"training": TRAINING_CSV}, hyperparameters={"learning_rat": "0.1"}
    )
    reason = failure_of(ml_root)
    assert reason.startswith("unknown hyperparameter 'learning_rat' in hyperparameters.json;")
    assert (
        "allowed hyperparameters (model family lightgbm) are: target, learning_rate, "
        "num_iterations," in reason
    )


def test_invalid_hyperparameter_value_names_key_value_and_range(tmp_path):
    ml_root = make_ml_root(
        tmp_path, channels={"training": TRAINING_CSV}, hyperparameters={"num_leaves": "1"}
    )
    reason = failure_of(ml_root)
    assert reason == (
        "hyperparameter 'num_leaves' in hyperparameters.json is '1'; "
        "allowed: a whole number from 2 to 131072"
    )


def test_hyperparameters_file_that_is_not_json(tmp_path):
    ml_root = make_ml_root(tmp_path, channels={"training": TRAINING_CSV})
    (ml_root / "input" / "config" / "hyperparameters.json").write_text("{learning_rate: 0.1")
    reason = failure_of(ml_root)
    assert reason.startswith(f"{ml_root}/input/config/hyperparameters.json is not valid JSON")


def test_single_class(tmp_path):
    header, rows = read_csv_rows(TRAINING_CSV)
    benign = [r for r in rows if r[-1] == "benign"]
    ml_root = make_ml_root(tmp_path, channels={"training": {"t.csv": csv_text(header, benign)}})
    reason = failure_of(ml_root)
    assert reason.startswith(
        "the training data has a single class, 'benign', in column 'label' (214 rows); "
        "a classifier needs at least 2 classes"
    )


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda h: [*h[:-2], "renamed", h[-1]],
            "missing columns: worst_fractal_dimension; unexpected columns: renamed",
        ),
        (lambda h: [h[1], h[0], *h[2:]], "same columns in another order: mean_texture, mean_rad"),
    ],
    ids=["renamed column", "reordered columns"],
)
def test_inconsistent_headers_name_the_file_that_differs(tmp_path, change, expected):
    header, rows = read_csv_rows(TRAINING_CSV)
    ml_root = make_ml_root(
        tmp_path,
        channels={
            "training": {
                "part-1.csv": csv_text(header, rows[:200]),
                "part-2.csv": csv_text(change(header), rows[200:]),
            }
        },
    )
    reason = failure_of(ml_root)
    assert reason.startswith("the header of training/part-2.csv differs from training/part-1.csv: ")
    assert expected in reason


def test_validation_columns_must_match_training(tmp_path):
    header, rows = read_csv_rows(VALIDATION_CSV)
    narrow = csv_text(header[1:], [r[1:] for r in rows])
    ml_root = make_ml_root(
        tmp_path, channels={"training": TRAINING_CSV, "validation": {"v.csv": narrow}}
    )
    reason = failure_of(ml_root)
    assert reason.startswith(
        "the validation columns differ from the training columns: missing mean_radius; "
        "unexpected (none)"
    )


def test_validation_label_unseen_in_training(tmp_path):
    header, rows = read_csv_rows(VALIDATION_CSV)
    rows[11][-1] = "borderline"
    ml_root = make_ml_root(
        tmp_path,
        channels={"training": TRAINING_CSV, "validation": {"v.csv": csv_text(header, rows)}},
    )
    reason = failure_of(ml_root)
    assert reason == (
        "validation label 'borderline' at validation/v.csv row 12 (line 13) is not a class of "
        "the training data; training classes are: benign, malignant"
    )


def test_pipe_mode_is_refused(tmp_path):
    ml_root = make_ml_root(tmp_path, channels={"training": TRAINING_CSV})
    (ml_root / "input" / "config" / "inputdataconfig.json").write_text(
        '{"training": {"TrainingInputMode": "Pipe"}}'
    )
    reason = failure_of(ml_root)
    assert reason.startswith("channel 'training' uses TrainingInputMode 'Pipe'")


def test_unexpected_error_still_leaves_a_reason_with_the_exception(tmp_path):
    """A model path that is a file: not an input mistake, but it must still be reported."""
    ml_root = make_ml_root(tmp_path, channels={"training": TRAINING_CSV})
    (ml_root / "model").write_text("in the way")
    reason = failure_of(ml_root, expected_exit=EXIT_UNEXPECTED)
    assert reason.startswith("unexpected error: FileExistsError:")
    assert "Traceback" in (ml_root / "output" / "failure").read_text()


def test_column_names_that_collide_once_stored_in_the_model(tmp_path):
    header, rows = read_csv_rows(TRAINING_CSV)
    header[:2] = ["size:mean", "size,mean"]
    ml_root = make_ml_root(tmp_path, channels={"training": {"t.csv": csv_text(header, rows)}})
    reason = failure_of(ml_root)
    assert reason.startswith(
        "columns 'size:mean' and 'size,mean' differ only in characters LightGBM cannot store"
    )
