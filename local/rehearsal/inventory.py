"""What a rehearsed deployment holds that IAM cares about: roles with their policies, and the
functions that run with them, every value resolved as CloudFormation would have.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from local.iam_policy import NamedPolicy
from local.rehearsal.deployer import Rehearsal
from local.rehearsal.resolver import Resolver
from local.rehearsal.template import TemplateError


@dataclass(frozen=True)
class DeployedFunction:
    stack: str
    logical_id: str
    name: str
    arn: str
    role_arn: str
    log_group: str
    handler: str
    # The function's environment as written in the template (references unresolved).
    variables: dict[str, Any]


def _resolvers(rehearsal: Rehearsal) -> dict[str, Resolver]:
    resolvers = {name: state.resolver for name, state in rehearsal.stacks.items()}
    return {name: resolver for name, resolver in resolvers.items() if resolver is not None}


def role_policies(rehearsal: Rehearsal) -> dict[str, list[NamedPolicy]]:
    """Every role of the app (by ARN) with its identity policies, inline and attached."""
    policies: dict[str, list[NamedPolicy]] = {}
    for stack, resolver in _resolvers(rehearsal).items():
        for logical_id, resource in resolver.resources.items():
            properties = resource.get("Properties", {})
            if resource["Type"] == "AWS::IAM::Role":
                arn = resolver.attribute(logical_id, "Arn")
                policies.setdefault(arn, [])
                for inline in properties.get("Policies", []):
                    policies[arn].append(
                        NamedPolicy(
                            f"{stack}/{logical_id}/{inline['PolicyName']}",
                            resolver(inline["PolicyDocument"]),
                        )
                    )
                if properties.get("ManagedPolicyArns"):
                    raise TemplateError(
                        f"{stack}/{logical_id} attaches managed policies "
                        f"{resolver(properties['ManagedPolicyArns'])}: their documents are not "
                        "known here, so its permissions cannot be checked"
                    )
            elif resource["Type"] == "AWS::IAM::Policy":
                document = resolver(properties["PolicyDocument"])
                for role in properties.get("Roles", []):
                    arn = _role_arn(rehearsal, resolver(role))
                    policies.setdefault(arn, []).append(
                        NamedPolicy(f"{stack}/{logical_id}", document)
                    )
    return policies


def _role_arn(rehearsal: Rehearsal, name: str) -> str:
    return rehearsal.client("iam").get_role(RoleName=name)["Role"]["Arn"]


def functions(rehearsal: Rehearsal) -> list[DeployedFunction]:
    """Every Lambda function of the app, with the role it runs as and where it logs."""
    found = []
    for stack, resolver in _resolvers(rehearsal).items():
        for logical_id, resource in resolver.resources.items():
            if resource["Type"] != "AWS::Lambda::Function":
                continue
            properties = resource["Properties"]
            name = resolver.ref(logical_id)
            logging = properties.get("LoggingConfig", {})
            found.append(
                DeployedFunction(
                    stack=stack,
                    logical_id=logical_id,
                    name=name,
                    arn=resolver.attribute(logical_id, "Arn"),
                    role_arn=resolver(properties["Role"]),
                    log_group=resolver(logging["LogGroup"])
                    if "LogGroup" in logging
                    else f"/aws/lambda/{name}",
                    handler=properties["Handler"],
                    variables=properties.get("Environment", {}).get("Variables", {}),
                )
            )
    return found
