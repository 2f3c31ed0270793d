"""Uploads the sample dataset that ships with the app into a bucket, one prefix per channel."""

from __future__ import annotations

import hashlib
from pathlib import Path

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_s3_deployment as s3_deployment
from constructs import Construct

from constructs_lib.log_groups import stack_log_group
from constructs_lib.nag import acknowledge, acknowledge_wildcard_resource
from constructs_lib.s3_location import S3Location
from constructs_lib.training_job import Channel

EXCLUDE = ["**/__pycache__", "**/*.pyc", "**/.DS_Store"]


class BundledDataset(Construct):
    """`<source_root>/<channel>/` lands under `s3://<bucket>/<channel>/` for each channel.

    Attributes: `channels` (for the training job) and `version`, a digest of the files that
    changes whenever any of them does, so a new dataset trains a new model.

    The uploader (CDK's BucketDeployment) runs with a role of its own that may read exactly
    these asset zips and write only under these prefixes, instead of CDK's default grants.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        bucket: s3.IBucket,
        source_root: Path,
        channel_names: tuple[str, ...],
        log_retention: logs.RetentionDays,
    ) -> None:
        super().__init__(scope, construct_id)
        role = iam.Role(
            self,
            "UploaderRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="Copies the bundled sample dataset into the data bucket.",
        )
        log_group = stack_log_group(self, "UploaderLogs", retention=log_retention)
        log_group.grant_write(role)
        self.channels: list[Channel] = []
        digests = []
        for name in channel_names:
            location = S3Location(bucket.bucket_name, f"{name}/")
            asset = s3_assets.Asset(
                self, f"{name.title()}Files", path=str(source_root / name), exclude=EXCLUDE
            )
            self._allow_upload(role, bucket, asset, location)
            s3_deployment.BucketDeployment(
                self,
                f"Upload{name.title()}",
                destination_bucket=bucket,
                destination_key_prefix=location.prefix,
                sources=[s3_deployment.Source.bucket(asset.bucket, asset.s3_object_key)],
                retain_on_delete=True,
                role=role.without_policy_updates(),
                log_group=log_group,
            )
            self.channels.append(Channel(name, location))
            digests.append(asset.asset_hash)
        self.version = "bundled-" + hashlib.sha256("".join(digests).encode()).hexdigest()
        self._acknowledge_uploader_runtime()

    @staticmethod
    def _allow_upload(
        role: iam.Role, bucket: s3.IBucket, asset: s3_assets.Asset, location: S3Location
    ) -> None:
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject"],
                resources=[asset.bucket.arn_for_objects(asset.s3_object_key)],
            )
        )
        objects = bucket.arn_for_objects(f"{location.prefix}*")
        role.add_to_policy(
            iam.PolicyStatement(actions=["s3:PutObject", "s3:DeleteObject"], resources=[objects])
        )
        acknowledge_wildcard_resource(
            role,
            objects,
            f"The bundled dataset replaces what is under {location.prefix} (sync --delete).",
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:ListBucket"],
                resources=[bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{location.prefix}*"]}},
            )
        )

    def _acknowledge_uploader_runtime(self) -> None:
        """BucketDeployment's shared function sits at stack level, outside this construct."""
        for child in Stack.of(self).node.children:
            if child.node.id.startswith("Custom::CDKBucketDeployment"):
                acknowledge(
                    child,
                    "L1",
                    "CDK's BucketDeployment pins its own Python runtime (it ships the AWS CLI "
                    "layer built for it); the function only copies the bundled dataset.",
                )
