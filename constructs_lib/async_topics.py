"""The two topics an asynchronous endpoint notifies when an invocation ends: success, error.

Encrypted with a key of their own: SageMaker publishes as the endpoint's execution role, so
the key's and the topics' policies let that role (and only it) use them. The role lives in
another stack, so it is granted here, on the resources, never on the role.
"""

from __future__ import annotations

from aws_cdk import aws_iam as iam
from aws_cdk import aws_sns as sns
from constructs import Construct

from constructs_lib.keys import stack_key


class AsyncTopics(Construct):
    """`success` and `error`: the topics of an endpoint config's `NotificationConfig`."""

    def __init__(self, scope: Construct, construct_id: str, *, publisher_role_arn: str) -> None:
        super().__init__(scope, construct_id)
        publisher = iam.ArnPrincipal(publisher_role_arn)
        key = stack_key(
            self, "Key", description="Encrypts the asynchronous endpoint's notifications."
        )
        key.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[publisher],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],
            )
        )
        self.success, self.error = (
            sns.Topic(
                self,
                name,
                display_name=f"Asynchronous inference {name.lower()}",
                master_key=key,
                enforce_ssl=True,
            )
            for name in ("Success", "Error")
        )
        for topic in (self.success, self.error):
            topic.add_to_resource_policy(
                iam.PolicyStatement(
                    principals=[publisher],
                    actions=["sns:Publish"],
                    resources=[topic.topic_arn],
                )
            )
