"""Buckets for data, models, inference input and output, and their access logs."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import CfnOutput, Duration, RemovalPolicy, Stack
from aws_cdk import aws_logs as logs
from constructs import Construct

from constructs_lib.bundled_dataset import BundledDataset
from constructs_lib.log_groups import stack_log_group
from constructs_lib.nag import acknowledge
from constructs_lib.s3_location import S3Location
from constructs_lib.secure_bucket import access_log_bucket, secure_bucket
from constructs_lib.singleton_logs import route_singleton_logs
from constructs_lib.training_job import Channel
from stacks.config import StorageConfig

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
BUNDLED_CHANNELS = ("training", "validation")
# A checkpoint serves only a job of the same inputs that resumes: one spot job (at most 12 h)
# or the next deploy's attempt after a stopped one. A week covers both, then it is waste.
CHECKPOINT_EXPIRATION_DAYS = 7


class StorageStack(Stack):
    """Depends on nothing; everything else reads these buckets by name.

    It owns the buckets' layout and hands out locations: `training_output`, `checkpoints`,
    `data_capture`, `async_results`, `async_failures` and `batch_transform` in the models
    bucket, `input` and `output` for the client.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StorageConfig,
        log_retention: logs.RetentionDays,
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        removal_policy = (
            RemovalPolicy.RETAIN if config.removal_policy == "retain" else RemovalPolicy.DESTROY
        )
        access_logs = access_log_bucket(
            self,
            "AccessLogs",
            expiration_days=config.access_log_expiration_days,
            removal_policy=removal_policy,
        )
        acknowledge(
            access_logs, "S1", "This is the access-log bucket; logging it into itself would loop."
        )
        self.data_bucket, self.models_bucket = (
            secure_bucket(
                self,
                name,
                access_logs=access_logs,
                versioned=True,
                removal_policy=removal_policy,
                noncurrent_version_expiration_days=config.noncurrent_version_expiration_days,
            )
            for name in ("Data", "Models")
        )
        # Versioned so the client reads exactly the object version that fired its event.
        self.input_bucket = secure_bucket(
            self,
            "InferenceInput",
            access_logs=access_logs,
            versioned=True,
            removal_policy=removal_policy,
            expiration_days=config.scored_object_expiration_days,
            noncurrent_version_expiration_days=1,
        )
        self.output_bucket = secure_bucket(
            self,
            "InferenceOutput",
            access_logs=access_logs,
            versioned=False,
            removal_policy=removal_policy,
            expiration_days=config.scored_object_expiration_days,
        )
        models = self.models_bucket.bucket_name
        self.training_output = S3Location(models, "training-output/")
        self.checkpoints = S3Location(models, "checkpoints/")
        self.models_bucket.add_lifecycle_rule(
            id="ExpireCheckpoints",
            prefix=self.checkpoints.prefix,
            expiration=Duration.days(CHECKPOINT_EXPIRATION_DAYS),
        )
        self.data_capture = S3Location(models, "data-capture/")
        # An asynchronous endpoint's raw results and failures; the client publishes each as
        # `<key>.out` or `<key>.error.json`, so they expire like the inference objects.
        self.async_results = S3Location(models, "async-inference/results/")
        self.async_failures = S3Location(models, "async-inference/failures/")
        self.models_bucket.add_lifecycle_rule(
            id="ExpireAsyncInference",
            prefix="async-inference/",
            expiration=Duration.days(config.scored_object_expiration_days),
        )
        # Each batch transform job's manifest, request and raw output; the client publishes
        # the output as `<key>.out`, so it expires like the inference objects.
        self.batch_transform = S3Location(models, "batch-transform/")
        self.models_bucket.add_lifecycle_rule(
            id="ExpireBatchTransform",
            prefix=self.batch_transform.prefix,
            expiration=Duration.days(config.scored_object_expiration_days),
        )
        self.input = S3Location(self.input_bucket.bucket_name, "")
        self.output = S3Location(self.output_bucket.bucket_name, "")
        if removal_policy == RemovalPolicy.DESTROY:
            route_singleton_logs(
                self,
                "Custom::S3AutoDeleteObjects",
                stack_log_group(self, "BucketEmptierLogs", retention=log_retention),
            )
        self.channels, self.data_version = self._dataset(config, log_retention)
        for output_id, bucket in (
            ("DataBucketName", self.data_bucket),
            ("ModelsBucketName", self.models_bucket),
            ("InputBucketName", self.input_bucket),
            ("OutputBucketName", self.output_bucket),
        ):
            CfnOutput(self, output_id, value=bucket.bucket_name)

    def _dataset(
        self, config: StorageConfig, log_retention: logs.RetentionDays
    ) -> tuple[list[Channel], str]:
        """The training channels, and a version that changes whenever their data does."""
        dataset = config.dataset
        if dataset.is_bundled:
            bundled = BundledDataset(
                self,
                "BundledDataset",
                bucket=self.data_bucket,
                source_root=DATA_DIR,
                channel_names=BUNDLED_CHANNELS,
                log_retention=log_retention,
            )
            return bundled.channels, bundled.version
        uris = {"training": dataset.training_uri, "validation": dataset.validation_uri}
        channels = [Channel(name, S3Location.from_uri(uri)) for name, uri in uris.items() if uri]
        return channels, str(dataset.version)
