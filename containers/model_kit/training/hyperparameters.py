"""The training hyperparameters: parsed from SageMaker's all-string JSON, checked, typed.

SageMaker passes every hyperparameter as a string, so each one is parsed here
with its allowed range, and a bad value is refused before any data is read:
a typo should cost seconds, not a training run. The CDK app imports this
module to check its config at synth time, so it uses the standard library only.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from model_kit import families
from model_kit.rules import INT32, Rule, parse_float, parse_int
from model_kit.training.errors import TrainingError

log = logging.getLogger(__name__)

# Keys the platform or the SageMaker SDK may add on its own (automatic model
# tuning adds `_tuning_objective_metric`); they are not ours to refuse.
PLATFORM_KEY_PREFIXES = ("_tuning_objective_metric", "sagemaker_")


@dataclass(frozen=True)
class Hyperparameters:
    """Typed hyperparameters: the common ones, and the model family's own in ``model``
    (every one of them, defaults filled in)."""

    target: str = "label"
    learning_rate: float = 0.1
    num_iterations: int = 200
    early_stopping_rounds: int = 20
    validation_fraction: float = 0.2
    seed: int = 42
    checkpoint_every_iterations: int = 50
    checkpoint_every_seconds: int = 300
    model: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        common = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "model"}
        return {**common, **self.model}


def _parse_name(text: str) -> str:
    if not text.strip():
        raise ValueError(text)
    return text.strip()


# Every family's; each family adds its own (``families``).
RULES: dict[str, Rule] = {
    "target": Rule(_parse_name, "a non-empty column name", lambda v: True),
    "learning_rate": Rule(parse_float, "a number > 0", lambda v: v > 0),
    "num_iterations": Rule(parse_int, "a whole number >= 1", lambda v: v >= 1),
    "early_stopping_rounds": Rule(
        parse_int, "a whole number >= 0 (0 turns early stopping off)", lambda v: v >= 0
    ),
    "validation_fraction": Rule(
        parse_float, "a number strictly between 0 and 1", lambda v: 0 < v < 1
    ),
    "seed": Rule(parse_int, f"a whole number from 0 to {INT32}", lambda v: 0 <= v <= INT32),
    "checkpoint_every_iterations": Rule(
        parse_int, "a whole number >= 1 (iterations between two checkpoints)", lambda v: v >= 1
    ),
    "checkpoint_every_seconds": Rule(
        parse_int, "a whole number >= 1 (seconds between two checkpoints)", lambda v: v >= 1
    ),
}
# How often to checkpoint, not what is trained: a checkpoint resumes whatever they were.
CHECKPOINT_SETTINGS = ("checkpoint_every_iterations", "checkpoint_every_seconds")


def parse_hyperparameters(
    raw: Mapping[str, Any], source: str, family: str = families.DEFAULT
) -> Hyperparameters:
    """Check every key and value of ``raw`` (as SageMaker wrote them) against the common
    rules and ``family``'s, and type them."""
    try:
        own = families.get(family)
    except families.UnknownFamily as exc:
        raise TrainingError(str(exc)) from exc
    rules = {**RULES, **own.rules}
    common: dict[str, Any] = {}
    model = dict(own.defaults)
    for key, value in raw.items():
        if key.startswith(PLATFORM_KEY_PREFIXES):
            log.info("ignoring hyperparameter %r: set by the platform, not for this algorithm", key)
            continue
        rule = rules.get(key)
        if rule is None:
            raise TrainingError(
                f"unknown hyperparameter {key!r} in {source}; allowed hyperparameters "
                f"(model family {family}) are: {', '.join(rules)}"
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
        (common if key in RULES else model)[key] = parsed
    return Hyperparameters(**common, model=model)


def read_hyperparameters(path: Path, family: str) -> Hyperparameters:
    """The file is optional: SageMaker omits it when a job sets no hyperparameters."""
    if not path.is_file():
        log.info("no %s: using the default hyperparameters", path)
        return parse_hyperparameters({}, source=path.name, family=family)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TrainingError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise TrainingError(
            f"{path} must hold a JSON object of name/value strings, not {type(raw).__name__}"
        )
    return parse_hyperparameters(raw, source=path.name, family=family)
