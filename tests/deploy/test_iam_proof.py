"""IAM proven, not inferred: every AWS call made with one of the app's roles, checked against
that role's synthesized policies as deployed by the rehearsal.

The calls are recorded from running the real code (the deployed assets, with the deployed
environment): the training-job handler and CDK's handlers while the rehearsal deploys, and the
client Lambda on files dropped into the deployed input bucket. The calls AWS services make
with our roles are listed from the deployed resources: Lambda writing each function's logs,
CDK's provider framework invoking its handlers, SageMaker training, hosting and batch transform.
Each becomes
the IAM requests AWS authorizes (`local.aws_calls`), evaluated by `local.iam_policy`.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from benchmarks.client_memory import generate_file
from local.aws_calls import AwsCall, Place, iam_requests, recording
from local.batch_transform import BatchTransform
from local.credentials import FAKE_CREDENTIALS
from local.iam_policy import NamedPolicy, Request, evaluate
from local.model_server import start_model_server
from local.rehearsal.deployer import ACCOUNT
from local.rehearsal.inventory import DeployedFunction, functions, role_policies
from local.rehearsal.scenario import REGION, RehearsalRun, endpoint_chain, outputs, training_jobs
from local.runtime_adapter import start_runtime_adapter
from local.s3_event import object_created_record

ROOT = Path(__file__).resolve().parents[2]
PLACE = Place(ACCOUNT, REGION)
INFERENCE_CSV = (ROOT / "data" / "inference" / "inference.csv").read_text()
PART_BYTES = 5 * 1024 * 1024
# The code whose AWS calls must all be exercised here.
CALL_SITES = {
    "client Lambda": [*sorted((ROOT / "lambda_fn").glob("*.py"))],
    "training-job handler": [ROOT / "constructs_lib" / "training_job" / "handler" / "index.py"],
}


@dataclass(frozen=True)
class Checked:
    """One IAM request, who makes it, and why."""

    who: str
    role_arn: str
    request: Request
    source: str


# -- the calls --------------------------------------------------------------------------------


def stack_named(run: RehearsalRun, suffix: str) -> str:
    return next(name for name in run.rehearsal.stacks if name.endswith(f"-{suffix}"))


def function(run: RehearsalRun, handler: str) -> DeployedFunction:
    (found,) = (f for f in functions(run.rehearsal) if f.handler == handler)
    return found


@pytest.fixture(scope="module")
def policies(rehearsal: RehearsalRun) -> dict[str, list[NamedPolicy]]:
    return role_policies(rehearsal.rehearsal)


@pytest.fixture(scope="module")
def client_runs(
    rehearsal: RehearsalRun, trained_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[dict[str, Any]]]:
    """The deployed client Lambda on five files, covering every path that calls AWS: results
    written whole and in parts, an error report that replaces a result and one that replaces
    a multipart upload (aborted), and a result that replaces an error report.
    """
    run = rehearsal.rehearsal
    client = function(rehearsal, "lambda_function.lambda_handler")
    endpoint = run.scope(client.stack).resolve(client.variables["MODEL_ENDPOINT"])
    input_bucket = outputs(rehearsal, "storage")["InputBucketName"]
    s3 = run.client("s3")
    # The template versions the input bucket; moto ignores VersioningConfiguration (the
    # rehearsal's report says so), so S3's events would carry no version id without this.
    s3.put_bucket_versioning(Bucket=input_bucket, VersioningConfiguration={"Status": "Enabled"})
    big = tmp_path_factory.mktemp("client") / "big.jsonl"
    generate_file(big, 25, "jsonl")
    files = [
        ("runs/day1.csv", INFERENCE_CSV.encode(), "predictions"),
        ("runs/day2.csv", INFERENCE_CSV.replace("0.", "x.", 1).encode(), "error_report"),
        ("runs/day2.csv", INFERENCE_CSV.encode(), "predictions"),
        ("runs/big.jsonl", big.read_bytes(), "predictions"),
        ("runs/big.jsonl", big.read_bytes() + b'[1.0, "x"]\n', "error_report"),
    ]
    results = []
    with (
        start_model_server(trained_model_dir.parent, workers=2) as model_server,
        start_runtime_adapter(endpoint, model_server.url) as adapter,
    ):
        for key, body, expected in files:
            put = s3.put_object(Bucket=input_bucket, Key=key, Body=body)
            event = {
                "Records": [
                    object_created_record(
                        input_bucket,
                        key,
                        len(body),
                        etag=put["ETag"],
                        version_id=put["VersionId"],
                        region=REGION,
                    )
                ]
            }
            result = run.handlers.run(
                run.scope(client.stack),
                client.logical_id,
                event,
                {
                    "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": adapter.url,
                    "OUTPUT_PART_BYTES": str(PART_BYTES),
                },
            )
            (outcome,) = result["objects"]
            assert outcome["outcome"] == expected, (key, outcome)
            results.append(outcome)
        results.append(_batch_transform_run(rehearsal, input_bucket, model_server.url, endpoint))
    yield results


def _batch_transform_run(
    rehearsal: RehearsalRun, input_bucket: str, container_url: str, endpoint: str
) -> dict[str, Any]:
    """A file above the batch threshold (lowered for the run): the client starts a transform
    job in the deployed account, SageMaker's part is played on it, and the deployed transform
    handler publishes its result."""
    run = rehearsal.rehearsal
    s3, sagemaker = run.client("s3"), run.client("sagemaker")
    client = function(rehearsal, "lambda_function.lambda_handler")
    # moto names the deployed endpoint itself (it ignores EndpointName): the app's name is
    # given to the same endpoint config here, so the client finds the deployed model.
    chain = endpoint_chain(rehearsal)
    sagemaker.create_endpoint(EndpointName=endpoint, EndpointConfigName=chain["config"])
    key, body = "runs/big-batch.csv", INFERENCE_CSV.encode()
    put = s3.put_object(Bucket=input_bucket, Key=key, Body=body)
    record = object_created_record(
        input_bucket, key, len(body), etag=put["ETag"], version_id=put["VersionId"], region=REGION
    )
    result = run.handlers.run(
        run.scope(client.stack),
        client.logical_id,
        {"Records": [record], "LogicalResourceId": "client (batch)"},
        {"BATCH_THRESHOLD_BYTES": "1000"},
    )
    (started,) = result["objects"]
    assert started["outcome"] == "submitted", started
    job = sagemaker.describe_transform_job(TransformJobName=started["transform_job"])
    assert job["ModelName"] == chain["model"]
    player = BatchTransform(s3, container_url, endpoint)
    assert player.run_job(job) == ("Completed", None), player.logs
    transforms = function(rehearsal, "transform_completion.handler")
    event = {
        "detail": {"TransformJobName": job["TransformJobName"], "TransformJobStatus": "Completed"},
        "LogicalResourceId": "transform handler",
    }
    published = run.handlers.run(run.scope(transforms.stack), transforms.logical_id, event, {})
    assert published["outcome"] == "predictions", published
    return published


@pytest.fixture(scope="module")
def stopped_job_calls(rehearsal: RehearsalRun) -> list[AwsCall]:
    """The handler's Delete of a job that still runs, the one path moto cannot reach (its jobs
    complete at once): SageMaker is stubbed with botocore's Stubber, which checks each request
    against the API model, and the calls are recorded as in the rehearsal.
    """
    path = ROOT / "constructs_lib" / "training_job" / "handler" / "index.py"
    spec = importlib.util.spec_from_file_location("handler_for_iam", path)
    assert spec and spec.loader
    handler = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(handler)
    session = boto3.Session(
        aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name=REGION,
    )
    job = training_jobs(rehearsal)[0]
    name = job["TrainingJobName"]
    running = {
        key: job[key]
        for key in (
            "TrainingJobName",
            "TrainingJobArn",
            "ModelArtifacts",
            "AlgorithmSpecification",
            "ResourceConfig",
            "StoppingCondition",
        )
    }
    running.update(
        TrainingJobStatus="InProgress",
        SecondaryStatus="Training",
        CreationTime=datetime.now(UTC),
    )
    with recording(session) as calls:
        sagemaker = session.client("sagemaker")  # after recording starts: clients copy hooks
        stubber = Stubber(sagemaker)
        stubber.activate()
        stubber.add_response("describe_training_job", running, {"TrainingJobName": name})
        stubber.add_response("stop_training_job", {}, {"TrainingJobName": name})
        event = {
            "RequestType": "Delete",
            "ResourceType": "Custom::SageMakerTrainingJob",
            "PhysicalResourceId": name,
            "ResourceProperties": {},
        }
        handler.handle_event(event, sagemaker)
        stubber.assert_no_pending_responses()
    return calls


def recorded(rehearsal: RehearsalRun, stopped_job_calls: list[AwsCall]) -> list[Checked]:
    """Calls our code and CDK's handlers made, each with the role of its function (the
    client's runs are among the handler invocations once its fixture has run)."""
    checked = []
    for invocation in rehearsal.rehearsal.handlers.invocations:
        for call in invocation.calls:
            for request in iam_requests(call, PLACE):
                checked.append(
                    Checked(invocation.function, invocation.role_arn, request, call.operation)
                )
    handler_role = function(rehearsal, "index.on_event").role_arn
    for call in stopped_job_calls:
        for request in iam_requests(call, PLACE):
            checked.append(Checked("training-job handler", handler_role, request, call.operation))
    return checked


def log_stream(group: str, stream: str) -> str:
    return PLACE.arn("logs", f"log-group:{group}:log-stream:{stream}")


def service_side(rehearsal: RehearsalRun) -> list[Checked]:
    """The calls AWS services make with our roles, listed from the deployed resources."""
    run = rehearsal.rehearsal
    checked = []
    deployed = functions(run)
    for fn in deployed:
        stream = log_stream(fn.log_group, "2026/11/30/[$LATEST]0123456789abcdef")
        for action in ("logs:CreateLogStream", "logs:PutLogEvents"):
            checked.append(Checked(fn.name, fn.role_arn, Request(action, stream), "its own logs"))
        if fn.handler.startswith("framework."):
            resolve = run.scope(fn.stack).resolve
            target = resolve(fn.variables["USER_ON_EVENT_FUNCTION_ARN"])
            for action in ("lambda:InvokeFunction", "lambda:GetFunction"):
                checked.append(Checked(fn.name, fn.role_arn, Request(action, target), "provider"))
    checked.extend(training_calls(rehearsal))
    checked.extend(hosting_calls(rehearsal))
    checked.extend(transform_calls(rehearsal))
    return checked


def image_requests(image: str) -> list[Request]:
    _registry, _, repository = image.partition("/")
    repository = repository.split(":")[0]
    repository_arn = PLACE.arn("ecr", f"repository/{repository}")
    return [
        Request("ecr:GetAuthorizationToken", "*"),
        *(
            Request(action, repository_arn)
            for action in (
                "ecr:BatchCheckLayerAvailability",
                "ecr:GetDownloadUrlForLayer",
                "ecr:BatchGetImage",
            )
        ),
    ]


def sagemaker_logs(group: str, stream: str, namespace: str) -> list[Request]:
    return [
        Request("logs:CreateLogGroup", PLACE.arn("logs", f"log-group:{group}")),
        Request("logs:CreateLogStream", log_stream(group, stream)),
        Request("logs:PutLogEvents", log_stream(group, stream)),
        Request("cloudwatch:PutMetricData", "*", {"cloudwatch:namespace": namespace}),
    ]


def training_calls(rehearsal: RehearsalRun) -> list[Checked]:
    """What SageMaker does with the execution role for each training job: list and read the
    channels, pull the image, write the model, logs and metrics."""
    s3 = rehearsal.rehearsal.client("s3")
    checked = []
    for job in training_jobs(rehearsal):
        requests = []
        for channel in job["InputDataConfig"]:
            bucket, _, prefix = channel["DataSource"]["S3DataSource"]["S3Uri"][5:].partition("/")
            requests.append(
                Request("s3:ListBucket", f"arn:aws:s3:::{bucket}", {"s3:prefix": prefix})
            )
            listing = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
            assert listing, f"channel {channel['ChannelName']} has no data"
            requests.extend(
                Request("s3:GetObject", f"arn:aws:s3:::{bucket}/{item['Key']}") for item in listing
            )
        model = job["ModelArtifacts"]["S3ModelArtifacts"].removeprefix("s3://")
        requests.append(Request("s3:PutObject", f"arn:aws:s3:::{model}"))
        requests.extend(image_requests(job["AlgorithmSpecification"]["TrainingImage"]))
        requests.extend(
            sagemaker_logs(
                "/aws/sagemaker/TrainingJobs",
                f"{job['TrainingJobName']}/algo-1-1764500000",
                "/aws/sagemaker/TrainingJobs",
            )
        )
        checked.extend(
            Checked("SageMaker training", job["RoleArn"], request, job["TrainingJobName"])
            for request in requests
        )
    return checked


def hosting_calls(rehearsal: RehearsalRun) -> list[Checked]:
    """What SageMaker does with the execution role for the endpoint: read the model, pull the
    image, write the endpoint's logs and metrics."""
    sagemaker = rehearsal.rehearsal.client("sagemaker")
    model = sagemaker.describe_model(ModelName=endpoint_chain(rehearsal)["model"])
    container = model["PrimaryContainer"]
    # moto ignores EndpointName; the name the app gives it is in the serving stack's outputs.
    endpoint = outputs(rehearsal, "serving")["EndpointName"]
    requests = [
        Request("s3:GetObject", f"arn:aws:s3:::{container['ModelDataUrl'].removeprefix('s3://')}"),
        *image_requests(container["Image"]),
        *sagemaker_logs(
            f"/aws/sagemaker/Endpoints/{endpoint}",
            "AllTraffic/i-0123456789abcdef0",
            "/aws/sagemaker/Endpoints",
        ),
    ]
    return [
        Checked("SageMaker hosting", model["ExecutionRoleArn"], request, endpoint)
        for request in requests
    ]


def transform_calls(rehearsal: RehearsalRun) -> list[Checked]:
    """What SageMaker does with the model's execution role for each transform job: read the
    manifest and each input it lists, pull the image, read the model, write the output, logs
    and metrics."""
    run = rehearsal.rehearsal
    s3, sagemaker = run.client("s3"), run.client("sagemaker")
    checked = []
    for summary in sagemaker.list_transform_jobs()["TransformJobSummaries"]:
        job = sagemaker.describe_transform_job(TransformJobName=summary["TransformJobName"])
        model = sagemaker.describe_model(ModelName=job["ModelName"])
        manifest_uri = job["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"]
        bucket, _, key = manifest_uri.removeprefix("s3://").partition("/")
        prefix, *keys = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        output = job["TransformOutput"]["S3OutputPath"].removeprefix("s3://")
        container = model["PrimaryContainer"]
        requests = [
            Request("s3:GetObject", f"arn:aws:s3:::{manifest_uri.removeprefix('s3://')}"),
            *(Request("s3:GetObject", f"arn:aws:s3:::{prefix['prefix'][5:]}{k}") for k in keys),
            *(Request("s3:PutObject", f"arn:aws:s3:::{output}/{k}.out") for k in keys),
            Request("s3:GetObject", f"arn:aws:s3:::{container['ModelDataUrl'][5:]}"),
            *image_requests(container["Image"]),
            *sagemaker_logs(
                "/aws/sagemaker/TransformJobs",
                f"{job['TransformJobName']}/i-0123456789abcdef0-1764500000",
                "/aws/sagemaker/TransformJobs",
            ),
        ]
        checked.extend(
            Checked("SageMaker batch transform", model["ExecutionRoleArn"], r, job["ModelName"])
            for r in requests
        )
    assert checked, "no transform job was started"
    return checked


def resubmissions(rehearsal: RehearsalRun, calls: list[Checked]) -> list[Checked]:
    """The transform handler starts a failed job again with the client's own calls (moto
    fails no job, so it makes none here): the client's, checked against its role too."""
    client = function(rehearsal, "lambda_function.lambda_handler").role_arn
    role = function(rehearsal, "transform_completion.handler").role_arn

    def starts_a_job(call: Checked) -> bool:
        if call.source == "PutObject":
            return "/batch-transform/" in call.request.resource
        return call.source in ("CreateTransformJob", "DescribeEndpoint", "DescribeEndpointConfig")

    found = [
        Checked("transform handler (a failed job started again)", role, call.request, call.source)
        for call in calls
        if call.role_arn == client and starts_a_job(call)
    ]
    assert len(found) == 5, found  # the manifest, the request, and the three calls
    return found


@pytest.fixture(scope="module")
def all_calls(rehearsal, client_runs, stopped_job_calls) -> list[Checked]:
    del client_runs  # requested so that the client has run before its calls are read
    calls = recorded(rehearsal, stopped_job_calls)
    return [*calls, *resubmissions(rehearsal, calls), *service_side(rehearsal)]


# -- the proof --------------------------------------------------------------------------------


def test_every_call_is_allowed_by_the_role_that_makes_it(all_calls, policies):
    denied = []
    for call in all_calls:
        assert call.role_arn in policies, f"{call.who} runs as {call.role_arn}, not an app role"
        decision = evaluate(policies[call.role_arn], call.request)
        if not decision.allowed:
            denied.append(f"{call.who} ({call.source}): {decision.reason}")
    assert not denied, "\n".join(denied)
    assert len(all_calls) > 100


def test_every_role_of_the_app_makes_a_checked_call(all_calls, policies):
    """A role nobody exercises here could hold anything: each one must be covered."""
    exercised = {call.role_arn for call in all_calls}
    assert set(policies) - exercised == set()


# What our code names its boto3 clients (`self._s3`, `client`, `self._runtime`, ...).
CLIENT_NAME = re.compile(r"s3|client|runtime|sagemaker", re.IGNORECASE)


def call_sites(paths: list[Path]) -> set[str]:
    """Every boto3 client method our code calls, as API operation names."""
    mapping = {}
    for service in ("s3", "sagemaker", "sagemaker-runtime"):
        client = boto3.client(service, region_name=REGION, **_fake_keys())
        mapping.update(client.meta.method_to_api_mapping)
    found = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in mapping
                and CLIENT_NAME.search(ast.unparse(node.func.value))
            ):
                found.add(mapping[node.func.attr])
    return found


def _fake_keys() -> dict[str, str]:
    return {
        "aws_access_key_id": FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    }


@pytest.mark.parametrize("who", CALL_SITES)
def test_every_aws_call_in_our_code_was_made_and_checked(who, rehearsal, all_calls):
    """Those only an asynchronous endpoint's client makes are checked in
    `test_iam_proof_async`, which asserts that it made them."""
    from .test_iam_proof_async import PROVEN_BY_ASYNC

    sites = call_sites(CALL_SITES[who])
    assert sites, f"no AWS call found in {who}"
    checked = {call.source for call in all_calls} | PROVEN_BY_ASYNC
    assert sites - checked == set(), f"{who} calls these, but nothing here made them"


DENIED = [
    ("client", "s3:PutObject", "input", "runs/new.csv", "write into its own input"),
    ("client", "s3:GetObject", "data", "training/train.csv", "read the training data"),
    (
        "client",
        "sagemaker:InvokeEndpoint",
        None,
        "endpoint/another-endpoint",
        "call another endpoint",
    ),
    (
        "handler",
        "sagemaker:CreateTrainingJob",
        None,
        "training-job/another-app-1",
        "start another app's job",
    ),
    ("sagemaker", "s3:PutObject", "data", "training/train.csv", "overwrite the training data"),
    # A batch transform job reads the files sent for scoring, never writes among them.
    ("sagemaker", "s3:PutObject", "input", "runs/day1.csv", "write into the scoring input"),
    (
        "client",
        "sagemaker:CreateTransformJob",
        None,
        "transform-job/another-app-batch-1",
        "start another app's transform job",
    ),
    ("framework", "lambda:InvokeFunction", None, "function:custom-sm-client", "invoke the client"),
]


@pytest.mark.parametrize(
    ("who", "action", "bucket", "resource", "why"), DENIED, ids=[d[4] for d in DENIED]
)
def test_negative_controls_are_denied(rehearsal, policies, who, action, bucket, resource, why):
    roles = {
        "client": function(rehearsal, "lambda_function.lambda_handler").role_arn,
        "handler": function(rehearsal, "index.on_event").role_arn,
        "framework": function(rehearsal, "framework.onEvent").role_arn,
        "sagemaker": training_jobs(rehearsal)[0]["RoleArn"],
    }
    buckets = {
        "input": outputs(rehearsal, "storage")["InputBucketName"],
        "data": outputs(rehearsal, "storage")["DataBucketName"],
    }
    if bucket:
        arn = f"arn:aws:s3:::{buckets[bucket]}/{resource}"
    elif action.startswith("lambda:"):
        arn = PLACE.arn("lambda", resource)
    else:
        arn = PLACE.arn("sagemaker", resource)
    decision = evaluate(policies[roles[who]], Request(action, arn))
    assert not decision.allowed, f"the {who} role may {why}: {decision.reason}"


def test_the_training_role_passes_only_to_sagemaker(rehearsal, policies):
    handler_role = function(rehearsal, "index.on_event").role_arn
    sagemaker_role = training_jobs(rehearsal)[0]["RoleArn"]
    to = {"iam:PassedToService": "lambda.amazonaws.com"}
    decision = evaluate(policies[handler_role], Request("iam:PassRole", sagemaker_role, to))
    assert not decision.allowed, decision.reason


def test_cdks_handlers_calls_were_recorded_too(rehearsal, all_calls):
    """CDK's dataset upload (through the AWS CLI) and notification handlers run with roles of
    ours: their calls must have been recorded and checked like our own code's."""
    by_function = {call.who for call in all_calls if call.source != "its own logs"}
    for prefix in ("CustomCDKBucketDeployment", "BucketNotificationsHandler"):
        assert any(who.startswith(prefix) for who in by_function), prefix
