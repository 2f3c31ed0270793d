"""The SageMaker model, endpoint config and endpoint, with autoscaling and alarms."""

from __future__ import annotations

import re

from aws_cdk import CfnOutput, Duration, Stack
from aws_cdk import aws_applicationautoscaling as autoscaling
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct
from model_kit.serving.config import COMPILED_PREDICTOR, MAX_PAYLOAD_MB, TIMEOUT, WORKERS

from constructs_lib.alarm_topic import AlarmTopic, notify
from constructs_lib.async_topics import AsyncTopics
from constructs_lib.keys import stack_key
from constructs_lib.log_groups import stack_log_group
from constructs_lib.s3_location import S3Location
from stacks.config import ServingConfig

# Families whose instances bring local NVMe storage (e.g. ml.m5d, ml.g4dn, ml.g5).
INSTANCE_STORAGE_FAMILY = re.compile(r"^ml\.([a-z0-9]+dn?|g5|g6|g6e|p4de?|p5e?)\.")


def has_instance_storage(instance_type: str) -> bool:
    return bool(INSTANCE_STORAGE_FAMILY.match(instance_type))


# Blue/green deployments need the same variant name in the old and new endpoint config.
VARIANT_NAME = "AllTraffic"
# Set in the model's container environment; the model server ignores it. See ServingStack.
MODEL_INPUTS_VARIABLE = "MODEL_INPUTS_DIGEST"


class ServingStack(Stack):
    """Only the endpoint has a fixed name; CloudFormation names the model and endpoint config,
    so a new model replaces both cleanly and the endpoint switches over blue/green.

    `model_data_url` is a weak reference, which CloudFormation reads only when this stack's
    template changes. `model_inputs_digest` changes whenever anything that shapes the model
    does, so it is written into the model's container environment: a retrain changes this
    template too, the CLI deploys it, the reference is read again, and the model and endpoint
    config are replaced (the environment can only change by replacement).

    It also holds the app's alarm topic (`alarm_topic`), which every alarm notifies.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        name_prefix: str,
        config: ServingConfig,
        role: iam.IRole,
        image_uri: str,
        model_data_url: str,
        model_inputs_digest: str,
        data_capture: S3Location,
        async_results: S3Location,
        async_failures: S3Location,
        alarm_emails: tuple[str, ...],
        log_retention: logs.RetentionDays,
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.endpoint_name = config.endpoint_name
        self.alarm_topic = AlarmTopic(
            self, "AlarmTopic", alarm_name_prefix=f"{name_prefix}-", emails=alarm_emails
        ).topic
        serverless = config.mode == "serverless"
        asynchronous = config.mode == "async"
        environment = {
            WORKERS.variable: str(config.model_server_workers),
            COMPILED_PREDICTOR: str(config.compiled_predictor).lower(),
            TIMEOUT.variable: str(config.model_server_timeout_seconds),
            MODEL_INPUTS_VARIABLE: model_inputs_digest,
        }
        if asynchronous:
            # A whole input object is one request: as large as the server takes.
            environment[MAX_PAYLOAD_MB.variable] = str(MAX_PAYLOAD_MB.high)
        # Set by `async`: the topics the client's completion handler subscribes to.
        self.async_topics: AsyncTopics | None = None
        model = sagemaker.CfnModel(
            self,
            "Model",
            execution_role_arn=role.role_arn,
            # Serverless endpoints refuse network isolation (one of SageMaker's feature
            # exclusions for them); the model server makes no outbound calls either way.
            enable_network_isolation=not serverless,
            primary_container=sagemaker.CfnModel.ContainerDefinitionProperty(
                image=image_uri,
                model_data_url=model_data_url,
                mode="SingleModel",
                environment=environment,
            ),
        )
        async_config = None
        if asynchronous:
            self.async_topics = AsyncTopics(self, "AsyncTopics", publisher_role_arn=role.role_arn)
            async_config = self._async_inference(
                config, async_results, async_failures, self.async_topics
            )
        endpoint_config = sagemaker.CfnEndpointConfig(
            self,
            "EndpointConfig",
            # A serverless endpoint has no volumes of ours to encrypt.
            kms_key_id=None if serverless else self._volume_key(config.instance_type),
            production_variants=[self._variant(config, model.attr_model_name)],
            data_capture_config=self._data_capture(config, data_capture),
            async_inference_config=async_config,
        )
        alarms = self._alarms(config)
        for alarm in alarms:
            notify(alarm, self.alarm_topic)
        # SageMaker's own name for the endpoint's container logs. Created before the endpoint,
        # so SageMaker does not create it without a retention; deleted after it.
        endpoint_logs = stack_log_group(
            self,
            "EndpointLogs",
            retention=log_retention,
            name=f"/aws/sagemaker/Endpoints/{config.endpoint_name}",
        )
        endpoint = sagemaker.CfnEndpoint(
            self,
            "Endpoint",
            endpoint_name=config.endpoint_name,
            endpoint_config_name=endpoint_config.attr_endpoint_config_name,
            # Keep the instance count the autoscaler chose when a new model rolls out. A
            # serverless variant has no count, and retaining would keep its old memory size.
            retain_all_variant_properties=not serverless,
            exclude_retained_variant_properties=[
                sagemaker.CfnEndpoint.VariantPropertyProperty(
                    variant_property_type="DataCaptureConfig"
                )
            ],
            deployment_config=sagemaker.CfnEndpoint.DeploymentConfigProperty(
                blue_green_update_policy=sagemaker.CfnEndpoint.BlueGreenUpdatePolicyProperty(
                    traffic_routing_configuration=sagemaker.CfnEndpoint.TrafficRoutingConfigProperty(
                        type="ALL_AT_ONCE",
                        wait_interval_in_seconds=config.blue_green_wait_seconds,
                    ),
                    termination_wait_in_seconds=config.blue_green_wait_seconds,
                ),
                auto_rollback_configuration=sagemaker.CfnEndpoint.AutoRollbackConfigProperty(
                    alarms=[
                        sagemaker.CfnEndpoint.AlarmProperty(alarm_name=alarm.alarm_name)
                        for alarm in alarms
                    ]
                ),
            ),
        )
        endpoint.node.add_dependency(endpoint_logs)
        if asynchronous:
            self._backlog_scaling(config, endpoint)
        elif config.autoscaling.enabled and not serverless:
            self._autoscaling(config, endpoint)
        CfnOutput(self, "EndpointName", value=config.endpoint_name)
        CfnOutput(self, "ModelName", value=model.attr_model_name)

    @staticmethod
    def _variant(
        config: ServingConfig, model_name: str
    ) -> sagemaker.CfnEndpointConfig.ProductionVariantProperty:
        """Instances (`realtime`), or memory and concurrency that SageMaker scales, down to
        nothing while idle (`serverless`)."""
        if config.mode == "serverless":
            return sagemaker.CfnEndpointConfig.ProductionVariantProperty(
                variant_name=VARIANT_NAME,
                model_name=model_name,
                initial_variant_weight=1.0,
                serverless_config=sagemaker.CfnEndpointConfig.ServerlessConfigProperty(
                    max_concurrency=config.serverless.max_concurrency,
                    memory_size_in_mb=config.serverless.memory_mb,
                ),
            )
        return sagemaker.CfnEndpointConfig.ProductionVariantProperty(
            variant_name=VARIANT_NAME,
            model_name=model_name,
            instance_type=config.instance_type,
            initial_instance_count=config.initial_instance_count,
            initial_variant_weight=1.0,
        )

    def _volume_key(self, instance_type: str) -> str | None:
        """A rotating key for the instances' storage volumes, unless they encrypt their own:
        instances with local NVMe storage do that in hardware and refuse a KMS key.
        """
        if has_instance_storage(instance_type):
            return None
        # Only the endpoint's ephemeral volumes use it.
        return stack_key(
            self,
            "EndpointVolumeKey",
            description="Encrypts the endpoint instances' storage volumes.",
        ).key_arn

    def _data_capture(
        self, config: ServingConfig, location: S3Location
    ) -> sagemaker.CfnEndpointConfig.DataCaptureConfigProperty | None:
        if not config.data_capture:
            return None
        return sagemaker.CfnEndpointConfig.DataCaptureConfigProperty(
            enable_capture=True,
            initial_sampling_percentage=config.data_capture_sampling_percentage,
            destination_s3_uri=location.uri,
            capture_options=[
                sagemaker.CfnEndpointConfig.CaptureOptionProperty(capture_mode=mode)
                for mode in ("Input", "Output")
            ],
        )

    def _alarms(self, config: ServingConfig) -> list[cloudwatch.Alarm]:
        """5xx errors and p99 model latency: they page, and they roll a deployment back."""
        dimensions = {"EndpointName": config.endpoint_name, "VariantName": VARIANT_NAME}
        errors, latency = (
            cloudwatch.Metric(
                namespace="AWS/SageMaker",
                metric_name=name,
                dimensions_map=dimensions,
                statistic=statistic,
                period=Duration.minutes(1),
            )
            for name, statistic in (("Invocation5XXErrors", "Sum"), ("ModelLatency", "p99"))
        )
        return [
            cloudwatch.Alarm(
                self,
                "Invocation5xxAlarm",
                metric=errors,
                threshold=config.alarm_5xx_errors_threshold,
                evaluation_periods=1,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
                alarm_description=f"{config.endpoint_name} returned 5xx errors.",
            ),
            cloudwatch.Alarm(
                self,
                "ModelLatencyAlarm",
                metric=latency,
                # ModelLatency is reported in microseconds.
                threshold=config.alarm_model_latency_p99_ms * 1000,
                evaluation_periods=3,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
                alarm_description=(
                    f"{config.endpoint_name} p99 model latency above "
                    f"{config.alarm_model_latency_p99_ms} ms."
                ),
            ),
        ]

    @staticmethod
    def _async_inference(
        config: ServingConfig, results: S3Location, failures: S3Location, topics: AsyncTopics
    ) -> sagemaker.CfnEndpointConfig.AsyncInferenceConfigProperty:
        """Where results and failures go, whom SageMaker tells, and how many invocations
        one instance runs at once."""
        return sagemaker.CfnEndpointConfig.AsyncInferenceConfigProperty(
            output_config=sagemaker.CfnEndpointConfig.AsyncInferenceOutputConfigProperty(
                s3_output_path=results.uri,
                s3_failure_path=failures.uri,
                notification_config=sagemaker.CfnEndpointConfig.AsyncInferenceNotificationConfigProperty(
                    success_topic=topics.success.topic_arn,
                    error_topic=topics.error.topic_arn,
                ),
            ),
            client_config=sagemaker.CfnEndpointConfig.AsyncInferenceClientConfigProperty(
                max_concurrent_invocations_per_instance=(
                    config.asynchronous.max_concurrent_invocations_per_instance
                )
            ),
        )

    def _backlog_scaling(self, config: ServingConfig, endpoint: sagemaker.CfnEndpoint) -> None:
        """Instances follow the requests waiting for them, down to none while none wait: a
        target per instance, and one instance as soon as requests wait with no instance."""
        settings = config.asynchronous
        target = self._scalable_target(
            config, endpoint, settings.min_capacity, settings.max_capacity
        )

        def endpoint_metric(name: str) -> cloudwatch.Metric:
            return cloudwatch.Metric(
                namespace="AWS/SageMaker",
                metric_name=name,
                dimensions_map={"EndpointName": config.endpoint_name},
                statistic="Average",
                period=Duration.minutes(1),
            )

        target.scale_to_track_metric(
            "BacklogPerInstance",
            target_value=settings.target_backlog_per_instance,
            custom_metric=endpoint_metric("ApproximateBacklogSizePerInstance"),
            scale_in_cooldown=Duration.minutes(5),
            scale_out_cooldown=Duration.minutes(1),
        )
        target.scale_on_metric(
            "FromZero",
            metric=endpoint_metric("HasBacklogWithoutCapacity"),
            scaling_steps=[
                autoscaling.ScalingInterval(upper=0, change=0),
                autoscaling.ScalingInterval(lower=1, change=1),
            ],
            adjustment_type=autoscaling.AdjustmentType.CHANGE_IN_CAPACITY,
            cooldown=Duration.minutes(1),
        )

    def _autoscaling(self, config: ServingConfig, endpoint: sagemaker.CfnEndpoint) -> None:
        target = self._scalable_target(
            config, endpoint, config.autoscaling.min_capacity, config.autoscaling.max_capacity
        )
        target.scale_to_track_metric(
            "InvocationsPerInstance",
            target_value=config.autoscaling.target_invocations_per_instance,
            predefined_metric=autoscaling.PredefinedMetric.SAGEMAKER_VARIANT_INVOCATIONS_PER_INSTANCE,
        )

    def _scalable_target(
        self,
        config: ServingConfig,
        endpoint: sagemaker.CfnEndpoint,
        min_capacity: int,
        max_capacity: int,
    ) -> autoscaling.ScalableTarget:
        target = autoscaling.ScalableTarget(
            self,
            "VariantScaling",
            service_namespace=autoscaling.ServiceNamespace.SAGEMAKER,
            resource_id=f"endpoint/{config.endpoint_name}/variant/{VARIANT_NAME}",
            scalable_dimension="sagemaker:variant:DesiredInstanceCount",
            min_capacity=min_capacity,
            max_capacity=max_capacity,
            # Application Auto Scaling's own service-linked role for SageMaker variants; a
            # role CDK would otherwise create holds no permissions.
            role=iam.Role.from_role_arn(
                self,
                "AutoScalingServiceLinkedRole",
                self.format_arn(
                    service="iam",
                    region="",
                    resource="role",
                    resource_name=(
                        "aws-service-role/sagemaker.application-autoscaling.amazonaws.com/"
                        "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint"
                    ),
                ),
                mutable=False,
            ),
        )
        target.node.add_dependency(endpoint)
        return target
