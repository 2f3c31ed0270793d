"""A named check that passed or failed, with what was seen: what the local runs report."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str

    def line(self) -> str:
        return f"  {'ok  ' if self.passed else 'FAIL'} {self.name}: {self.detail}"


@dataclass(kw_only=True)
class Checklist:
    """Checks in the order they ran; passed when there are some and all of them passed."""

    checks: list[Check] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(check.passed for check in self.checks)

    def check(self, name: str, passed: bool, detail: str) -> None:
        self.checks.append(Check(name, passed, detail))
