"""A SageMaker training job that a deploy starts, waits up to 12 hours for, and names by
its inputs.

A custom resource starts (or adopts) the job and returns at once. An EventBridge rule on
SageMaker's "Training Job State Change" event runs a small Lambda that signals a
CloudFormation wait condition when the job ends; the wait condition holds the deploy until
then (up to 12 hours, where a custom resource may take one), and a second custom resource
then reads the job's model location and metrics. Wait conditions cannot be updated, so the
handle and the condition are named by a digest of what they wait for: an unchanged redeploy
has nothing to wait for, a changed one gets a fresh pair. A signal sent to a handle before its
condition exists still counts (CloudFormation reads the signals the handle holds, which is
why it warns never to reuse one), so a job that ends before the condition is created
releases it all the same.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aws_cdk import (
    CfnWaitCondition,
    CfnWaitConditionHandle,
    CustomResource,
    Duration,
    Stack,
)
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import custom_resources as cr
from constructs import Construct

from constructs_lib.log_groups import stack_log_group
from constructs_lib.nag import acknowledge_wildcard_resource
from constructs_lib.s3_location import S3Location
from constructs_lib.training_job.handler.index import ENDED, MAX_ATTEMPTS, RESULT_RESOURCE_TYPE
from constructs_lib.training_job.settings import TrainingJobSettings

HANDLER_DIR = Path(__file__).parent / "handler"
HANDLER_RUNTIME = lambda_.Runtime.PYTHON_3_14
# Starting a job takes one or two API calls; the waiting is the wait condition's.
START_TIMEOUT = Duration.minutes(5)
# Properties that decide what model comes out; everything else (role, spot, timeouts) does not.
MODEL_SHAPING_PROPERTIES = (
    "TrainingImage",
    "HyperParameters",
    "Channels",
    "DataVersion",
    "OutputS3Uri",
    "InstanceType",
    "InstanceCount",
    "VolumeSizeInGB",
)
HASH_LENGTH = 16
MAX_JOB_NAME_LENGTH = 63


def content_hash(properties: dict[str, Any]) -> str:
    """A stable digest of the model-shaping properties, as they render in the template."""
    shaping = {key: properties.get(key) for key in MODEL_SHAPING_PROPERTIES}
    canonical = json.dumps(shaping, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:HASH_LENGTH]


def job_name_stem(prefix: str, digest: str) -> str:
    """`<prefix>-<digest>`, short enough for `-<attempt>` within SageMaker's 63 characters."""
    room = MAX_JOB_NAME_LENGTH - len(f"-{digest}-{MAX_ATTEMPTS}")
    return f"{prefix[:room].rstrip('-')}-{digest}"


@dataclass(frozen=True)
class Channel:
    """One input channel: the name the container sees and the S3 prefix it reads."""

    name: str
    location: S3Location


class TrainingJob(Construct):
    """Starts a training job on create/changed update and makes CloudFormation wait for it.

    Attributes: `model_data_url`, `job_name`, `final_metrics` (JSON of the last metric values),
    and `model_inputs_digest`: a synth-time
    digest of everything that shapes the model. A weak reference to `model_data_url` is read
    only when its consumer's template changes, so the consumer must carry this digest in its
    template to pick up each new model.
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
        properties: dict[str, object] = {
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
        stem = job_name_stem(job_name_prefix, self.model_inputs_digest)
        timeout = str(config.wait_budget_seconds)
        # What the wait condition pair waits for; a new value needs a new pair.
        wait_id = hashlib.sha256(f"{stem}/{timeout}".encode()).hexdigest()[:8]
        handle = CfnWaitConditionHandle(self, f"Handle{wait_id}")

        job_arns = stack.format_arn(
            service="sagemaker", resource="training-job", resource_name=f"{job_name_prefix}-*"
        )
        starter = self._handler(
            "OnEvent",
            "index.on_event",
            "Starts, adopts and stops this app's SageMaker training jobs.",
            [
                "sagemaker:CreateTrainingJob",
                "sagemaker:DescribeTrainingJob",
                "sagemaker:StopTrainingJob",
            ],
            job_arns,
            log_retention,
        )
        starter.add_to_role_policy(
            iam.PolicyStatement(
                actions=["iam:PassRole"],
                resources=[role.role_arn],
                conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
            )
        )
        signaller = self._handler(
            "StateChange",
            "index.on_state_change",
            "Signals the deploy's wait condition when this app's training job ends.",
            ["sagemaker:DescribeTrainingJob"],
            job_arns,
            log_retention,
        )
        rule = events.Rule(
            self,
            "JobEnded",
            description="Releases the deploy's wait for the training job when the job ends.",
            event_pattern=events.EventPattern(
                source=["aws.sagemaker"],
                detail_type=["SageMaker Training Job State Change"],
                detail={
                    "TrainingJobName": [{"prefix": f"{stem}-"}],
                    "TrainingJobStatus": list(ENDED),
                },
            ),
        )
        rule.add_target(
            targets.LambdaFunction(
                signaller,
                event=events.RuleTargetInput.from_object(
                    {
                        "TrainingJobName": events.EventField.from_path("$.detail.TrainingJobName"),
                        "WaitHandle": handle.ref,
                    }
                ),
            )
        )

        provider_logs = stack_log_group(self, "ProviderLogs", retention=log_retention)
        # The framework's role gets what CDK's Provider grants its own (invoke the handler,
        # and GetFunction, which it calls to wait for a handler that is not active yet after
        # a failed invoke), plus writes to its log group instead of the AWS managed
        # basic-execution policy.
        framework_role = iam.Role(
            self,
            "FrameworkOnEventRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="CDK provider framework for the training-job custom resource.",
        )
        starter.grant_invoke(framework_role)
        framework_role.add_to_policy(
            iam.PolicyStatement(actions=["lambda:GetFunction"], resources=[starter.function_arn])
        )
        acknowledge_wildcard_resource(
            framework_role,
            f"{starter.function_arn}:*",
            "CDK's Provider grants its framework the invocation of every version of its "
            "handler; nothing else.",
        )
        provider_logs.grant_write(framework_role)
        provider = cr.Provider(
            self,
            "Provider",
            on_event_handler=starter,
            log_group=provider_logs,
            framework_on_event_role=framework_role.without_policy_updates(),
        )
        resource = CustomResource(
            self,
            "Resource",
            service_token=provider.service_token,
            resource_type="Custom::SageMakerTrainingJob",
            properties={**properties, "JobNameStem": stem, "WaitHandle": handle.ref},
            service_timeout=START_TIMEOUT,
        )
        # The rule and its permission to invoke must exist before the job can end.
        resource.node.add_dependency(rule, signaller)
        wait = CfnWaitCondition(self, f"Wait{wait_id}", handle=handle.ref, timeout=timeout, count=1)
        wait.node.add_dependency(resource)
        self.job_name: str = resource.get_att_string("TrainingJobName")
        result = CustomResource(
            self,
            "Result",
            service_token=provider.service_token,
            resource_type=RESULT_RESOURCE_TYPE,
            properties={"TrainingJobName": self.job_name},
            service_timeout=START_TIMEOUT,
        )
        result.node.add_dependency(wait)
        self.model_data_url: str = result.get_att_string("ModelDataUrl")
        self.final_metrics: str = result.get_att_string("FinalMetrics")

    def _handler(
        self,
        construct_id: str,
        entry: str,
        description: str,
        actions: list[str],
        job_arns: str,
        retention: logs.RetentionDays,
    ) -> lambda_.Function:
        """A handler with a role of its own, allowed `actions` on this app's training jobs,
        and a log group of its own (a role passed to a Function gets no basic-execution
        policy from CDK, so the group's write grant is added here).
        """
        role = iam.Role(
            self,
            f"{construct_id}Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=description,
        )
        role.add_to_policy(iam.PolicyStatement(actions=actions, resources=[job_arns]))
        acknowledge_wildcard_resource(
            role,
            job_arns,
            "Job names are digests of the model's inputs with an attempt number; the prefix "
            "is this app's.",
        )
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
