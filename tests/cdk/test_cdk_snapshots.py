"""Snapshots of every stack's template, and synth determinism.

Asset hashes (image tags, zip keys, the bundled data version) change with any byte in an
asset folder, so every 64-hex hash is normalised before comparing (aws/aws-cdk#13468), and so
are the digests that include the training image's: the serving model's MODEL_INPUTS_DIGEST,
the training job's name stem, and the wait condition pair's id in its logical ids
(`test_cdk_deploy.py` checks when each changes).
After an intended change, refresh the snapshots and review their diff:

    UPDATE_SNAPSHOTS=1 .venv/bin/python -m pytest tests/cdk/test_cdk_snapshots.py
"""

from __future__ import annotations

import difflib
import json
import os
import re
from pathlib import Path

import pytest
from model_kit import families

from app import STACKS

from .cdk_synth import Synthesized, context_with, synthesize

SNAPSHOTS = Path(__file__).parent / "snapshots"
ASSET_HASH = re.compile(r"\b[0-9a-f]{64}\b")
MODEL_INPUTS_DIGEST = re.compile(r'("MODEL_INPUTS_DIGEST": )"[0-9a-f]{16}"')
JOB_NAME_DIGEST = re.compile(r'-[0-9a-f]{16}(-?)"')
WAIT_ID = re.compile(r"\b(TrainingJob/?(?:Wait|Handle))[0-9a-f]{8}(?:[0-9A-F]{8})?\b")
UPDATE = os.environ.get("UPDATE_SNAPSHOTS") == "1"


def normalised(template: dict) -> str:
    text = json.dumps(template, indent=1, sort_keys=True)
    text = MODEL_INPUTS_DIGEST.sub(r'\1"<digest>"', text)
    text = JOB_NAME_DIGEST.sub(r'-<digest>\1"', text)
    text = WAIT_ID.sub(r"\1<wait-id>", text)
    return ASSET_HASH.sub("<asset-hash>", text) + "\n"


@pytest.mark.parametrize("stack", STACKS)
def test_template_matches_snapshot(synthesized, stack):
    actual = normalised(synthesized.template(stack))
    snapshot = SNAPSHOTS / f"{stack}.json"
    if UPDATE:
        SNAPSHOTS.mkdir(exist_ok=True)
        snapshot.write_text(actual)
    assert snapshot.exists(), f"no snapshot {snapshot}; create it with UPDATE_SNAPSHOTS=1"
    assert actual == snapshot.read_text(), (
        f"{stack} template differs from {snapshot}; if intended, rerun with UPDATE_SNAPSHOTS=1 "
        "and review the diff"
    )


@pytest.fixture(scope="module")
def other_families(tmp_path_factory) -> dict[str, Synthesized]:
    return {
        family: synthesize(
            tmp_path_factory.mktemp(f"cdk.out.{family}"),
            context_with(**{"config.model_family": family}),
        )
        for family in sorted(families.MODULES)
        if family != families.DEFAULT
    }


@pytest.mark.parametrize("stack", STACKS)
def test_every_family_synthesizes_the_same_templates_but_its_images(other_families, stack):
    """A family changes which images are built (their hashes), nothing else in any stack."""
    snapshot = (SNAPSHOTS / f"{stack}.json").read_text()
    for family, synthesized in other_families.items():
        assert normalised(synthesized.template(stack)) == snapshot, family
        assets = json.loads((synthesized.outdir / "custom-sm-registry.assets.json").read_text())
        for image in assets["dockerImages"].values():
            assert image["source"]["dockerBuildArgs"] == {families.VARIABLE: family}


def test_snapshots_hold_no_raw_asset_hash():
    for snapshot in SNAPSHOTS.glob("*.json"):
        assert not ASSET_HASH.search(snapshot.read_text()), snapshot


def test_synth_twice_gives_byte_identical_templates(synthesized, tmp_path):
    again = synthesize(tmp_path / "again")
    for path in synthesized.outdir.glob("*.template.json"):
        first, second = path.read_text(), (tmp_path / "again" / path.name).read_text()
        difference = "".join(
            difflib.unified_diff(first.splitlines(True), second.splitlines(True), n=2)
        )
        assert first == second, f"{path.name} changed between two synths:\n{difference[:3000]}"
    assert sorted(again.templates) == sorted(synthesized.templates)
