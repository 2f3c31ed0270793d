"""Model families: the seam between this kit and a model library.

A family is one module defining ``FAMILY``, an object that implements ``ModelFamily``
(``base.py``): its own hyperparameters, how to fit a model on prepared data while
reporting progress, and how to save and load what it fits. ``MODULES`` lists the families
this kit ships. Both images are built for one family (the build argument and environment
variable ``MODEL_FAMILY``), and only that family's module and library are ever imported.
A family defined elsewhere joins with ``register``. Standard library only: the CDK app
reads the names at synth.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from model_kit.families.base import ModelFamily

DEFAULT = "lightgbm"
MODULES = {
    "lightgbm": "model_kit.families.lightgbm_trees",
    "xgboost": "model_kit.families.xgboost_trees",
}
# Set in both images from their build argument; unset, the default family.
VARIABLE = "MODEL_FAMILY"
_registered: dict[str, ModelFamily] = {}


class UnknownFamily(ValueError):
    """A family name that neither this kit ships nor anyone registered."""


def names() -> list[str]:
    return sorted({*MODULES, *_registered})


def register(family: ModelFamily) -> None:
    """Make a family defined outside this package available by its name."""
    _registered[family.name] = family


def get(name: str) -> ModelFamily:
    """The family called ``name``, its module imported now."""
    if name in _registered:
        return _registered[name]
    if name not in MODULES:
        raise UnknownFamily(f"unknown model family {name!r}; known families: {', '.join(names())}")
    return importlib.import_module(MODULES[name]).FAMILY


def configured(env: Mapping[str, str] | None = None) -> str:
    """The family this image was built for."""
    env = os.environ if env is None else env
    return env.get(VARIABLE, "").strip() or DEFAULT
