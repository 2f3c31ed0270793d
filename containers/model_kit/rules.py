"""Typed rules for values that arrive as strings: how to parse one, and what is allowed.

Shared by the training program's hyperparameters and every model family's own, and read by
the CDK app at synth, so standard library only.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

INT32 = 2**31 - 1


@dataclass(frozen=True)
class Rule:
    """How one value is parsed and which values it accepts."""

    parse: Callable[[str], Any]
    allowed: str
    accepts: Callable[[Any], bool]


def parse_int(text: str) -> int:
    """Whole numbers within the libraries' 32-bit range; ``"200.0"`` too (SDKs write ints so)."""
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


def parse_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(text)
    return number


def available_cpus() -> int:
    """CPUs this process may run on (a container's CPU set, not the host's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
