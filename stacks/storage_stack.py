"""Buckets for data, models, inference input and output, and their access logs."""

from __future__ import annotations

import hashlib
from pathlib import Path

from aws_cdk import CfnOutput, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_s3_deployment as s3_deployment
from constructs import Construct

from constructs_lib.nag import acknowledge, acknowledge_wildcard_resource
from constructs_lib.s3_location import S3Location
from constructs_lib.secure_bucket import access_log_bucket, secure_bucket
from constructs_lib.training_job import Channel
from stacks.config import StorageConfig

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
BUNDLED_CHANNELS = ("training", "validation")
DATA_EXCLUDE = ["**/__pycache__", "**/*.pyc", "**/.DS_Store"]


class StorageStack(Stack):
    """Depends on nothing; everything else reads these buckets by name."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: StorageConfig, **kwargs
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        scratch_policy = (
            RemovalPolicy.RETAIN if config.removal_policy == "retain" else RemovalPolicy.DESTROY
        )
        access_logs = access_log_bucket(
            self,
            "AccessLogs",
            expiration_days=config.access_log_expiration_days,
            removal_policy=scratch_policy,
        )
        acknowledge(
            access_logs, "S1", "This is the access-log bucket; logging it into itself would loop."
        )
        self.data_bucket = secure_bucket(
            self,
            "Data",
            access_logs=access_logs,
            versioned=True,
            removal_policy=RemovalPolicy.RETAIN,
            noncurrent_version_expiration_days=config.noncurrent_version_expiration_days,
        )
        self.models_bucket = secure_bucket(
            self,
            "Models",
            access_logs=access_logs,
            versioned=True,
            removal_policy=RemovalPolicy.RETAIN,
            noncurrent_version_expiration_days=config.noncurrent_version_expiration_days,
        )
        # Versioned so the client reads exactly the object version that fired its event.
        self.input_bucket = secure_bucket(
            self,
            "InferenceInput",
            access_logs=access_logs,
            versioned=True,
            removal_policy=scratch_policy,
            expiration_days=config.scored_object_expiration_days,
            noncurrent_version_expiration_days=1,
        )
        self.output_bucket = secure_bucket(
            self,
            "InferenceOutput",
            access_logs=access_logs,
            versioned=False,
            removal_policy=scratch_policy,
            expiration_days=config.scored_object_expiration_days,
        )
        self.channels, self.data_version = self._dataset(config)
        for output_id, bucket in (
            ("DataBucketName", self.data_bucket),
            ("ModelsBucketName", self.models_bucket),
            ("InputBucketName", self.input_bucket),
            ("OutputBucketName", self.output_bucket),
        ):
            CfnOutput(self, output_id, value=bucket.bucket_name)

    def _uploader_role(self) -> iam.Role:
        """The dataset uploader's own role: exact asset objects and data prefixes only."""
        role = iam.Role(
            self,
            "DatasetUploaderRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="Copies the bundled sample dataset into the data bucket.",
        )
        self._uploader_logs = logs.LogGroup(
            self,
            "DatasetUploaderLogs",
            retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self._uploader_logs.grant_write(role)
        return role

    def _dataset(self, config: StorageConfig) -> tuple[list[Channel], str]:
        """The training channels, and a version that changes whenever their data does."""
        dataset = config.dataset
        if not dataset.is_bundled:
            uris = {"training": dataset.training_uri, "validation": dataset.validation_uri}
            channels = [
                Channel(name, S3Location.from_uri(uri)) for name, uri in uris.items() if uri
            ]
            return channels, str(dataset.version)
        channels = []
        fingerprints = []
        uploader = self._uploader_role()
        for name in BUNDLED_CHANNELS:
            source_dir = str(DATA_DIR / name)
            location = S3Location(self.data_bucket.bucket_name, f"{name}/")
            asset = s3_assets.Asset(
                self, f"{name.title()}DataAsset", path=source_dir, exclude=DATA_EXCLUDE
            )
            uploader.add_to_policy(
                iam.PolicyStatement(
                    actions=["s3:GetObject"],
                    resources=[asset.bucket.arn_for_objects(asset.s3_object_key)],
                )
            )
            objects = self.data_bucket.arn_for_objects(f"{location.prefix}*")
            uploader.add_to_policy(
                iam.PolicyStatement(
                    actions=["s3:PutObject", "s3:DeleteObject"], resources=[objects]
                )
            )
            acknowledge_wildcard_resource(
                uploader,
                objects,
                f"The bundled dataset replaces what is under {location.prefix} (sync --delete).",
            )
            uploader.add_to_policy(
                iam.PolicyStatement(
                    actions=["s3:ListBucket"],
                    resources=[self.data_bucket.bucket_arn],
                    conditions={"StringLike": {"s3:prefix": [f"{location.prefix}*"]}},
                )
            )
            s3_deployment.BucketDeployment(
                self,
                f"Deploy{name.title()}Data",
                destination_bucket=self.data_bucket,
                destination_key_prefix=location.prefix,
                sources=[s3_deployment.Source.bucket(asset.bucket, asset.s3_object_key)],
                retain_on_delete=True,
                role=uploader.without_policy_updates(),
                log_group=self._uploader_logs,
            )
            channels.append(Channel(name, location))
            fingerprints.append(asset.asset_hash)
        for child in self.node.children:
            if child.node.id.startswith("Custom::CDKBucketDeployment"):
                acknowledge(
                    child,
                    "L1",
                    "CDK's BucketDeployment pins its own Python runtime (it ships the AWS CLI "
                    "layer built for it); the function only copies the bundled dataset.",
                )
        combined = hashlib.sha256("".join(fingerprints).encode()).hexdigest()
        return channels, f"bundled-{combined}"
