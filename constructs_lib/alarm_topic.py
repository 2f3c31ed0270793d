"""The one topic every alarm of the app notifies: encrypted, SSL-only, e-mail subscribers."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Aws
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from constructs_lib.keys import stack_key

CLOUDWATCH = iam.ServicePrincipal("cloudwatch.amazonaws.com")


class AlarmTopic(Construct):
    """CloudWatch may publish (and use the topic's key) only for this app's own alarms.

    CloudFormation names every alarm `<stack name>-<logical id>-<suffix>`, and every stack
    name starts with the app's name prefix, so `alarm_name_prefix` scopes both grants. An
    encrypted topic needs a customer managed key: the AWS managed SNS key cannot grant
    CloudWatch, which would then drop every notification silently.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        alarm_name_prefix: str,
        emails: Sequence[str],
    ) -> None:
        super().__init__(scope, construct_id)
        only_our_alarms = {
            "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
            "ArnLike": {
                "aws:SourceArn": (
                    f"arn:{Aws.PARTITION}:cloudwatch:{Aws.REGION}:{Aws.ACCOUNT_ID}:"
                    f"alarm:{alarm_name_prefix}*"
                )
            },
        }
        key = stack_key(self, "Key", description="Encrypts the alarm notifications of this app.")
        key.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[CLOUDWATCH],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],
                conditions=only_our_alarms,
            )
        )
        self.topic = sns.Topic(
            self,
            "Resource",
            display_name="SageMaker custom model alarms",
            master_key=key,
            enforce_ssl=True,
        )
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[CLOUDWATCH],
                actions=["sns:Publish"],
                resources=[self.topic.topic_arn],
                conditions=only_our_alarms,
            )
        )
        for email in emails:
            self.topic.add_subscription(subscriptions.EmailSubscription(email))


def notify(alarm: cloudwatch.Alarm, topic: sns.ITopic) -> None:
    """Sends the alarm to `topic` when it fires and again when it recovers."""
    action = cloudwatch_actions.SnsAction(topic)
    alarm.add_alarm_action(action)
    alarm.add_ok_action(action)
