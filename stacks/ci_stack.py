"""The role GitHub Actions assumes to run `cdk diff` on pull requests (optional: `ci.enabled`)."""

from __future__ import annotations

from aws_cdk import Aws, CfnOutput, Duration, Stack
from aws_cdk import aws_iam as iam
from constructs import Construct

from stacks.config import CiConfig

GITHUB_OIDC_HOST = "token.actions.githubusercontent.com"
# The audience GitHub's token carries when aws-actions/configure-aws-credentials asks for it.
AUDIENCE = "sts.amazonaws.com"


class CiStack(Stack):
    """An OIDC-federated role trusted only by the configured repository's pull requests and
    pushes to its main branch, and allowed only to assume the CDK bootstrap's lookup role,
    which reads the deployed templates `cdk diff --no-change-set` compares against. It can
    change nothing: deploying stays with whoever holds the bootstrap's deploy role.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        name_prefix: str,
        config: CiConfig,
        repository: str,
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        provider_arn = config.oidc_provider_arn or self._provider().attr_arn
        role = iam.Role(
            self,
            "DiffRole",
            role_name=f"{name_prefix}-github-diff",
            description=f"GitHub Actions of {repository}: cdk diff through the lookup role.",
            max_session_duration=Duration.hours(1),
            assumed_by=iam.WebIdentityPrincipal(
                provider_arn,
                conditions={
                    "StringEquals": {
                        f"{GITHUB_OIDC_HOST}:aud": AUDIENCE,
                        f"{GITHUB_OIDC_HOST}:sub": [
                            f"repo:{repository}:pull_request",
                            f"repo:{repository}:ref:refs/heads/{config.main_branch}",
                        ],
                    }
                },
            ),
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["sts:AssumeRole"],
                resources=[
                    f"arn:{Aws.PARTITION}:iam::{Aws.ACCOUNT_ID}:role/"
                    f"cdk-{config.bootstrap_qualifier}-lookup-role-{Aws.ACCOUNT_ID}-{Aws.REGION}"
                ],
            )
        )
        CfnOutput(
            self,
            "DiffRoleArn",
            description="The repository variable CDK_DIFF_ROLE_ARN.",
            value=role.role_arn,
        )

    def _provider(self) -> iam.CfnOIDCProvider:
        """GitHub's OIDC provider; IAM trusts its certificate authority itself, so no
        thumbprint is pinned (one per account and URL: see `ci.oidc_provider_arn`)."""
        return iam.CfnOIDCProvider(
            self, "GitHubOidcProvider", url=f"https://{GITHUB_OIDC_HOST}", client_id_list=[AUDIENCE]
        )
