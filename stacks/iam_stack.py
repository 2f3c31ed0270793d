"""The SageMaker execution role and the client Lambda's role, least privilege."""

from __future__ import annotations

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_iam as iam
from constructs import Construct

from constructs_lib.nag import acknowledge_wildcard_resource
from constructs_lib.s3_location import S3Location

TRAINING_OUTPUT_PREFIX = "training-output/"
CHECKPOINT_PREFIX = "checkpoints/"
DATA_CAPTURE_PREFIX = "data-capture/"


def allow(
    role: iam.Role,
    actions: list[str],
    resources: list[str],
    *,
    why_wildcards: str | None = None,
    conditions: dict | None = None,
) -> None:
    """Adds one statement; every resource with a wildcard needs a reason, which becomes
    the cdk-nag acknowledgment of exactly that finding on this role.
    """
    role.add_to_policy(
        iam.PolicyStatement(actions=actions, resources=resources, conditions=conditions)
    )
    for resource in resources:
        if "*" in resource:
            if why_wildcards is None:
                raise ValueError(f"{role.node.path}: {resource} has a wildcard but no reason")
            acknowledge_wildcard_resource(role, resource, why_wildcards)


def client_function_name(name_prefix: str) -> str:
    return f"{name_prefix}-client"


def client_failure_queue_name(name_prefix: str) -> str:
    return f"{name_prefix}-client-failures"


class IamStack(Stack):
    """Roles are granted exact buckets, prefixes, repositories, queue and endpoint.

    The client's function name, queue name and endpoint name are fixed by config, so this
    stack can scope the client's role to them without depending on the client stack.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        name_prefix: str,
        channels: list[S3Location],
        models: S3Location,
        input_bucket: S3Location,
        output_bucket: S3Location,
        repositories: list[ecr.IRepository],
        endpoint_name: str,
        use_spot: bool,
        data_capture: bool,
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.training_output = S3Location(models.bucket_name, TRAINING_OUTPUT_PREFIX)
        self.checkpoints = S3Location(models.bucket_name, CHECKPOINT_PREFIX)
        self.data_capture = S3Location(models.bucket_name, DATA_CAPTURE_PREFIX)
        self.sagemaker_role = self._sagemaker_role(
            channels, repositories, endpoint_name, use_spot, data_capture
        )
        self.client_role = self._client_role(
            name_prefix, input_bucket, output_bucket, endpoint_name
        )

    def _sagemaker_role(
        self,
        channels: list[S3Location],
        repositories: list[ecr.IRepository],
        endpoint_name: str,
        use_spot: bool,
        data_capture: bool,
    ) -> iam.Role:
        """Read the dataset, write the model, pull the images, write logs and metrics."""
        role = iam.Role(
            self,
            "SageMakerExecutionRole",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description="Runs this app's training jobs and serves its endpoint.",
        )
        readable = [*channels, self.training_output]
        writable = [self.training_output]
        if use_spot:
            readable.append(self.checkpoints)
            writable.append(self.checkpoints)
        if data_capture:
            writable.append(self.data_capture)
        prefixes = "Objects under the app's own prefixes; their keys are chosen at run time."
        self._allow_list(role, readable)
        allow(role, ["s3:GetObject"], [loc.objects_arn for loc in readable], why_wildcards=prefixes)
        allow(
            role,
            ["s3:PutObject", "s3:AbortMultipartUpload"],
            [loc.objects_arn for loc in writable],
            why_wildcards=prefixes,
        )
        allow(
            role,
            ["ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"],
            sorted({repository.repository_arn for repository in repositories}),
        )
        # These two actions support no resource-level scoping; the metric one is held to
        # SageMaker's namespaces by a condition.
        allow(
            role,
            ["ecr:GetAuthorizationToken"],
            ["*"],
            why_wildcards="ecr:GetAuthorizationToken and cloudwatch:PutMetricData accept only "
            "Resource '*'; PutMetricData is limited to /aws/sagemaker/* namespaces.",
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={"StringLike": {"cloudwatch:namespace": "/aws/sagemaker/*"}},
            )
        )
        allow(
            role,
            [
                "logs:CreateLogGroup",
                "logs:CreateLogStream",
                "logs:PutLogEvents",
                "logs:DescribeLogStreams",
            ],
            [
                arn
                for group in (
                    "/aws/sagemaker/TrainingJobs",
                    f"/aws/sagemaker/Endpoints/{endpoint_name}",
                )
                # CreateLogGroup is authorised on the group itself, the others on its streams.
                for arn in (self._log_group_arn(group, streams=False), self._log_group_arn(group))
            ],
            why_wildcards="SageMaker names the log streams in its two log groups at run time.",
        )
        return role

    def _client_role(
        self,
        name_prefix: str,
        input_bucket: S3Location,
        output_bucket: S3Location,
        endpoint_name: str,
    ) -> iam.Role:
        """Read a new input object, write its result, call the one endpoint, log, fail over."""
        role = iam.Role(
            self,
            "ClientRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="The client Lambda: reads inference input, writes output.",
        )
        any_key = "Any object uploaded for scoring, and its result under the same key."
        allow(
            role,
            ["s3:GetObject", "s3:GetObjectVersion"],
            [input_bucket.objects_arn],
            why_wildcards=any_key,
        )
        # Read back and delete its own results: the Lambda keeps one result per key
        # (`.out` or `.error.json`) and adds the record count to a multipart output.
        allow(
            role,
            ["s3:PutObject", "s3:GetObject", "s3:DeleteObject", "s3:AbortMultipartUpload"],
            [output_bucket.objects_arn],
            why_wildcards=any_key,
        )
        # Without ListBucket, S3 answers 403 instead of 404 for a missing key, and the
        # Lambda could not tell "no stale result" or "input deleted" from "access denied".
        allow(role, ["s3:ListBucket"], [input_bucket.bucket_arn, output_bucket.bucket_arn])
        # SageMaker writes endpoint names in ARNs in lower case.
        allow(
            role,
            ["sagemaker:InvokeEndpoint"],
            [
                self.format_arn(
                    service="sagemaker", resource="endpoint", resource_name=endpoint_name.lower()
                )
            ],
        )
        allow(
            role,
            ["sqs:SendMessage"],
            [self.format_arn(service="sqs", resource=client_failure_queue_name(name_prefix))],
        )
        allow(
            role,
            ["logs:CreateLogStream", "logs:PutLogEvents"],
            [self._log_group_arn(f"/aws/lambda/{client_function_name(name_prefix)}")],
            why_wildcards="Lambda names the log streams in the function's log group at run time.",
        )
        return role

    def _log_group_arn(self, name: str, *, streams: bool = True) -> str:
        """The log group (`...:log-group:NAME`) or every stream in it (`...:NAME:*`)."""
        return self.format_arn(
            service="logs",
            resource="log-group",
            resource_name=f"{name}:*" if streams else name,
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )

    def _allow_list(self, role: iam.Role, locations: list[S3Location]) -> None:
        """ListBucket only under the prefixes the role reads (SageMaker lists File-mode input)."""
        by_bucket: dict[str, list[str]] = {}
        for location in locations:
            by_bucket.setdefault(location.bucket_arn, []).append(f"{location.prefix}*")
        for bucket_arn, prefixes in by_bucket.items():
            allow(
                role,
                ["s3:ListBucket"],
                [bucket_arn],
                conditions={"StringLike": {"s3:prefix": prefixes}},
            )
