"""Hyperparameter parsing: every range the training program enforces, checked in-process.

The end-to-end failure (file, exit code, stderr) is covered by
test_training_failures.py; here each rule is exercised cheaply.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import fields

import pytest
from conftest import REPO_ROOT
from model_kit.training.errors import TrainingError
from model_kit.training.hyperparameters import RULES, Hyperparameters, parse_hyperparameters

CONTAINERS_DIR = REPO_ROOT / "containers"


def test_every_hyperparameter_has_a_rule():
    assert list(RULES) == [field.name for field in fields(Hyperparameters)]


def test_strings_are_typed_and_defaults_fill_the_rest():
    parsed = parse_hyperparameters(
        {"learning_rate": "0.05", "num_iterations": "300.0", "max_depth": "-1", "seed": 7},
        source="hyperparameters.json",
    )
    assert parsed == Hyperparameters(learning_rate=0.05, num_iterations=300, seed=7)
    assert isinstance(parsed.num_iterations, int)


def test_platform_keys_are_ignored():
    raw = {"_tuning_objective_metric": "val_accuracy", "sagemaker_region": "eu-west-1"}
    assert parse_hyperparameters(raw, source="h.json") == Hyperparameters()


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("learning_rate", "0", "a number > 0"),
        ("learning_rate", "fast", "a number > 0"),
        ("learning_rate", "nan", "a number > 0"),
        ("num_iterations", "0", "a whole number >= 1"),
        ("num_iterations", "10.5", "a whole number >= 1"),
        ("num_iterations", "1e12", "a whole number >= 1"),
        ("num_leaves", "1", "a whole number from 2 to 131072"),
        ("max_depth", "0", "-1 (no limit) or a whole number >= 1"),
        ("min_data_in_leaf", "-1", "a whole number >= 0"),
        ("feature_fraction", "1.5", "a number in (0, 1]"),
        ("lambda_l2", "-0.1", "a number >= 0"),
        ("early_stopping_rounds", "-5", "a whole number >= 0 (0 turns early stopping off)"),
        ("validation_fraction", "1", "a number strictly between 0 and 1"),
        ("validation_fraction", "0", "a number strictly between 0 and 1"),
        ("seed", "-1", "a whole number from 0 to 2147483647"),
        ("target", "  ", "a non-empty column name"),
    ],
)
def test_bad_values_name_key_value_and_allowed_range(key, value, allowed):
    with pytest.raises(TrainingError) as raised:
        parse_hyperparameters({key: value}, source="hyperparameters.json")
    assert str(raised.value) == (
        f"hyperparameter {key!r} in hyperparameters.json is {value!r}; allowed: {allowed}"
    )


def test_non_scalar_value_is_refused():
    with pytest.raises(TrainingError, match=r"'num_leaves' in h.json is \[31\]; expected a string"):
        parse_hyperparameters({"num_leaves": [31]}, source="h.json")


def test_the_module_imports_only_the_standard_library():
    """The CDK app imports it at synth, where the model libraries need not be installed."""
    check = (
        "import sys; import model_kit.training.hyperparameters; "
        "print(sorted({'numpy', 'lightgbm', 'scipy'} & set(sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", check],
        cwd=CONTAINERS_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == "[]"
