"""A SageMaker training job that CloudFormation starts, waits for, and names by its inputs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import cast

from aws_cdk import CustomResource, Duration, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import custom_resources as cr
from constructs import Construct

from constructs_lib.log_groups import stack_log_group
from constructs_lib.nag import acknowledge, acknowledge_wildcard_resource
from constructs_lib.s3_location import S3Location
from constructs_lib.training_job.handler.index import content_hash
from constructs_lib.training_job.settings import PROVIDER_MARGIN_SECONDS, TrainingJobSettings

HANDLER_DIR = Path(__file__).parent / "handler"
HANDLER_RUNTIME = lambda_.Runtime.PYTHON_3_14
POLL_INTERVAL = Duration.seconds(30)


@dataclass(frozen=True)
class Channel:
    """One input channel: the name the container sees and the S3 prefix it reads."""

    name: str
    location: S3Location


class TrainingJob(Construct):
    """Starts a training job on create/changed update and makes CloudFormation wait for it.

    Attributes: `model_data_url`, `job_name`, `final_metrics` (JSON of the last metric values),
    and `model_inputs_digest`: a synth-time digest of everything that shapes the model. A weak
    reference to `model_data_url` is read only when its consumer's template changes, so the
    consumer must carry this digest in its template to pick up each new model.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        job_name_prefix: str,
        config: TrainingJobSettings,
        role: iam.IRole,
        image_uri: str,
        channels: list[Channel],
        data_version: str,
        output_s3_uri: str,
        checkpoint_s3_uri: str,
        log_retention: logs.RetentionDays,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        job_arns = stack.format_arn(
            service="sagemaker", resource="training-job", resource_name=f"{job_name_prefix}-*"
        )
        handler_role = iam.Role(
            self,
            "HandlerRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="Starts, polls and stops this app's SageMaker training jobs.",
        )
        handler_role.add_to_policy(
            iam.PolicyStatement(
                actions=[
                    "sagemaker:CreateTrainingJob",
                    "sagemaker:DescribeTrainingJob",
                    "sagemaker:StopTrainingJob",
                ],
                resources=[job_arns],
            )
        )
        handler_role.add_to_policy(
            iam.PolicyStatement(
                actions=["iam:PassRole"],
                resources=[role.role_arn],
                conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
            )
        )
        acknowledge_wildcard_resource(
            handler_role,
            job_arns,
            "Job names are content hashes computed at deploy time; the prefix is this app's.",
        )
        provider_logs = stack_log_group(self, "ProviderLogs", retention=log_retention)
        on_event = self._handler("OnEvent", "index.on_event", handler_role, log_retention)
        is_complete = self._handler("IsComplete", "index.is_complete", handler_role, log_retention)
        # The framework's roles get what CDK's Provider grants its own (invoke the two
        # handlers, and GetFunction, which it calls to wait for a handler that is not active
        # yet after a failed invoke), plus writes to its log group instead of the AWS managed
        # basic-execution policy; the on-event role also starts the waiter, below.
        handlers = [on_event, is_complete]
        framework_roles = [self._framework_role(name) for name in ("OnEvent", "Waiter")]
        for role_ in framework_roles:
            for handler in handlers:
                handler.grant_invoke(role_)
            role_.add_to_policy(
                iam.PolicyStatement(
                    actions=["lambda:GetFunction"],
                    resources=[handler.function_arn for handler in handlers],
                )
            )
            for handler in handlers:
                acknowledge_wildcard_resource(
                    role_,
                    f"{handler.function_arn}:*",
                    "CDK's Provider grants its framework the invocation of every version of "
                    "its two handlers; nothing else.",
                )
            provider_logs.grant_write(role_)
        provider = cr.Provider(
            self,
            "Provider",
            on_event_handler=on_event,
            is_complete_handler=is_complete,
            query_interval=POLL_INTERVAL,
            total_timeout=Duration.seconds(config.wait_budget_seconds),
            log_group=provider_logs,
            framework_on_event_role=framework_roles[0].without_policy_updates(),
            framework_complete_and_timeout_role=framework_roles[1].without_policy_updates(),
            disable_waiter_state_machine_logging=False,
            waiter_state_machine_log_options=cr.LogOptions(
                destination=stack_log_group(
                    self,
                    "WaiterLogs",
                    retention=log_retention,
                    # Step Functions' log delivery adds a resource policy per log group unless
                    # the group is under this prefix; busy accounts have no room left for one.
                    name=f"/aws/vendedlogs/states/{stack.stack_name}-{construct_id}-waiter",
                ),
                level=sfn.LogLevel.ALL,
            ),
        )
        waiter = provider.node.find_child("waiter-state-machine")
        framework_roles[0].add_to_policy(
            iam.PolicyStatement(
                actions=["states:StartExecution"],
                resources=[cast(sfn.CfnStateMachine, waiter.node.default_child).ref],
            )
        )
        acknowledge(
            waiter,
            "SF2",
            "The waiter only polls DescribeTrainingJob; its steps are in the provider's logs.",
        )
        acknowledge(
            waiter,
            "IAM5[Resource::*]",
            "Step Functions log delivery (logs:CreateLogDelivery etc.) accepts only Resource '*'.",
        )
        for framework_function in ("framework-isComplete", "framework-onTimeout"):
            function = cast(lambda_.IFunction, provider.node.find_child(framework_function))
            acknowledge_wildcard_resource(
                waiter,
                f"{function.function_arn}:*",
                "CDK's provider framework grants its waiter all versions of its own two "
                "framework functions; nothing else.",
            )
        properties: dict[str, object] = {
            "JobNamePrefix": job_name_prefix,
            "RoleArn": role.role_arn,
            "TrainingImage": image_uri,
            "HyperParameters": config.hyperparameters,
            "MetricDefinitions": config.metric_definitions,
            "Channels": [{"ChannelName": c.name, "S3Uri": c.location.uri} for c in channels],
            "DataVersion": data_version,
            "OutputS3Uri": output_s3_uri,
            "InstanceType": config.instance_type,
            "InstanceCount": str(config.instance_count),
            "VolumeSizeInGB": str(config.volume_size_gb),
            "MaxRuntimeInSeconds": str(config.max_run_seconds),
            "UseSpot": str(config.use_spot).lower(),
        }
        if config.use_spot:
            properties["MaxWaitTimeInSeconds"] = str(config.max_wait_seconds)
            properties["CheckpointS3Uri"] = checkpoint_s3_uri
        self.model_inputs_digest: str = content_hash(stack.resolve(properties))
        resource = CustomResource(
            self,
            "Resource",
            service_token=provider.service_token,
            resource_type="Custom::SageMakerTrainingJob",
            properties=properties,
            service_timeout=Duration.seconds(config.wait_budget_seconds + PROVIDER_MARGIN_SECONDS),
        )
        self.model_data_url: str = resource.get_att_string("ModelDataUrl")
        self.job_name: str = resource.get_att_string("TrainingJobName")
        self.final_metrics: str = resource.get_att_string("FinalMetrics")

    def _framework_role(self, name: str) -> iam.Role:
        return iam.Role(
            self,
            f"Framework{name}Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="CDK provider framework for the training-job custom resource.",
        )

    def _handler(
        self, construct_id: str, entry: str, role: iam.Role, retention: logs.RetentionDays
    ) -> lambda_.Function:
        """A handler that logs to a group of its own; a role passed to a Function gets no
        basic-execution policy from CDK, so the group's write grant is added here.
        """
        log_group = stack_log_group(self, f"{construct_id}Logs", retention=retention)
        log_group.grant_write(role)
        return lambda_.Function(
            self,
            construct_id,
            runtime=HANDLER_RUNTIME,
            handler=entry,
            code=lambda_.Code.from_asset(
                str(HANDLER_DIR), exclude=["__pycache__", "*.pyc", ".pytest_cache"]
            ),
            role=role,
            timeout=Duration.minutes(1),
            log_group=log_group,
        )
