"""One rehearsal per test session: its deploys (about 30 s) and its teardowns (about 20 s)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from local.moto_server import start_moto_server
from local.rehearsal.assembly import read_assembly
from local.rehearsal.deployer import Rehearsal
from local.rehearsal.scenario import REGION, RehearsalRun, rehearsed, rehearsed_teardown, synth


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


@pytest.fixture(scope="session")
def async_deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rehearsal]:
    """The app with an asynchronous endpoint, `cdk deploy --all` into an account of its own."""
    assembly = synth(tmp_path_factory.mktemp("async-app"), ("config.serving.mode=async",))
    with start_moto_server() as moto:
        rehearsal = Rehearsal(moto.url, REGION)
        try:
            for stack in read_assembly(assembly):
                result = rehearsal.deploy(stack)
                assert not result.skipped, stack.name
            yield rehearsal
        finally:
            rehearsal.close()
