"""One rehearsal per test session: its deploys (about 30 s) and its teardowns (about 20 s)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from local.rehearsal.scenario import RehearsalRun, rehearsed, rehearsed_teardown


@pytest.fixture(scope="session")
def rehearsal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RehearsalRun]:
    with rehearsed(tmp_path_factory.mktemp("rehearsal")) as run:
        yield run


@pytest.fixture(scope="session")
def teardown(
    rehearsal: RehearsalRun, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RehearsalRun]:
    """Two deploys and `cdk destroy --all`s in an account of their own (about 20 s)."""
    workdir = tmp_path_factory.mktemp("teardown")
    with rehearsed_teardown(workdir, rehearsal.deploys[0].assembly) as run:
        yield run
