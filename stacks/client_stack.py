"""The client Lambda: scores every file uploaded to the inference input bucket."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aws_cdk import Aws, CfnOutput, Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from constructs_lib.alarm_topic import notify
from constructs_lib.log_groups import stack_log_group
from constructs_lib.nag import acknowledge
from constructs_lib.singleton_logs import route_singleton_logs
from lambda_fn.client_config import (
    BATCH_THRESHOLD_VARIABLE,
    ENDPOINT_VARIABLE,
    INPUT_BUCKET_VARIABLE,
    MODES,
    OUTPUT_BUCKET_VARIABLE,
    REQUEST_CONCURRENCY,
    SERVING_MODE_VARIABLE,
    TRANSFORM_INSTANCE_COUNT,
    TRANSFORM_INSTANCE_TYPE_VARIABLE,
    TRANSFORM_JOB_PREFIX_VARIABLE,
    TRANSFORM_MAX_PAYLOAD_MB,
    TRANSFORM_STAGING_VARIABLE,
    transform_job_names,
)
from lambda_fn.file_types import MEDIA_TYPES
from stacks.config import ClientConfig

LAMBDA_DIR = Path(__file__).resolve().parent.parent / "lambda_fn"
LAMBDA_EXCLUDE = ["**/__pycache__", "**/*.pyc", "**/.pytest_cache", "**/.venv", "tests"]
RUNTIME = lambda_.Runtime.PYTHON_3_14


@dataclass(frozen=True)
class Completions:
    """What the completion handler of an asynchronous endpoint needs from the other stacks."""

    role_arn: str
    success_topic_arn: str
    error_topic_arn: str


@dataclass(frozen=True)
class Transforms:
    """What the handler of batch transform jobs needs from the other stacks."""

    role_arn: str
    # s3://<models bucket>/batch-transform/: each job's manifest, request and output.
    staging_uri: str


@dataclass(frozen=True)
class ClientNames:
    """The client's fixed names, known before the stack exists, so the IAM stack can scope
    the client's role to them without depending on this stack."""

    function: str
    failure_queue: str
    # The completion handler of an asynchronous endpoint's results.
    completions: str
    # The handler of batch transform jobs' state changes, and what starts its jobs' names.
    transforms: str
    transform_job_prefix: str

    @classmethod
    def for_prefix(cls, name_prefix: str) -> ClientNames:
        return cls(
            f"{name_prefix}-client",
            f"{name_prefix}-client-failures",
            f"{name_prefix}-client-completions",
            f"{name_prefix}-client-transforms",
            name_prefix,
        )

    @property
    def transform_jobs(self) -> str:
        """The start of every batch transform job's name."""
        return transform_job_names(self.transform_job_prefix)


class ClientStack(Stack):
    """Holds the S3 notification itself: the input bucket is imported by name, so the storage
    stack never depends on this one (no cycle).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        names: ClientNames,
        config: ClientConfig,
        role_arn: str,
        input_bucket_name: str,
        output_bucket_name: str,
        endpoint_name: str,
        serving_mode: str,
        alarm_topic_arn: str,
        log_retention: logs.RetentionDays,
        completions: Completions | None = None,
        transforms: Transforms | None = None,
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        failures = sqs.Queue(
            self,
            "FailedEvents",
            queue_name=names.failure_queue,
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        acknowledge(
            failures,
            "SQS3",
            "This queue is itself the Lambda's on-failure destination (the last stop).",
        )
        environment = {
            OUTPUT_BUCKET_VARIABLE: output_bucket_name,
            ENDPOINT_VARIABLE: endpoint_name,
            SERVING_MODE_VARIABLE: serving_mode,
            MODES[serving_mode].max_request_bytes.variable: str(config.max_request_bytes),
            REQUEST_CONCURRENCY.variable: str(config.request_concurrency),
        }
        if transforms is not None:
            batch = config.batch_transform
            environment.update(
                {
                    BATCH_THRESHOLD_VARIABLE: str(batch.threshold_bytes),
                    TRANSFORM_STAGING_VARIABLE: transforms.staging_uri,
                    TRANSFORM_JOB_PREFIX_VARIABLE: names.transform_job_prefix,
                    TRANSFORM_INSTANCE_TYPE_VARIABLE: batch.instance_type,
                    TRANSFORM_INSTANCE_COUNT.variable: str(batch.instance_count),
                    TRANSFORM_MAX_PAYLOAD_MB.variable: str(batch.max_payload_mb),
                }
            )

        def client_function(
            construct_id: str,
            name: str,
            handler: str,
            role: str,
            extra: dict[str, str],
            logs_id: str,
        ) -> lambda_.Function:
            """A function of the client's code; retries and failures as the client's.

            `logs_id` is its named log group's logical id: a changed id would replace the
            group, and CloudFormation cannot create a second group of the same name.
            """
            return lambda_.Function(
                self,
                construct_id,
                function_name=name,
                runtime=RUNTIME,
                handler=handler,
                code=lambda_.Code.from_asset(str(LAMBDA_DIR), exclude=LAMBDA_EXCLUDE),
                # Imported immutable: its policy lives in the IAM stack, scoped to this function.
                role=iam.Role.from_role_arn(self, f"{construct_id}Role", role, mutable=False),
                memory_size=config.memory_mb,
                timeout=Duration.seconds(config.timeout_seconds),
                reserved_concurrent_executions=config.reserved_concurrency,
                retry_attempts=config.retry_attempts,
                max_event_age=Duration.seconds(config.max_event_age_seconds),
                on_failure=destinations.SqsDestination(failures),
                environment={**environment, **extra},
                log_group=stack_log_group(
                    self, logs_id, retention=log_retention, name=f"/aws/lambda/{name}"
                ),
            )

        function = client_function(
            "Function", names.function, "lambda_function.lambda_handler", role_arn, {}, "Logs"
        )
        if completions is not None:
            completion = client_function(
                "Completions",
                names.completions,
                "async_completion.handler",
                completions.role_arn,
                {INPUT_BUCKET_VARIABLE: input_bucket_name},
                "CompletionsLogs",
            )
            for topic_id, topic_arn in (
                ("AsyncSuccessTopic", completions.success_topic_arn),
                ("AsyncErrorTopic", completions.error_topic_arn),
            ):
                sns.Topic.from_topic_arn(self, topic_id, topic_arn).add_subscription(
                    subscriptions.LambdaSubscription(completion)
                )
        if transforms is not None:
            self._transform_handler(names, transforms, client_function, failures, config)
        notification_logs = stack_log_group(
            self, "NotificationsHandlerLogs", retention=log_retention
        )
        input_bucket = s3.Bucket.from_bucket_attributes(
            self,
            "InputBucket",
            bucket_name=input_bucket_name,
            notifications_handler_role=self._notifications_role(
                input_bucket_name, notification_logs
            ),
        )
        # S3's suffix filters are case-sensitive; the client reads any case, so both
        # common spellings (`.csv`, `.CSV`) fire it.
        for suffix in (*MEDIA_TYPES, *(s.upper() for s in MEDIA_TYPES)):
            function.add_event_source(
                event_sources.S3EventSourceV2(
                    input_bucket,
                    events=[s3.EventType.OBJECT_CREATED],
                    filters=[s3.NotificationKeyFilter(suffix=suffix)],
                )
            )
        route_singleton_logs(self, "BucketNotificationsHandler", notification_logs)
        topic = sns.Topic.from_topic_arn(self, "AlarmTopic", alarm_topic_arn)
        for alarm in self._alarms(config, function, failures):
            notify(alarm, topic)
        CfnOutput(self, "InputBucketName", value=input_bucket_name)
        CfnOutput(self, "OutputBucketName", value=output_bucket_name)
        CfnOutput(self, "EndpointName", value=endpoint_name)
        CfnOutput(
            self,
            "ScoreFileCommand",
            description="Scores the bundled sample file and prints the predictions.",
            value=(
                f"aws s3 cp data/inference/inference.csv s3://{input_bucket_name}/inference.csv"
                f" && sleep 30 && aws s3 cp s3://{output_bucket_name}/inference.csv.out -"
            ),
        )

    def _transform_handler(
        self,
        names: ClientNames,
        transforms: Transforms,
        client_function: Callable[..., lambda_.Function],
        failures: sqs.Queue,
        config: ClientConfig,
    ) -> None:
        """The handler of this app's batch transform jobs, fired when one ends."""
        handler = client_function(
            "Transforms",
            names.transforms,
            "transform_completion.handler",
            transforms.role_arn,
            {},
            "TransformsLogs",
        )
        events.Rule(
            self,
            "TransformJobEnded",
            description="Publishes a batch transform job's result when the job ends.",
            event_pattern=events.EventPattern(
                source=["aws.sagemaker"],
                detail_type=["SageMaker Transform Job State Change"],
                detail={
                    "TransformJobName": [{"prefix": names.transform_jobs}],
                    "TransformJobStatus": ["Completed", "Failed", "Stopped"],
                },
            ),
        ).add_target(
            targets.LambdaFunction(
                handler,
                # Events EventBridge could not deliver land with the handler's own failures.
                dead_letter_queue=failures,
                retry_attempts=config.retry_attempts,
                max_event_age=Duration.seconds(config.max_event_age_seconds),
            )
        )

    def _notifications_role(self, bucket_name: str, log_group: logs.ILogGroup) -> iam.IRole:
        """CDK's notification handler may configure this one bucket's notifications and
        write its own log group, nothing else.
        """
        role = iam.Role(
            self,
            "NotificationsHandlerRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="Puts the input bucket's event notification for the client Lambda.",
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:PutBucketNotification", "s3:GetBucketNotification"],
                resources=[f"arn:{Aws.PARTITION}:s3:::{bucket_name}"],
            )
        )
        log_group.grant_write(role)
        return role.without_policy_updates()

    def _alarms(
        self, config: ClientConfig, function: lambda_.Function, queue: sqs.Queue
    ) -> list[cloudwatch.Alarm]:
        errors = cloudwatch.Alarm(
            self,
            "ErrorsAlarm",
            metric=function.metric_errors(period=Duration.minutes(5), statistic="Sum"),
            threshold=config.alarm_errors_threshold,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description="The client Lambda raised errors.",
        )
        failed_events = cloudwatch.Alarm(
            self,
            "FailedEventsAlarm",
            metric=queue.metric_approximate_number_of_messages_visible(
                period=Duration.minutes(5), statistic="Maximum"
            ),
            threshold=config.alarm_dead_letters_threshold,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description="Events the client could not score after its retries.",
        )
        return [errors, failed_events]
