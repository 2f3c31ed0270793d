"""An S3 bucket that is secure by default: encrypted, SSL-only, private, access-logged."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_s3 as s3
from constructs import Construct


def secure_bucket(
    scope: Construct,
    construct_id: str,
    *,
    access_logs: s3.IBucket | None,
    versioned: bool,
    removal_policy: RemovalPolicy,
    expiration_days: int | None = None,
    noncurrent_version_expiration_days: int | None = None,
) -> s3.Bucket:
    """A private bucket logging to `access_logs` under `<construct id>/` (None: the log bucket).

    Lifecycle rules keep storage bounded: incomplete multipart uploads are aborted, and
    objects (or old versions) expire when the caller says they are scratch data. A bucket
    that is destroyed with its stack is emptied first, or the deletion would fail.
    """
    rule = s3.LifecycleRule(
        abort_incomplete_multipart_upload_after=Duration.days(7),
        expiration=Duration.days(expiration_days) if expiration_days else None,
        noncurrent_version_expiration=(
            Duration.days(noncurrent_version_expiration_days)
            if noncurrent_version_expiration_days and versioned
            else None
        ),
    )
    destroy = removal_policy == RemovalPolicy.DESTROY
    return s3.Bucket(
        scope,
        construct_id,
        encryption=s3.BucketEncryption.S3_MANAGED,
        enforce_ssl=True,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        versioned=versioned,
        server_access_logs_bucket=access_logs,
        server_access_logs_prefix=f"{construct_id}/" if access_logs else None,
        lifecycle_rules=[rule],
        removal_policy=removal_policy,
        # CloudFormation deletes only empty buckets: empty it (every version) first.
        auto_delete_objects=destroy,
    )


def access_log_bucket(
    scope: Construct, construct_id: str, *, expiration_days: int, removal_policy: RemovalPolicy
) -> s3.Bucket:
    """The bucket that receives the other buckets' server access logs."""
    return secure_bucket(
        scope,
        construct_id,
        access_logs=None,
        versioned=False,
        removal_policy=removal_policy,
        expiration_days=expiration_days,
    )
