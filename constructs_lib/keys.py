"""The app's KMS keys: rotated yearly, and deleted (after 7 days) with their stack."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_kms as kms
from constructs import Construct


def stack_key(scope: Construct, construct_id: str, *, description: str) -> kms.Key:
    """A key that protects only what its own stack holds, so it may go with the stack."""
    return kms.Key(
        scope,
        construct_id,
        enable_key_rotation=True,
        description=description,
        removal_policy=RemovalPolicy.DESTROY,
        pending_window=Duration.days(7),
    )
