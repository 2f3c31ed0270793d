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
from model_kit import families
from model_kit.training.errors import TrainingError
from model_kit.training.hyperparameters import RULES, Hyperparameters, parse_hyperparameters

CONTAINERS_DIR = REPO_ROOT / "containers"


@pytest.mark.parametrize("name", families.names())
def test_every_hyperparameter_has_a_rule_and_every_family_rule_a_default(name):
    assert list(RULES) == [field.name for field in fields(Hyperparameters) if field.name != "model"]
    family = families.get(name)
    assert set(family.rules) == set(family.defaults)
    assert not set(family.rules) & set(RULES), "a family's own names must not hide common ones"


def test_strings_are_typed_and_defaults_fill_the_rest():
    parsed = parse_hyperparameters(
        {"learning_rate": "0.05", "num_iterations": "300.0", "max_depth": "-1", "seed": 7},
        source="hyperparameters.json",
    )
    lightgbm_defaults = families.get("lightgbm").defaults
    assert parsed == Hyperparameters(
        learning_rate=0.05, num_iterations=300, seed=7, model=lightgbm_defaults
    )
    assert isinstance(parsed.num_iterations, int)


def test_each_family_checks_its_own_hyperparameters():
    parsed = parse_hyperparameters({"max_depth": "4"}, source="h.json", family="xgboost")
    assert parsed.model == {**families.get("xgboost").defaults, "max_depth": 4}
    with pytest.raises(TrainingError, match=r"'num_leaves' in h.json; allowed hyperparameters"):
        parse_hyperparameters({"num_leaves": "31"}, source="h.json", family="xgboost")
    with pytest.raises(TrainingError, match=r"unknown model family 'catboost'; known families"):
        parse_hyperparameters({}, source="h.json", family="catboost")


def test_platform_keys_are_ignored():
    raw = {"_tuning_objective_metric": "val_accuracy", "sagemaker_region": "eu-west-1"}
    assert parse_hyperparameters(raw, source="h.json") == parse_hyperparameters({}, "h.json")


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


def test_the_rules_are_read_with_the_standard_library_only():
    """The CDK app checks them at synth, where the model libraries need not be installed."""
    check = (
        "import sys; from model_kit.training.hyperparameters import parse_hyperparameters; "
        "from model_kit import families; "
        "[parse_hyperparameters({}, 'h.json', name) for name in families.names()]; "
        "print(sorted({'numpy', 'lightgbm', 'xgboost', 'scipy'} & set(sys.modules)))"
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
