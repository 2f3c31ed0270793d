"""The optional CI stack: a role only the configured repository's pull requests and main
branch may assume, and which may only assume the CDK bootstrap's lookup role."""

from __future__ import annotations

import pytest

from stacks.config import ConfigError

from .cdk_synth import Synthesized, context_with, synthesize

REPOSITORY = {"config.ci.enabled": "true", "config.ci.github_repository": "acme/models"}
PROVIDER = "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"


@pytest.fixture(scope="module")
def ci(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return synthesize(tmp_path_factory.mktemp("ci"), context_with(**REPOSITORY))


def test_off_by_default(synthesized: Synthesized) -> None:
    assert "custom-sm-ci" not in synthesized.templates


def test_the_role_is_trusted_only_by_the_repositorys_pull_requests_and_main(
    ci: Synthesized,
) -> None:
    (provider_id,) = ci.resources("ci", "AWS::IAM::OIDCProvider")
    (role,) = ci.resources("ci", "AWS::IAM::Role").values()
    (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust == {
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Effect": "Allow",
        "Principal": {"Federated": {"Fn::GetAtt": [provider_id, "Arn"]}},
        "Condition": {
            "StringEquals": {
                "token.actions.githubusercontent.com:aud": "sts.amazonaws.com",
                "token.actions.githubusercontent.com:sub": [
                    "repo:acme/models:pull_request",
                    "repo:acme/models:ref:refs/heads/main",
                ],
            }
        },
    }
    assert role["Properties"]["RoleName"] == "custom-sm-github-diff"
    assert role["Properties"]["MaxSessionDuration"] == 3600
    assert "ManagedPolicyArns" not in role["Properties"]


def test_the_role_may_only_assume_the_bootstrap_lookup_role(ci: Synthesized) -> None:
    (policy,) = ci.resources("ci", "AWS::IAM::Policy").values()
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert (statement["Effect"], statement["Action"]) == ("Allow", "sts:AssumeRole")
    parts = statement["Resource"]["Fn::Join"][1]
    assert ":role/cdk-hnb659fds-lookup-role-" in parts
    assert ci.template("ci")["Outputs"]["DiffRoleArn"]["Value"] == {
        "Fn::GetAtt": [next(iter(ci.resources("ci", "AWS::IAM::Role"))), "Arn"]
    }


def test_an_existing_provider_is_used_rather_than_a_second_created(tmp_path) -> None:
    existing = synthesize(
        tmp_path,
        context_with(**REPOSITORY, **{"config.ci.oidc_provider_arn": PROVIDER}),
    )
    assert existing.resources("ci", "AWS::IAM::OIDCProvider") == {}
    (role,) = existing.resources("ci", "AWS::IAM::Role").values()
    (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Federated": PROVIDER}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"config.ci.enabled": "true"},
            "config.ci.github_repository: got null; allowed: 'owner/name' of the GitHub "
            "repository whose workflows may assume the role, when ci.enabled is true",
        ),
        (
            {**REPOSITORY, "config.ci.github_repository": "acme"},
            "config.ci.github_repository: got 'acme'; allowed: null or 'owner/name'",
        ),
        (
            {**REPOSITORY, "config.ci.oidc_provider_arn": "arn:aws:iam::1:oidc-provider/x"},
            "config.ci.oidc_provider_arn: got 'arn:aws:iam::1:oidc-provider/x'; allowed: null",
        ),
    ],
)
def test_bad_ci_settings_fail_synth(overrides: dict[str, str], message: str) -> None:
    from app import build_app

    with pytest.raises(ConfigError) as failure:
        build_app(context=context_with(**overrides))
    assert message in str(failure.value)
