"""`cdk destroy --all` rehearsed: what each removal policy leaves, as the README says."""

from __future__ import annotations

import pytest

from local.rehearsal.scenario import RehearsalRun

CHECKS = [
    "retain leaves exactly the five buckets",
    "switching to destroy changes only the storage stack",
    "destroy leaves nothing of the app",
]


@pytest.mark.parametrize("name", CHECKS)
def test_check_passes(teardown: RehearsalRun, name: str) -> None:
    (check,) = (c for c in teardown.checks if c.name == name)
    assert check.passed, f"{check.name}: {check.detail}\n\n{teardown.report()}"


def test_no_check_is_left_unlisted(teardown: RehearsalRun) -> None:
    assert sorted(c.name for c in teardown.checks) == sorted(CHECKS)


def test_destroy_empties_each_bucket_with_cdks_own_handler(teardown: RehearsalRun) -> None:
    """The buckets held objects in two versions; CDK's Node.js emptier ran for each one."""
    storage = teardown.deploys[-1].result("storage")
    emptied = [call for call in storage.custom_calls if "AutoDeleteObjects" in call]
    assert len(emptied) == 5, storage.custom_calls
    assert not storage.custom_skipped
