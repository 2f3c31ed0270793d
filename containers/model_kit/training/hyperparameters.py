"""The training hyperparameters: parsed from SageMaker's all-string JSON, checked, typed.

SageMaker passes every hyperparameter as a string, so each one is parsed here
with its allowed range, and a bad value is refused before any data is read:
a typo should cost seconds, not a training run. The CDK app imports this
module to check its config at synth time, so it uses the standard library only.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from model_kit.training.errors import TrainingError

log = logging.getLogger(__name__)

# Keys the platform or the SageMaker SDK may add on its own (automatic model
# tuning adds `_tuning_objective_metric`); they are not ours to refuse.
PLATFORM_KEY_PREFIXES = ("_tuning_objective_metric", "sagemaker_")


@dataclass(frozen=True)
class Hyperparameters:
    """Typed hyperparameters; the defaults are the ones agreed for the project."""

    target: str = "label"
    learning_rate: float = 0.1
    num_iterations: int = 200
    num_leaves: int = 31
    max_depth: int = -1
    min_data_in_leaf: int = 20
    feature_fraction: float = 1.0
    lambda_l2: float = 0.0
    early_stopping_rounds: int = 20
    validation_fraction: float = 0.2
    seed: int = 42

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


INT32 = 2**31 - 1


@dataclass(frozen=True)
class Rule:
    """How one hyperparameter is parsed and which values it accepts."""

    parse: Callable[[str], Any]
    allowed: str
    accepts: Callable[[Any], bool]


def _parse_int(text: str) -> int:
    """Whole numbers within LightGBM's 32-bit range; ``"200.0"`` too (SDKs write ints so)."""
    try:
        number = int(text)
    except ValueError:
        as_float = float(text)
        if not as_float.is_integer():
            raise ValueError(text) from None
        number = int(as_float)
    if abs(number) > INT32:
        raise ValueError(text)
    return number


def _parse_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(text)
    return number


def _parse_name(text: str) -> str:
    if not text.strip():
        raise ValueError(text)
    return text.strip()


RULES: dict[str, Rule] = {
    "target": Rule(_parse_name, "a non-empty column name", lambda v: True),
    "learning_rate": Rule(_parse_float, "a number > 0", lambda v: v > 0),
    "num_iterations": Rule(_parse_int, "a whole number >= 1", lambda v: v >= 1),
    "num_leaves": Rule(_parse_int, "a whole number from 2 to 131072", lambda v: 2 <= v <= 131072),
    "max_depth": Rule(
        _parse_int, "-1 (no limit) or a whole number >= 1", lambda v: v == -1 or v >= 1
    ),
    "min_data_in_leaf": Rule(_parse_int, "a whole number >= 0", lambda v: v >= 0),
    "feature_fraction": Rule(_parse_float, "a number in (0, 1]", lambda v: 0 < v <= 1),
    "lambda_l2": Rule(_parse_float, "a number >= 0", lambda v: v >= 0),
    "early_stopping_rounds": Rule(
        _parse_int, "a whole number >= 0 (0 turns early stopping off)", lambda v: v >= 0
    ),
    "validation_fraction": Rule(
        _parse_float, "a number strictly between 0 and 1", lambda v: 0 < v < 1
    ),
    "seed": Rule(_parse_int, f"a whole number from 0 to {INT32}", lambda v: 0 <= v <= INT32),
}


def parse_hyperparameters(raw: Mapping[str, Any], source: str) -> Hyperparameters:
    """Check every key and value of ``raw`` (as SageMaker wrote them) and type them."""
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key.startswith(PLATFORM_KEY_PREFIXES):
            log.info("ignoring hyperparameter %r: set by the platform, not for this algorithm", key)
            continue
        rule = RULES.get(key)
        if rule is None:
            raise TrainingError(
                f"unknown hyperparameter {key!r} in {source}; "
                f"allowed hyperparameters are: {', '.join(RULES)}"
            )
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise TrainingError(
                f"hyperparameter {key!r} in {source} is {json.dumps(value)}; "
                f"expected a string holding {rule.allowed}"
            )
        try:
            parsed = rule.parse(str(value))
        except ValueError:
            parsed = None
        if parsed is None or not rule.accepts(parsed):
            raise TrainingError(
                f"hyperparameter {key!r} in {source} is {str(value)!r}; allowed: {rule.allowed}"
            )
        values[key] = parsed
    return Hyperparameters(**values)


def read_hyperparameters(path: Path) -> Hyperparameters:
    """The file is optional: SageMaker omits it when a job sets no hyperparameters."""
    if not path.is_file():
        log.info("no %s: using the default hyperparameters", path)
        return Hyperparameters()
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TrainingError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise TrainingError(
            f"{path} must hold a JSON object of name/value strings, not {type(raw).__name__}"
        )
    return parse_hyperparameters(raw, source=path.name)
