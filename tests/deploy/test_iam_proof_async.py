"""IAM proven for an asynchronous endpoint (`serving.mode` async), as `test_iam_proof` proves
the default app: the app deployed into moto in that mode, the client and its completion
handler run on the deployed functions with their deployed environments (their AWS calls
recorded), SageMaker's own calls listed, and each call evaluated against its role's
synthesized policy. The topics and their key grant the execution role on the resources, which
the evaluator does not read (`local.iam_policy` evaluates identity policies)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from local.async_inference import AsyncInference, Notification
from local.iam_policy import Request, evaluate
from local.model_server import start_model_server
from local.rehearsal.deployer import Rehearsal
from local.rehearsal.inventory import functions, role_policies
from local.runtime_adapter import start_runtime_adapter
from local.s3_event import object_created_record

from .test_iam_proof import INFERENCE_CSV, PLACE, Checked, iam_requests

# Calls of the client's code that only an asynchronous endpoint makes: proven here, not in
# `test_iam_proof`, whose app is the default one.
PROVEN_BY_ASYNC = {"InvokeEndpointAsync"}


class AsyncApp:
    """The deployed app, its functions and roles, and the calls checked against them."""

    def __init__(self, rehearsal: Rehearsal) -> None:
        self.rehearsal = rehearsal
        self.policies = role_policies(rehearsal)
        self.functions = {f.handler: f for f in functions(rehearsal)}
        self.checked: list[Checked] = []

    def run(self, handler: str, event: dict[str, Any], environment: dict[str, str]) -> Any:
        deployed = self.functions[handler]
        scope = self.rehearsal.scope(deployed.stack)
        before = len(self.rehearsal.handlers.invocations)
        result = self.rehearsal.handlers.run(
            scope, deployed.logical_id, {**event, "LogicalResourceId": handler}, environment
        )
        for invocation in self.rehearsal.handlers.invocations[before:]:
            for call in invocation.calls:
                for request in iam_requests(call, PLACE):
                    self.checked.append(
                        Checked(handler, invocation.role_arn, request, call.operation)
                    )
        return result


@pytest.fixture(scope="module")
def async_app(async_deployment: Rehearsal, trained_model_dir: Path) -> AsyncApp:
    app = AsyncApp(async_deployment)
    _exercise(app, trained_model_dir)
    return app


def _exercise(app: AsyncApp, trained_model_dir: Path) -> None:
    """A file scored, one rejected, and a failure that is not the file's resubmitted."""
    run = app.rehearsal
    s3, sagemaker = run.client("s3"), run.client("sagemaker")
    client = app.functions["lambda_function.lambda_handler"]
    variables = run.scope(client.stack).resolve(client.variables)
    input_bucket = run.scope(client.stack).resolve(
        app.functions["async_completion.handler"].variables["INFERENCE_INPUT_BUCKET"]
    )
    s3.put_bucket_versioning(Bucket=input_bucket, VersioningConfiguration={"Status": "Enabled"})
    (config,) = sagemaker.list_endpoint_configs()["EndpointConfigs"]
    output = sagemaker.describe_endpoint_config(EndpointConfigName=config["EndpointConfigName"])[
        "AsyncInferenceConfig"
    ]["OutputConfig"]
    queue = AsyncInference(s3, output["S3OutputPath"], output["S3FailurePath"])
    with (
        start_model_server(trained_model_dir.parent, workers=1) as model_server,
        start_runtime_adapter(
            variables["MODEL_ENDPOINT"], model_server.url, asynchronous=queue
        ) as adapter,
    ):
        runtime = {"AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": adapter.url}
        for key, body in (
            ("runs/good.csv", INFERENCE_CSV.encode()),
            ("runs/bad.csv", INFERENCE_CSV.replace("0.", "x.", 1).encode()),
        ):
            put = s3.put_object(Bucket=input_bucket, Key=key, Body=body)
            record = object_created_record(
                input_bucket, key, len(body), etag=put["ETag"], version_id=put["VersionId"]
            )
            (outcome,) = app.run("lambda_function.lambda_handler", {"Records": [record]}, runtime)[
                "objects"
            ]
            assert outcome["outcome"] == "submitted", outcome
        notifications = queue.drain()
        assert sorted(n.topic for n in notifications) == ["error", "success"]
        failure = next(n for n in notifications if n.topic == "error").message
        down = {
            **failure,
            "failureReason": "ModelError: Received server error (500) from model.",
            "inferenceId": failure["inferenceId"].replace("-1", "-2"),
        }
        for notification in [*notifications, Notification("error", down)]:
            app.run("async_completion.handler", notification.sns_event(), runtime)
        queue.drain()
    listing = s3.list_objects_v2(Bucket=variables["INFERENCE_OUTPUT_BUCKET"])["Contents"]
    outputs = {item["Key"] for item in listing}
    assert outputs == {"runs/good.csv.out", "runs/bad.csv.error.json"}, outputs


def service_side(app: AsyncApp) -> list[Checked]:
    """What SageMaker does with the execution role for an asynchronous invocation: read the
    input object, write the result or the failure."""
    sagemaker = app.rehearsal.client("sagemaker")
    (model,) = sagemaker.list_models()["Models"]
    role = sagemaker.describe_model(ModelName=model["ModelName"])["ExecutionRoleArn"]
    (config,) = sagemaker.list_endpoint_configs()["EndpointConfigs"]
    output = sagemaker.describe_endpoint_config(EndpointConfigName=config["EndpointConfigName"])[
        "AsyncInferenceConfig"
    ]["OutputConfig"]
    client = app.functions["lambda_function.lambda_handler"]
    input_bucket = app.rehearsal.scope(client.stack).resolve(
        app.functions["async_completion.handler"].variables["INFERENCE_INPUT_BUCKET"]
    )
    objects = [
        ("s3:GetObject", f"arn:aws:s3:::{input_bucket}/runs/good.csv"),
        ("s3:PutObject", "arn:aws:s3:::" + output["S3OutputPath"][5:] + "id-1.out"),
        ("s3:PutObject", "arn:aws:s3:::" + output["S3FailurePath"][5:] + "id-1-error.out"),
    ]
    return [
        Checked("SageMaker asynchronous inference", role, Request(action, arn), "its work")
        for action, arn in objects
    ]


def test_every_call_of_an_asynchronous_app_is_allowed_by_its_role(async_app: AsyncApp) -> None:
    calls = [*async_app.checked, *service_side(async_app)]
    denied = []
    for call in calls:
        assert call.role_arn in async_app.policies, f"{call.who} runs as {call.role_arn}"
        decision = evaluate(async_app.policies[call.role_arn], call.request)
        if not decision.allowed:
            denied.append(f"{call.who} ({call.source}): {decision.reason}")
    assert not denied, "\n".join(denied)
    sources = {call.source for call in async_app.checked}
    assert sources >= PROVEN_BY_ASYNC
    callers = {call.who for call in async_app.checked if call.source == "InvokeEndpointAsync"}
    assert callers == {"lambda_function.lambda_handler", "async_completion.handler"}


def test_the_client_of_an_asynchronous_endpoint_may_not_call_it_synchronously(
    async_app: AsyncApp,
) -> None:
    client = async_app.functions["lambda_function.lambda_handler"]
    endpoint = async_app.rehearsal.scope(client.stack).resolve(client.variables["MODEL_ENDPOINT"])
    arn = PLACE.arn("sagemaker", f"endpoint/{endpoint}")
    decision = evaluate(
        async_app.policies[client.role_arn], Request("sagemaker:InvokeEndpoint", arn)
    )
    assert not decision.allowed, decision.reason
