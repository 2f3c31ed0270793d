"""Log groups that the app owns: they expire after the configured days and go with their stack.

A group Lambda or SageMaker creates on its own never expires and outlives `cdk destroy`, so
every function and the endpoint log to one of these instead.
"""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_logs as logs
from aws_cdk.aws_logs import RetentionDays
from constructs import Construct

RETENTION_BY_DAYS = {
    1: RetentionDays.ONE_DAY,
    3: RetentionDays.THREE_DAYS,
    5: RetentionDays.FIVE_DAYS,
    7: RetentionDays.ONE_WEEK,
    14: RetentionDays.TWO_WEEKS,
    30: RetentionDays.ONE_MONTH,
    60: RetentionDays.TWO_MONTHS,
    90: RetentionDays.THREE_MONTHS,
    120: RetentionDays.FOUR_MONTHS,
    150: RetentionDays.FIVE_MONTHS,
    180: RetentionDays.SIX_MONTHS,
    365: RetentionDays.ONE_YEAR,
    400: RetentionDays.THIRTEEN_MONTHS,
    545: RetentionDays.EIGHTEEN_MONTHS,
    731: RetentionDays.TWO_YEARS,
    1096: RetentionDays.THREE_YEARS,
    1827: RetentionDays.FIVE_YEARS,
}


def retention(days: int) -> RetentionDays:
    """The RetentionDays for `days`; the config only lets through days that have one."""
    return RETENTION_BY_DAYS[days]


def stack_log_group(
    scope: Construct, construct_id: str, *, retention: RetentionDays, name: str | None = None
) -> logs.LogGroup:
    """A group deleted with its stack; `name` only where a service fixes it."""
    return logs.LogGroup(
        scope,
        construct_id,
        log_group_name=name,
        retention=retention,
        removal_policy=RemovalPolicy.DESTROY,
    )
