"""Gives a CDK-internal singleton function a log group that its stack owns.

Some of CDK's own handlers (the S3 notification handler, the bucket auto-delete provider)
have no log-group setting. Left alone, Lambda creates `/aws/lambda/<generated name>` on their
first run: no retention, and `cdk destroy` leaves it behind. Pointing them at a group of the
stack's makes their logs expire and go with the stack.
"""

from __future__ import annotations

from aws_cdk import CfnResource, Stack
from aws_cdk import aws_logs as logs


def route_singleton_logs(stack: Stack, singleton_id_prefix: str, log_group: logs.ILogGroup) -> None:
    """Points every function under the stack-level construct(s) named `singleton_id_prefix...`
    at `log_group`; raises if there is none (CDK's internals moved, so nothing was routed).
    """
    functions = [
        construct
        for child in stack.node.children
        if child.node.id.startswith(singleton_id_prefix)
        for construct in child.node.find_all()
        if isinstance(construct, CfnResource)
        and construct.cfn_resource_type == "AWS::Lambda::Function"
    ]
    if not functions:
        raise LookupError(f"{stack.node.path}: no {singleton_id_prefix}* function to route logs of")
    for function in functions:
        function.add_property_override("LoggingConfig", {"LogGroup": log_group.log_group_name})
