"""One in-process synth of the whole app per test session (synths are the slow part)."""

from __future__ import annotations

import pytest

from .cdk_synth import Synthesized, synthesize


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory) -> Synthesized:
    return synthesize(tmp_path_factory.mktemp("cdk.out"))
