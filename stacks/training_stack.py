"""The training job that must finish before the endpoint is created."""

from __future__ import annotations

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from constructs import Construct

from constructs_lib.s3_location import S3Location
from constructs_lib.training_job import Channel, TrainingJob
from constructs_lib.training_job.settings import TrainingJobSettings


class TrainingStack(Stack):
    """Exposes `model_data_url`, which changes only when the model does, and
    `model_inputs_digest`, a synth-time value that changes with it (see ServingStack).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        name_prefix: str,
        config: TrainingJobSettings,
        role: iam.IRole,
        image_uri: str,
        channels: list[Channel],
        data_version: str,
        training_output: S3Location,
        checkpoints: S3Location,
        log_retention: logs.RetentionDays,
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        job = TrainingJob(
            self,
            "TrainingJob",
            job_name_prefix=name_prefix,
            config=config,
            role=role,
            image_uri=image_uri,
            channels=channels,
            data_version=data_version,
            output_s3_uri=training_output.uri,
            checkpoint_s3_uri=checkpoints.uri,
            log_retention=log_retention,
        )
        self.model_data_url = job.model_data_url
        self.model_inputs_digest = job.model_inputs_digest
        CfnOutput(self, "TrainingJobName", value=job.job_name)
        CfnOutput(self, "ModelDataUrl", value=job.model_data_url)
        CfnOutput(self, "FinalMetrics", value=job.final_metrics)
