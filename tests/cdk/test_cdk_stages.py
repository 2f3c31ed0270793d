"""Two stages of the app synthesized side by side: nothing either names may collide in one
account and region (stack names, functions, queues, log groups, the endpoint, parameters,
alarms, jobs' name prefixes)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from .cdk_synth import Synthesized, context_with, synthesize

# Properties that name a resource in its account and region.
NAME_PROPERTIES = {
    "FunctionName",
    "QueueName",
    "TopicName",
    "LogGroupName",
    "EndpointName",
    "Name",
    "AlarmName",
    "RoleName",
    "BucketName",
    "RepositoryName",
    "JobNameStem",
    "StateMachineName",
}


def physical_names(synthesized: Synthesized) -> set[str]:
    """Every literal name the stage's templates give a resource, and its stack names."""
    names = set(synthesized.templates)
    for template in synthesized.templates.values():
        for resource in template["Resources"].values():
            for key, value in resource.get("Properties", {}).items():
                if key in NAME_PROPERTIES and isinstance(value, str):
                    names.add(value)
    return names


@pytest.fixture(scope="module")
def stages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Synthesized]:
    return {
        stage: synthesize(tmp_path_factory.mktemp(stage), context_with(stage=stage))
        for stage in ("dev", "prod")
    }


def test_two_stages_name_nothing_alike(stages: dict[str, Synthesized]) -> None:
    dev, prod = (physical_names(stages[stage]) for stage in ("dev", "prod"))
    assert "custom-sm-dev-model-endpoint" in dev and "custom-sm-prod-client" in prod
    assert dev & prod == set()
    # Each is the stage's prefix, in a path or not (log groups, parameters).
    assert {name for name in dev if "custom-sm-dev" not in name} == set()


def test_each_stage_scopes_its_roles_to_its_own_names(stages: dict[str, Synthesized]) -> None:
    iam: dict[str, Any] = stages["prod"].templates["custom-sm-prod-iam"]
    text = json.dumps(iam)
    assert "custom-sm-prod-client-failures" in text
    assert "endpoint/custom-sm-prod-model-endpoint" in text
    assert "custom-sm-dev" not in text
