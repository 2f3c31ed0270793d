"""One rehearsal per test session: three `cdk deploy --all` into moto (about 30 s)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from local.rehearsal.scenario import RehearsalRun, rehearsed


@pytest.fixture(scope="session")
def rehearsal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RehearsalRun]:
    with rehearsed(tmp_path_factory.mktemp("rehearsal")) as run:
        yield run
