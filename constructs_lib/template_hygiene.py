"""Drops `DependsOn` entries that a `Ref`/`Fn::GetAtt` already implies (cfn-lint W3005).

CDK adds an explicit dependency from a Lambda function or state machine on its role even
when the resource already references that role's ARN; the duplicate is harmless but makes
every template fail a warning-free cfn-lint. Dependencies become `DependsOn` entries while
the app is prepared, so this runs as a validation of the app (after preparation, before the
templates are written) and removes only entries that a reference in the same resource
already guarantees.
"""

from __future__ import annotations

import json

import jsii
from aws_cdk import CfnResource, Stack
from constructs import Construct, IValidation


def drop_implied_dependencies(app: Construct) -> None:
    app.node.add_validation(_DropImpliedDependencies(app))


@jsii.implements(IValidation)
class _DropImpliedDependencies:
    def __init__(self, app: Construct) -> None:
        self._app = app

    def validate(self) -> list[str]:
        for construct in self._app.node.find_all():
            if CfnResource.is_cfn_resource(construct):
                _drop_implied(construct)
        return []


def _drop_implied(resource: CfnResource) -> None:
    stack = Stack.of(resource)
    rendered = json.dumps(stack.resolve(resource._cfn_properties))
    for dependency in resource.obtain_dependencies():
        if not CfnResource.is_cfn_resource(dependency) or Stack.of(dependency) is not stack:
            continue
        if f'"{stack.get_logical_id(dependency)}"' in rendered:
            resource.remove_resource_dependency(dependency)
