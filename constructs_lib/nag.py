"""Scoped cdk-nag acknowledgments, including ones for resources named by tokens.

cdk-nag 3 names a wildcard finding after the policy's *final* resource string, e.g.
`AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::{"Fn::GetStackOutput":...}/training/*]`.
A bucket that lives in another stack is only rendered that way once CDK has resolved the
cross-stack reference, which happens after our code runs. So the acknowledgment is computed
at validation time (after references are resolved, before cdk-nag runs) from the very value
that was granted, exactly as cdk-nag flattens it. Each one stays scoped to one construct and
one finding; nothing is acknowledged by pattern.
"""

from __future__ import annotations

import json
from typing import Any

import jsii
from aws_cdk import Acknowledgment, Stack, Validations
from constructs import Construct, IValidation

PACK = "AwsSolutions"


def acknowledge(scope: Construct, rule: str, reason: str) -> None:
    """Acknowledges one AwsSolutions rule (or `RULE[finding]`) on `scope` and below."""
    Validations.of(scope).acknowledge(Acknowledgment(id=f"{PACK}-{rule}", reason=reason))


def acknowledge_wildcard_resource(scope: Construct, resource: str, reason: str) -> None:
    """Acknowledges the IAM5 finding for exactly this granted resource value on `scope`."""
    scope.node.add_validation(_LateAcknowledgment(scope, resource, reason))


@jsii.implements(IValidation)
class _LateAcknowledgment:
    def __init__(self, scope: Construct, resource: str, reason: str) -> None:
        self._scope = scope
        self._resource = resource
        self._reason = reason

    def validate(self) -> list[str]:
        rendered = flatten_cfn_reference(Stack.of(self._scope).resolve(self._resource))
        acknowledge(self._scope, f"IAM5[Resource::{rendered}]", self._reason)
        return []


def flatten_cfn_reference(node: Any) -> str:
    """Python port of cdk-nag's `flattenCfnReference` (utils/flatten-cfn-reference.ts)."""
    if node is None:
        return ""
    if isinstance(node, str):
        return node.replace("${", "<").replace("}", ">")
    if isinstance(node, dict):
        if "Fn::Join" in node:
            delimiter, items = node["Fn::Join"]
            return delimiter.join(flatten_cfn_reference(item) for item in items)
        if "Fn::Sub" in node:
            return flatten_cfn_reference(node["Fn::Sub"])
        if "Fn::GetAtt" in node:
            resource, attribute = node["Fn::GetAtt"]
            return f"<{flatten_cfn_reference(resource)}.{flatten_cfn_reference(attribute)}>"
        if "Fn::ImportValue" in node:
            return flatten_cfn_reference(node["Fn::ImportValue"])
        if "Ref" in node:
            return f"<{flatten_cfn_reference(node['Ref'])}>"
    return json.dumps(node, separators=(",", ":"))
