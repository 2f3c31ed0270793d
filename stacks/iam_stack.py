"""The SageMaker execution role and the client Lambda's role, least privilege."""

from __future__ import annotations

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_iam as iam
from constructs import Construct

from constructs_lib.nag import acknowledge_wildcard_resource
from constructs_lib.s3_location import S3Location
from stacks.client_stack import ClientNames


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


class IamStack(Stack):
    """Roles are granted exactly the locations, repositories, queue and endpoint given.

    Owners name them (the storage stack its locations, the client stack its function and
    queue, the config the endpoint), so this stack scopes the roles without depending on
    the stacks that use them. A location that is None is one the app does not use.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        channels: list[S3Location],
        training_output: S3Location,
        checkpoints: S3Location | None,
        data_capture: S3Location | None,
        async_inference: tuple[S3Location, S3Location] | None,
        batch_transform: S3Location | None,
        client_input: S3Location,
        client_output: S3Location,
        client_names: ClientNames,
        repositories: list[ecr.IRepository],
        endpoint_name: str,
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        # An asynchronous endpoint and a batch transform job read each input object
        # themselves and write their results; a job also reads its manifest.
        async_outputs = list(async_inference or ())
        job_io = [batch_transform] if batch_transform else []
        inputs = [client_input] if async_inference or batch_transform else []
        self.sagemaker_role = self._sagemaker_role(
            [*channels, training_output, *filter(None, [checkpoints]), *inputs, *job_io],
            [training_output, *filter(None, [checkpoints, data_capture]), *async_outputs, *job_io],
            repositories,
            endpoint_name,
            transform_jobs=batch_transform is not None,
        )
        invoke = "sagemaker:InvokeEndpointAsync" if async_inference else "sagemaker:InvokeEndpoint"
        self.client_role = self._client_role(
            "ClientRole",
            "The client Lambda: reads inference input, writes output.",
            client_names.function,
            client_names,
            client_input,
            client_output,
            self._endpoint_arn(endpoint_name),
            invoke,
        )
        # Set when the endpoint is asynchronous: the role of the client's completion handler.
        self.completion_role: iam.Role | None = None
        if async_inference:
            self.completion_role = self._client_role(
                "CompletionRole",
                "The client's completion handler: publishes asynchronous results.",
                client_names.completions,
                client_names,
                client_input,
                client_output,
                self._endpoint_arn(endpoint_name),
                invoke,
            )
            allow(
                self.completion_role,
                ["s3:GetObject"],
                [location.objects_arn for location in async_outputs],
                why_wildcards="SageMaker names each result after its inference id.",
            )
        # Set when big files go to batch transform: the role of the jobs' state-change handler.
        self.transform_role: iam.Role | None = None
        if batch_transform:
            self._allow_transforms(self.client_role, client_names, batch_transform, endpoint_name)
            self.transform_role = self._client_role(
                "TransformRole",
                "The client's batch transform handler: publishes each job's result.",
                client_names.transforms,
                client_names,
                client_input,
                client_output,
                self._endpoint_arn(endpoint_name),
                None,
            )
            self._allow_transforms(
                self.transform_role, client_names, batch_transform, endpoint_name
            )
            allow(
                self.transform_role,
                ["sagemaker:DescribeTransformJob"],
                [self._transform_jobs_arn(client_names)],
                why_wildcards="Every job is named <prefix>-batch-<digest>-<attempt>.",
            )
            allow(
                self.transform_role,
                ["s3:GetObject"],
                [batch_transform.objects_arn],
                why_wildcards="Each job's request and output lie under its own prefix.",
            )
            allow(
                self.transform_role,
                ["s3:ListBucket"],
                [batch_transform.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{batch_transform.prefix}*"]}},
            )

    def _sagemaker_role(
        self,
        readable: list[S3Location],
        writable: list[S3Location],
        repositories: list[ecr.IRepository],
        endpoint_name: str,
        *,
        transform_jobs: bool,
    ) -> iam.Role:
        """Read the dataset, write the model, pull the images, write logs and metrics."""
        role = iam.Role(
            self,
            "SageMakerExecutionRole",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description="Runs this app's training jobs and serves its endpoint.",
        )
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
                    *(["/aws/sagemaker/TransformJobs"] if transform_jobs else []),
                )
                # CreateLogGroup is authorised on the group itself, the others on its streams.
                for arn in (self._log_group_arn(group, streams=False), self._log_group_arn(group))
            ],
            why_wildcards="SageMaker names the log streams in its log groups at run time.",
        )
        return role

    def _allow_transforms(
        self, role: iam.Role, names: ClientNames, staging: S3Location, endpoint_name: str
    ) -> None:
        """Stage a job's manifest and request, and start it on the model the endpoint serves."""
        allow(
            role,
            ["s3:PutObject"],
            [staging.objects_arn],
            why_wildcards="Each job's manifest and request lie under its own prefix.",
        )
        allow(
            role,
            ["sagemaker:CreateTransformJob"],
            [self._transform_jobs_arn(names)],
            why_wildcards="Every job is named <prefix>-batch-<digest>-<attempt>.",
        )
        allow(role, ["sagemaker:DescribeEndpoint"], [self._endpoint_arn(endpoint_name)])
        allow(
            role,
            ["sagemaker:DescribeEndpointConfig"],
            [self.format_arn(service="sagemaker", resource="endpoint-config", resource_name="*")],
            why_wildcards="CloudFormation names the endpoint config, anew with every model; "
            "read-only, to find the model the endpoint serves.",
        )

    def _transform_jobs_arn(self, names: ClientNames) -> str:
        return self.format_arn(
            service="sagemaker", resource="transform-job", resource_name=f"{names.transform_jobs}*"
        )

    def _endpoint_arn(self, endpoint_name: str) -> str:
        # SageMaker writes endpoint names in ARNs in lower case.
        return self.format_arn(
            service="sagemaker", resource="endpoint", resource_name=endpoint_name.lower()
        )

    def _client_role(
        self,
        construct_id: str,
        description: str,
        function_name: str,
        names: ClientNames,
        input_bucket: S3Location,
        output_bucket: S3Location,
        endpoint_arn: str,
        invoke: str | None,
    ) -> iam.Role:
        """Read a new input object, write its result, call the one endpoint (``invoke``, if
        the role calls it), log, fail over."""
        role = iam.Role(
            self,
            construct_id,
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=description,
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
        if invoke:
            allow(role, [invoke], [endpoint_arn])
        allow(
            role,
            ["sqs:SendMessage"],
            [self.format_arn(service="sqs", resource=names.failure_queue)],
        )
        allow(
            role,
            ["logs:CreateLogStream", "logs:PutLogEvents"],
            [self._log_group_arn(f"/aws/lambda/{function_name}")],
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
