"""The templates read as a deploy: what the CDK CLI and CloudFormation will do with them.

Each test here stands for a way a real `cdk deploy --all` went wrong before: a retrain that
never reached the endpoint, a first deploy refused by Lambda's concurrency rule, handlers that
could not log, a provider framework that could not wait for its handlers, a wait condition
that would have needed an update, alarms that told nobody, a teardown that failed or left
things behind, and a region baked in at synth.
"""

from __future__ import annotations

import aws_cdk as cdk
import pytest
from aws_cdk import aws_lambda as lambda_
from aws_cdk import custom_resources as cr
from cfnlint.schema.manager import PROVIDER_SCHEMA_MANAGER

from .cdk_synth import Synthesized, context_with, synthesize
from .test_cdk_stacks import flat, statements

SERVING = "custom-sm-serving"


def synth(tmp_path_factory, name: str, **overrides: object) -> Synthesized:
    return synthesize(tmp_path_factory.mktemp(name), context_with(**overrides))


def template_bytes(synthesized: Synthesized, stack: str) -> bytes:
    return (synthesized.outdir / f"{stack}.template.json").read_bytes()


def resources_of(template: dict, resource_type: str) -> dict[str, dict]:
    return {
        logical_id: resource
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == resource_type
    }


# -- a retrain reaches the endpoint -----------------------------------------------------------

MODEL_CHANGES = {
    "hyperparameter": {"config.training.hyperparameters.num_leaves": "63"},
    "instance-type": {"config.training.instance_type": "ml.m5.xlarge"},
    "volume": {"config.training.volume_size_gb": 10},
    "dataset-version": {
        "config.storage.dataset.training_uri": "s3://our-data/churn/train",
        "config.storage.dataset.version": "2026-11-02",
    },
}
NOT_MODEL_CHANGES = {
    "run-time-limit": {"config.training.max_run_seconds": 1800},
    "metric-definitions": {
        "config.training.metric_definitions": '[{"Name": "acc", "Regex": "val_accuracy: (\\\\S+)"}]'
    },
    "client-memory": {"config.client.memory_mb": 1024},
}
EXTERNAL_DATASET = {
    "config.storage.dataset.training_uri": "s3://our-data/churn/train",
    "config.storage.dataset.version": "2026-11-01",
}


@pytest.fixture(scope="module")
def external_dataset(tmp_path_factory) -> Synthesized:
    return synth(tmp_path_factory, "external-dataset", **EXTERNAL_DATASET)


@pytest.mark.parametrize("name", MODEL_CHANGES)
def test_serving_template_changes_whenever_the_model_does(
    name, synthesized, external_dataset, tmp_path_factory
):
    """The CLI skips a stack whose template did not change, and CloudFormation reads a weak
    reference only when its consumer is updated: the serving template itself must change.
    The change is in the model's container (replacement only), so the model and endpoint
    config are replaced and the endpoint rolls to them blue/green.
    """
    change = MODEL_CHANGES[name]
    before = synthesized
    if "config.storage.dataset.version" in change:
        before, change = external_dataset, {**EXTERNAL_DATASET, **change}
    after = synth(tmp_path_factory, name, **change)
    assert template_bytes(after, SERVING) != template_bytes(before, SERVING)
    old_model, new_model = (
        next(iter(resources_of(s.template("serving"), "AWS::SageMaker::Model").values()))
        for s in (before, after)
    )
    changed = {
        key
        for key in set(old_model["Properties"]) | set(new_model["Properties"])
        if old_model["Properties"].get(key) != new_model["Properties"].get(key)
    }
    schema = PROVIDER_SCHEMA_MANAGER.get_resource_schema("us-east-1", "AWS::SageMaker::Model")
    create_only = {
        path.removeprefix("/properties/") for path in schema.schema["createOnlyProperties"]
    }
    assert changed and changed <= create_only, "the model must be replaced, not updated"


@pytest.mark.parametrize("name", NOT_MODEL_CHANGES)
def test_serving_template_is_byte_identical_when_the_model_is_not_retrained(
    name, synthesized, tmp_path_factory
):
    after = synth(tmp_path_factory, name, **NOT_MODEL_CHANGES[name])
    assert template_bytes(after, SERVING) == template_bytes(synthesized, SERVING)


# -- the deploy's wait for the job: up to 12 hours, never an update of a wait condition ------

WAIT_TYPES = ("AWS::CloudFormation::WaitCondition", "AWS::CloudFormation::WaitConditionHandle")


def wait_pair(synthesized: Synthesized) -> dict[str, dict]:
    template = synthesized.template("training")
    return {key: r for kind in WAIT_TYPES for key, r in resources_of(template, kind).items()}


def job_stem(synthesized: Synthesized) -> str:
    (job,) = resources_of(synthesized.template("training"), "Custom::SageMakerTrainingJob").values()
    return job["Properties"]["JobNameStem"]


@pytest.mark.parametrize("name", [*MODEL_CHANGES, *NOT_MODEL_CHANGES])
def test_a_wait_condition_is_replaced_by_a_new_pair_never_updated(
    name, synthesized, external_dataset, tmp_path_factory
):
    """CloudFormation cannot update a wait condition: a changed one must have new logical
    ids. A new model gets a new job and a new pair; a longer run time only a new pair (the
    custom resource signals it at once for the completed job it keeps); anything else
    leaves the pair as it was, so there is nothing to wait for.
    """
    change = {**MODEL_CHANGES, **NOT_MODEL_CHANGES}[name]
    before = synthesized
    if "config.storage.dataset.version" in change:
        before, change = external_dataset, {**EXTERNAL_DATASET, **change}
    after = synth(tmp_path_factory, name, **change)
    old, new = wait_pair(before), wait_pair(after)
    for logical_id in set(old) & set(new):
        assert old[logical_id] == new[logical_id], f"{logical_id} would need an update"
    retrains = name in MODEL_CHANGES
    assert (job_stem(after) != job_stem(before)) is retrains
    assert (set(old) != set(new)) is (retrains or name == "run-time-limit")


def test_ten_hours_of_training_fit_and_thirteen_are_refused_at_synth(tmp_path_factory):
    ten_hours = synth(tmp_path_factory, "ten-hours", **{"config.training.max_run_seconds": 36_000})
    (wait,) = resources_of(ten_hours.template("training"), WAIT_TYPES[0]).values()
    assert wait["Properties"]["Timeout"] == "36600"
    with pytest.raises(Exception, match=r"max_run_seconds: got 46800; allowed: at most 42600 s"):
        synth(tmp_path_factory, "thirteen-hours", **{"config.training.max_run_seconds": 46_800})


# -- first deploys on new accounts ------------------------------------------------------------


def test_the_client_reserves_no_concurrency_by_default(synthesized):
    """Lambda keeps 100 executions unreserved; new accounts often have a quota of 10."""
    for template in synthesized.templates.values():
        for function in resources_of(template, "AWS::Lambda::Function").values():
            assert "ReservedConcurrentExecutions" not in function["Properties"]


# -- every function logs, to a group that expires and goes with its stack ---------------------


def test_every_function_logs_to_a_group_its_stack_owns(synthesized):
    """Without a group of the stack's own, Lambda creates `/aws/lambda/<name>` on first use:
    never expiring, and left behind by `cdk destroy`.
    """
    for name, template in synthesized.templates.items():
        groups = resources_of(template, "AWS::Logs::LogGroup")
        for logical_id, function in resources_of(template, "AWS::Lambda::Function").items():
            logging = function["Properties"].get("LoggingConfig", {})
            assert "Ref" in logging.get("LogGroup", {}), f"{name}/{logical_id} has no log group"
            group = groups[logging["LogGroup"]["Ref"]]
            assert group["DeletionPolicy"] == "Delete"
            assert group["Properties"]["RetentionInDays"] == 30


def test_every_log_group_expires_and_is_deleted_with_its_stack(synthesized):
    for name, template in synthesized.templates.items():
        for logical_id, group in resources_of(template, "AWS::Logs::LogGroup").items():
            assert group["Properties"]["RetentionInDays"] == 30, f"{name}/{logical_id}"
            assert group["DeletionPolicy"] == "Delete", f"{name}/{logical_id}"


def test_training_handlers_may_write_their_own_logs(synthesized):
    template = synthesized.template("training")
    functions = resources_of(template, "AWS::Lambda::Function")
    for logical_id in ("TrainingJobOnEvent", "TrainingJobStateChange"):
        (function,) = (f for key, f in functions.items() if key.startswith(logical_id))
        group = function["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
        role = function["Properties"]["Role"]["Fn::GetAtt"][0]
        granted = [
            s
            for s in statements(template, role)
            if {"Fn::GetAtt": [group, "Arn"]} in _list(s["Resource"])
        ]
        assert granted, f"{logical_id}'s role may not write to {group}"
        assert granted[0]["Action"] == ["logs:CreateLogStream", "logs:PutLogEvents"]


def _list(value: object) -> list:
    return value if isinstance(value, list) else [value]


def test_the_endpoint_logs_to_a_group_with_retention_created_before_it(synthesized):
    template = synthesized.template("serving")
    (endpoint_id,) = resources_of(template, "AWS::SageMaker::Endpoint")
    groups = resources_of(template, "AWS::Logs::LogGroup")
    (group_id,) = (
        key
        for key, group in groups.items()
        if group["Properties"]["LogGroupName"]
        == "/aws/sagemaker/Endpoints/custom-sm-model-endpoint"
    )
    assert group_id in template["Resources"][endpoint_id]["DependsOn"]


# -- the provider framework holds what CDK's Provider grants ----------------------------------


def provider_grants(template: dict, on_event_id: str) -> dict[str, set]:
    """Each framework function's grants as (action, resource) pairs, with our handler named by
    its part in the provider. Logs are compared elsewhere: CDK's own roles write logs through
    the AWS managed policy.
    """
    labels = {on_event_id: "<onEvent>"}
    grants = {}
    for function in resources_of(template, "AWS::Lambda::Function").values():
        handler = function["Properties"]["Handler"]
        if not handler.startswith("framework."):
            continue
        pairs = set()
        for statement in statements(template, function["Properties"]["Role"]["Fn::GetAtt"][0]):
            for action in _list(statement["Action"]):
                if action.startswith("logs:"):
                    continue
                for resource in _list(statement["Resource"]):
                    rendered = flat(resource)
                    for source, label in labels.items():
                        rendered = rendered.replace(f'"{source}"', f'"{label}"')
                    pairs.add((statement["Effect"], action, rendered))
        grants[handler] = pairs
    return grants


def test_framework_roles_hold_what_cdks_provider_grants(synthesized):
    """After a failed invoke the framework calls GetFunction until the handler is active; a
    role without it stalls 300 s and fails the deployment.
    """
    app = cdk.App()
    stack = cdk.Stack(app, "Reference")
    handler = lambda_.Function(
        stack,
        "OnEvent",
        runtime=lambda_.Runtime.PYTHON_3_14,
        handler="index.handler",
        code=lambda_.Code.from_inline("def handler(event, context): pass"),
    )
    cr.Provider(stack, "Provider", on_event_handler=handler)
    reference = app.synth().get_stack_by_name("Reference").template
    expected = provider_grants(reference, stack.get_logical_id(handler.node.default_child))

    ours = synthesized.template("training")
    functions = resources_of(ours, "AWS::Lambda::Function")
    on_event = next(
        key for key, f in functions.items() if f["Properties"]["Handler"] == "index.on_event"
    )
    assert provider_grants(ours, on_event) == expected
    assert set(expected) == {"framework.onEvent"}


# -- alarms notify someone --------------------------------------------------------------------


@pytest.fixture(scope="module")
def with_emails(tmp_path_factory) -> Synthesized:
    return synth(tmp_path_factory, "alarm-emails", **{"config.alarm_emails": '["ops@example.com"]'})


def test_every_alarm_notifies_the_topic_on_alarm_and_on_recovery(synthesized):
    alarms = {
        f"{name}/{logical_id}": alarm["Properties"]
        for name, template in synthesized.templates.items()
        for logical_id, alarm in resources_of(template, "AWS::CloudWatch::Alarm").items()
    }
    assert len(alarms) == 4
    for where, alarm in alarms.items():
        assert len(alarm["AlarmActions"]) == 1, where
        assert alarm["OKActions"] == alarm["AlarmActions"], where
        target = flat(alarm["AlarmActions"][0])
        assert "AlarmTopic" in target, where


def test_alarm_topic_is_encrypted_ssl_only_and_open_to_our_alarms_only(synthesized):
    template = synthesized.template("serving")
    (topic_id, topic), *_ = resources_of(template, "AWS::SNS::Topic").items()
    key_id = topic["Properties"]["KmsMasterKeyId"]["Fn::GetAtt"][0]
    (policy,) = resources_of(template, "AWS::SNS::TopicPolicy").values()
    by_effect = {s["Effect"]: s for s in policy["Properties"]["PolicyDocument"]["Statement"]}
    assert by_effect["Deny"]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    publish = by_effect["Allow"]
    assert publish["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert publish["Action"] == "sns:Publish"
    assert publish["Resource"] == {"Ref": topic_id}
    assert "alarm:custom-sm-*" in flat(publish["Condition"]["ArnLike"]["aws:SourceArn"])
    assert "aws:SourceAccount" in publish["Condition"]["StringEquals"]
    key_statements = template["Resources"][key_id]["Properties"]["KeyPolicy"]["Statement"]
    (cloudwatch,) = (
        s for s in key_statements if s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    )
    assert sorted(cloudwatch["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey*"]
    assert cloudwatch["Condition"] == publish["Condition"]
    assert not resources_of(template, "AWS::SNS::Subscription")


def test_alarm_emails_subscribe_to_the_topic(with_emails):
    (subscription,) = resources_of(
        with_emails.template("serving"), "AWS::SNS::Subscription"
    ).values()
    assert subscription["Properties"]["Protocol"] == "email"
    assert subscription["Properties"]["Endpoint"] == "ops@example.com"


# -- teardown ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def destroyed(tmp_path_factory) -> Synthesized:
    return synth(tmp_path_factory, "destroy", **{"config.storage.removal_policy": "destroy"})


def test_destroy_empties_and_deletes_every_bucket(destroyed):
    """CloudFormation deletes only empty buckets: each one is emptied first (every version),
    and the emptier's function logs to a group that goes with the stack.
    """
    template = destroyed.template("storage")
    buckets = resources_of(template, "AWS::S3::Bucket")
    assert len(buckets) == 5
    emptied = {
        r["Properties"]["BucketName"]["Ref"]
        for r in resources_of(template, "Custom::S3AutoDeleteObjects").values()
    }
    assert emptied == set(buckets)
    for bucket in buckets.values():
        assert bucket["DeletionPolicy"] == "Delete"
    (emptier,) = (
        f
        for key, f in resources_of(template, "AWS::Lambda::Function").items()
        if key.startswith("CustomS3AutoDeleteObjects")
    )
    assert "Ref" in emptier["Properties"]["LoggingConfig"]["LogGroup"]


def test_retain_keeps_every_bucket_and_adds_no_emptier(synthesized):
    template = synthesized.template("storage")
    for bucket in resources_of(template, "AWS::S3::Bucket").values():
        assert bucket["DeletionPolicy"] == "Retain"
    assert not resources_of(template, "Custom::S3AutoDeleteObjects")


# -- the region is the one the stacks are deployed to -----------------------------------------


def stack_environments(synthesized: Synthesized) -> set[str]:
    return {
        artifact["environment"]
        for artifact in synthesized.manifest["artifacts"].values()
        if artifact["type"] == "aws:cloudformation:stack"
    }


def test_no_region_is_baked_in_when_the_cli_falls_back_to_us_east_1(tmp_path, monkeypatch):
    """The CLI sets CDK_DEFAULT_REGION=us-east-1 when it finds no region; an assembly
    synthesized that way must still deploy to, and read its references in, any region.
    """
    monkeypatch.setenv("CDK_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("CDK_DEFAULT_ACCOUNT", "111111111111")
    synthesized = synthesize(tmp_path)
    assert stack_environments(synthesized) == {"aws://unknown-account/unknown-region"}
    for name, template in synthesized.templates.items():
        assert "us-east-1" not in flat(template), name
        assert "111111111111" not in flat(template), name


def test_a_pinned_region_names_itself_in_every_reference(tmp_path_factory):
    pinned = synth(tmp_path_factory, "pinned", **{"config.region": "eu-west-1"})
    assert stack_environments(pinned) == {"aws://unknown-account/eu-west-1"}
    model = next(iter(resources_of(pinned.template("serving"), "AWS::SageMaker::Model").values()))
    reference = model["Properties"]["PrimaryContainer"]["ModelDataUrl"]["Fn::GetStackOutput"]
    assert reference["Region"] == "eu-west-1"
