#!/usr/bin/env python3
"""The CDK app: six stacks joined by cross-stack references; the one place the config is read.

Storage ──buckets──▶ Iam ◀──images── Registry
   ├──data/models──▶ Training ──ModelDataUrl──▶ Serving ──endpoint name──▶ Client
   └──input/output buckets (by name) ───────────────────────────────────▶ Client
"""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from aws_cdk import Validations
from cdk_nag import AwsSolutionsChecks

from constructs_lib.log_groups import retention
from constructs_lib.template_hygiene import drop_implied_dependencies
from stacks.ci_stack import CiStack
from stacks.client_stack import ClientNames, ClientStack, Completions, Transforms
from stacks.config import AppConfig
from stacks.iam_stack import IamStack
from stacks.registry_stack import RegistryStack
from stacks.serving_stack import ServingStack
from stacks.storage_stack import StorageStack
from stacks.training_stack import TrainingStack

# The deployment units, in deploy order; each stack's id is `<name_prefix>-<name>`. The
# optional `<name_prefix>-ci` stack (`ci.enabled`) stands apart: nothing depends on it.
STACKS = ("storage", "registry", "iam", "training", "serving", "client")


def build_app(context: dict[str, Any] | None = None, outdir: str | None = None) -> cdk.App:
    """Composes the stacks; tests call this with their own context and output directory."""
    app = cdk.App(context=context, outdir=outdir)
    config = AppConfig.from_context(app.node)
    # Env-agnostic unless the config pins them: the stacks then go to the account and region
    # of the credentials `cdk deploy` runs with, and weak references read `AWS::Region`. (The
    # CLI's CDK_DEFAULT_REGION falls back to us-east-1 when it finds no region, which would
    # bake that region into every reference of an assembly synthesized without one.)
    env = cdk.Environment(account=config.account, region=config.region)
    prefix = config.name_prefix
    stack_id = {name: f"{prefix}-{name}" for name in STACKS}
    retain_days = retention(config.log_retention_days)

    storage = StorageStack(
        app, stack_id["storage"], config=config.storage, log_retention=retain_days, env=env
    )
    registry = RegistryStack(
        app, stack_id["registry"], name_prefix=prefix, model_family=config.model_family, env=env
    )
    client_names = ClientNames.for_prefix(prefix)
    asynchronous = config.serving.mode == "async"
    batch = config.client.batch_transform
    iam = IamStack(
        app,
        stack_id["iam"],
        channels=[channel.location for channel in storage.channels],
        training_output=storage.training_output,
        checkpoints=storage.checkpoints if config.training.use_spot else None,
        data_capture=storage.data_capture if config.serving.data_capture else None,
        async_inference=((storage.async_results, storage.async_failures) if asynchronous else None),
        batch_transform=storage.batch_transform if batch.enabled else None,
        client_input=storage.input,
        client_output=storage.output,
        client_names=client_names,
        repositories=[registry.training_image.repository, registry.inference_image.repository],
        endpoint_name=config.serving.endpoint_name,
        env=env,
    )
    iam.add_stack_dependency(registry, "the roles pull the registry's images")
    training = TrainingStack(
        app,
        stack_id["training"],
        name_prefix=prefix,
        config=config.training,
        role=iam.sagemaker_role,
        image_uri=registry.training_image.image_uri,
        channels=storage.channels,
        data_version=storage.data_version,
        training_output=storage.training_output,
        checkpoints=storage.checkpoints,
        log_retention=retain_days,
        env=env,
    )
    training.add_stack_dependency(storage, "the dataset must be uploaded before training reads it")
    serving = ServingStack(
        app,
        stack_id["serving"],
        name_prefix=prefix,
        config=config.serving,
        role=iam.sagemaker_role,
        image_uri=registry.inference_image.image_uri,
        model_data_url=training.model_data_url,
        model_inputs_digest=training.model_inputs_digest,
        data_capture=storage.data_capture,
        async_results=storage.async_results,
        async_failures=storage.async_failures,
        alarm_emails=config.alarm_emails,
        log_retention=retain_days,
        env=env,
    )
    client = ClientStack(
        app,
        stack_id["client"],
        names=client_names,
        config=config.client,
        role_arn=iam.client_role.role_arn,
        input_bucket_name=storage.input_bucket.bucket_name,
        output_bucket_name=storage.output_bucket.bucket_name,
        endpoint_name=serving.endpoint_name,
        serving_mode=config.serving.mode,
        alarm_topic_arn=serving.alarm_topic.topic_arn,
        log_retention=retain_days,
        completions=(
            Completions(
                role_arn=iam.completion_role.role_arn,
                success_topic_arn=serving.async_topics.success.topic_arn,
                error_topic_arn=serving.async_topics.error.topic_arn,
            )
            if iam.completion_role and serving.async_topics
            else None
        ),
        transforms=(
            Transforms(
                role_arn=iam.transform_role.role_arn, staging_uri=storage.batch_transform.uri
            )
            if iam.transform_role
            else None
        ),
        env=env,
    )
    client.add_stack_dependency(serving, "the client calls the endpoint")
    if config.ci.enabled and config.ci.github_repository:
        CiStack(
            app,
            f"{prefix}-ci",
            name_prefix=prefix,
            config=config.ci,
            repository=config.ci.github_repository,
            env=env,
        )
    drop_implied_dependencies(app)
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return app


if __name__ == "__main__":
    build_app().synth()
