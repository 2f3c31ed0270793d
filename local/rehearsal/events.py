"""EventBridge's part: SageMaker's "Training Job State Change" events, the app's rules they
match, and each target's input.

moto keeps the rules but emits no SageMaker events and runs no targets (a Lambda needs
Docker), so the rehearsal does both: each training job that has ended (moto completes a job
as soon as it is created) yields its event once, as SageMaker sends one per change; every rule
whose pattern matches (moto's own matcher) hands its target the input its transformer makes.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from moto.events.models import EventPattern

from local.rehearsal.template import TemplateError

SOURCE = "aws.sagemaker"
DETAIL_TYPE = "SageMaker Training Job State Change"
ENDED = ("Completed", "Failed", "Stopped")


def training_job_events(
    sagemaker: Any, account: str, region: str, sent: set[tuple[str, str]]
) -> Iterator[dict[str, Any]]:
    """An event for each job that has ended since the last call (`sent` remembers)."""
    for page in sagemaker.get_paginator("list_training_jobs").paginate():
        for summary in page["TrainingJobSummaries"]:
            job = sagemaker.describe_training_job(TrainingJobName=summary["TrainingJobName"])
            change = (job["TrainingJobName"], job["TrainingJobStatus"])
            if change[1] not in ENDED or change in sent:
                continue
            sent.add(change)
            job.pop("ResponseMetadata", None)
            yield {
                "version": "0",
                "id": str(uuid.uuid4()),
                "detail-type": DETAIL_TYPE,
                "source": SOURCE,
                "account": account,
                "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "region": region,
                "resources": [job["TrainingJobArn"]],
                "detail": json.loads(json.dumps(job, default=str)),
            }


def matches(rule: dict[str, Any], event: dict[str, Any]) -> bool:
    return EventPattern.load(json.dumps(rule["EventPattern"])).matches_event(event)


def target_input(target: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    """What the target receives: the event, its constant `Input`, or the transformer's output.

    A placeholder stands outside quotes in the templates CDK writes for `EventField`s, where
    EventBridge inserts the value as JSON; a placeholder inside a string is not modelled.
    """
    if "Input" in target:
        return json.loads(target["Input"])
    transformer = target.get("InputTransformer")
    if transformer is None:
        return event
    text = transformer["InputTemplate"]
    for name, path in transformer.get("InputPathsMap", {}).items():
        value: Any = event
        for key in path.removeprefix("$.").split("."):
            value = value.get(key) if isinstance(value, dict) else None
        text = text.replace(f"<{name}>", json.dumps(value))
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise TemplateError(
            f"the rehearsal cannot apply the input template {transformer['InputTemplate']!r}: "
            f"{error}"
        ) from error
