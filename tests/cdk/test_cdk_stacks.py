"""Fine-grained assertions on what matters in each stack's synthesized template."""

from __future__ import annotations

import json
import re
from graphlib import TopologicalSorter

import pytest
from aws_cdk.assertions import Match, Template

from app import STACKS


def statements(template: dict, role_prefix: str) -> list[dict]:
    """All policy statements attached to the role whose logical id starts with the prefix."""
    found = []
    for resource in template["Resources"].values():
        if resource["Type"] != "AWS::IAM::Policy":
            continue
        roles = json.dumps(resource["Properties"]["Roles"])
        if f'"{role_prefix}' in roles:
            found.extend(resource["Properties"]["PolicyDocument"]["Statement"])
    return found


def resources_by_action(template: dict, role_prefix: str) -> dict[str, str]:
    """Each action the role is granted, with every resource it is granted on, flattened."""
    by_action: dict[str, str] = {}
    for statement in statements(template, role_prefix):
        for action in as_list(statement["Action"]):
            by_action[action] = by_action.get(action, "") + flat(statement["Resource"])
    return by_action


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def flat(value) -> str:
    return json.dumps(value, sort_keys=True)


# -- the app as a whole ----------------------------------------------------------------------


def test_six_stacks_each_deployable(synthesized):
    assert sorted(synthesized.templates) == sorted(f"custom-sm-{name}" for name in STACKS)
    for name, template in synthesized.templates.items():
        assert template["Resources"], f"{name} has no resources; CloudFormation refuses it"


def test_stacks_deploy_in_dependency_order_without_a_cycle(synthesized):
    artifacts = synthesized.manifest["artifacts"]
    graph = {
        name: [dep for dep in artifact.get("dependencies", []) if dep in synthesized.templates]
        for name, artifact in artifacts.items()
        if name in synthesized.templates
    }
    assert graph["custom-sm-storage"] == []
    order = list(TopologicalSorter(graph).static_order())
    assert order.index("custom-sm-storage") < order.index("custom-sm-training")
    assert order.index("custom-sm-training") < order.index("custom-sm-serving")
    assert order.index("custom-sm-serving") < order.index("custom-sm-client")
    assert order.index("custom-sm-iam") < order.index("custom-sm-training")


def test_cross_stack_references_are_weak(synthesized):
    """No export locks: a new model or image must deploy without touching an export."""
    for name, template in synthesized.templates.items():
        assert "Fn::ImportValue" not in flat(template), name
        assert "Export" not in flat(template.get("Outputs", {})), name
    serving = synthesized.resources("serving", "AWS::SageMaker::Model")
    (model,) = serving.values()
    assert model["Properties"]["PrimaryContainer"]["ModelDataUrl"]["Fn::GetStackOutput"][
        "StackName"
    ] == ("custom-sm-training")
    assert "Fn::GetStackOutput" not in flat(synthesized.template("storage"))


def test_no_aws_managed_full_access_policy_anywhere(synthesized):
    for name, template in synthesized.templates.items():
        assert "FullAccess" not in flat(template), name


def test_lambdas_run_the_newest_python_runtime(synthesized):
    functions = {
        f"{stack}/{logical_id}": resource["Properties"].get("Runtime")
        for stack in STACKS
        for logical_id, resource in synthesized.resources(stack, "AWS::Lambda::Function").items()
    }
    ours = {key: runtime for key, runtime in functions.items() if "python" in str(runtime)}
    assert ours["client/Function76856677"] == "python3.14"
    assert [k for k in ours if k.startswith("training/TrainingJob")] and all(
        runtime == "python3.14" for k, runtime in ours.items() if k.startswith("training/")
    )


# -- storage ----------------------------------------------------------------------------------


def test_buckets_are_encrypted_private_logged_and_ssl_only(synthesized):
    template = synthesized.template("storage")
    buckets = synthesized.resources("storage", "AWS::S3::Bucket")
    assert len(buckets) == 5
    for logical_id, bucket in buckets.items():
        props = bucket["Properties"]
        assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0][
            "ServerSideEncryptionByDefault"
        ] == {"SSEAlgorithm": "AES256"}, logical_id
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }, logical_id
        if not logical_id.startswith("AccessLogs"):
            assert props["LoggingConfiguration"]["LogFilePrefix"], logical_id
    policies = synthesized.resources("storage", "AWS::S3::BucketPolicy")
    ssl_denied = {
        flat(policy["Properties"]["Bucket"])
        for policy in policies.values()
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        if statement["Effect"] == "Deny"
        and statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    }
    assert len(ssl_denied) == 5
    Template.from_json(template).resource_count_is("Custom::CDKBucketDeployment", 2)


def test_data_and_models_are_versioned_and_retained(synthesized):
    buckets = synthesized.resources("storage", "AWS::S3::Bucket")
    for prefix in ("Data", "Models", "InferenceInput"):
        (bucket,) = [b for logical_id, b in buckets.items() if logical_id.startswith(prefix)]
        assert bucket["Properties"]["VersioningConfiguration"] == {"Status": "Enabled"}
    for prefix in ("Data", "Models"):
        (bucket,) = [b for logical_id, b in buckets.items() if logical_id.startswith(prefix)]
        assert bucket["DeletionPolicy"] == "Retain"
        assert bucket["UpdateReplacePolicy"] == "Retain"


def test_scratch_buckets_expire_objects(synthesized):
    buckets = synthesized.resources("storage", "AWS::S3::Bucket")
    for prefix in ("InferenceInput", "InferenceOutput", "AccessLogs"):
        (bucket,) = [b for logical_id, b in buckets.items() if logical_id.startswith(prefix)]
        (rule,) = bucket["Properties"]["LifecycleConfiguration"]["Rules"]
        assert rule["ExpirationInDays"] >= 1


def test_checkpoints_async_and_batch_results_expire_and_nothing_else_in_the_models_bucket(
    synthesized,
):
    buckets = synthesized.resources("storage", "AWS::S3::Bucket")
    (models,) = [b for logical_id, b in buckets.items() if logical_id.startswith("Models")]
    rules = models["Properties"]["LifecycleConfiguration"]["Rules"]
    expiring = {rule["Prefix"]: rule for rule in rules if "ExpirationInDays" in rule}
    assert expiring == {
        "checkpoints/": {
            "ExpirationInDays": 7,
            "Id": "ExpireCheckpoints",
            "Prefix": "checkpoints/",
            "Status": "Enabled",
        },
        "async-inference/": {
            "ExpirationInDays": 30,
            "Id": "ExpireAsyncInference",
            "Prefix": "async-inference/",
            "Status": "Enabled",
        },
        "batch-transform/": {
            "ExpirationInDays": 30,
            "Id": "ExpireBatchTransform",
            "Prefix": "batch-transform/",
            "Status": "Enabled",
        },
    }


def test_bundled_dataset_goes_to_training_and_validation_prefixes(synthesized):
    deployments = synthesized.resources("storage", "Custom::CDKBucketDeployment")
    prefixes = sorted(d["Properties"]["DestinationBucketKeyPrefix"] for d in deployments.values())
    assert prefixes == ["training/", "validation/"]
    uploader = statements(synthesized.template("storage"), "BundledDatasetUploaderRole")
    written = [
        r
        for s in uploader
        if "s3:PutObject" in as_list(s["Action"])
        for r in as_list(s["Resource"])
    ]
    assert sorted(flat(r).split("/")[-2] for r in written) == ["training", "validation"]


def test_an_existing_dataset_is_read_in_place_and_versioned_by_config(tmp_path_factory):
    from .cdk_synth import context_with, synthesize

    existing = synthesize(
        tmp_path_factory.mktemp("existing-dataset"),
        context_with(
            **{
                "config.storage.dataset.training_uri": "s3://team-data/churn/train",
                "config.storage.dataset.version": "2026-01-15",
            }
        ),
    )
    assert "Custom::CDKBucketDeployment" not in flat(existing.template("storage"))
    (job,) = existing.resources("training", "Custom::SageMakerTrainingJob").values()
    assert job["Properties"]["Channels"] == [
        {"ChannelName": "training", "S3Uri": "s3://team-data/churn/train/"}
    ]
    assert job["Properties"]["DataVersion"] == "2026-01-15"
    granted = statements(existing.template("iam"), "SageMakerExecutionRole")
    reads = flat([s["Resource"] for s in granted if "s3:GetObject" in as_list(s["Action"])])
    assert ':s3:::team-data/churn/train/*"' in reads
    (listing,) = [
        s for s in granted if s["Action"] == "s3:ListBucket" and "team-data" in flat(s["Resource"])
    ]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["churn/train/*"]}}


# -- registry ---------------------------------------------------------------------------------


def test_images_are_amd64_builds_of_the_two_dockerfiles(synthesized):
    assets = json.loads((synthesized.outdir / "custom-sm-registry.assets.json").read_text())
    sources = [image["source"] for image in assets["dockerImages"].values()]
    assert sorted(source["dockerFile"] for source in sources) == [
        "Dockerfile.inference",
        "Dockerfile.training",
    ]
    assert {source["platform"] for source in sources} == {"linux/amd64"}
    for source in sources:
        staged = synthesized.outdir / source["directory"]
        assert not list(staged.rglob("__pycache__")), "caches leaked into the build context"
    parameters = synthesized.resources("registry", "AWS::SSM::Parameter")
    assert sorted(p["Properties"]["Name"] for p in parameters.values()) == [
        "/custom-sm/images/inference",
        "/custom-sm/images/training",
    ]


def image_hashes(containers_dir, outdir, model_family="lightgbm") -> dict[str, str]:
    """Synthesizes the registry stack alone on `containers_dir`: {Dockerfile: asset hash}."""
    import aws_cdk as cdk

    from stacks.registry_stack import RegistryStack

    app = cdk.App(outdir=str(outdir))
    RegistryStack(
        app,
        "registry",
        name_prefix="test",
        model_family=model_family,
        containers_dir=containers_dir,
    )
    app.synth()
    assets = json.loads((outdir / "registry.assets.json").read_text())
    return {
        image["source"]["dockerFile"]: digest for digest, image in assets["dockerImages"].items()
    }


def test_image_hashes_ignore_caches_and_the_other_images_files(tmp_path):
    """A model-server change must not retrain the model; caches and the C parser compiled
    on this machine (the image compiles its own) must change nothing."""
    import shutil

    from stacks.registry_stack import CONTAINERS_DIR

    context = tmp_path / "containers"
    shutil.copytree(CONTAINERS_DIR, context, ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    clean = image_hashes(context, tmp_path / "clean")

    (context / "model_kit" / "__pycache__").mkdir()
    (context / "model_kit" / "__pycache__" / "paths.cpython-313.pyc").write_bytes(b"\0cache")
    (context / ".venv" / "bin").mkdir(parents=True)
    (context / ".venv" / "bin" / "python").write_text("venv")
    (context / ".pytest_cache").mkdir()
    (context / ".pytest_cache" / "README.md").write_text("cache")
    (context / "model_kit" / "serving" / "_native.so").write_bytes(b"\x7fELF built here")
    assert image_hashes(context, tmp_path / "caches") == clean

    (context / "model_kit" / "serving" / "extra.py").write_text("SERVER_ONLY = 1\n")
    server_changed = image_hashes(context, tmp_path / "serving")
    assert server_changed["Dockerfile.training"] == clean["Dockerfile.training"]
    assert server_changed["Dockerfile.inference"] != clean["Dockerfile.inference"]

    (context / "model_kit" / "training" / "extra.py").write_text("TRAINING_ONLY = 1\n")
    both_changed = image_hashes(context, tmp_path / "training")
    assert both_changed["Dockerfile.training"] != clean["Dockerfile.training"]
    assert both_changed["Dockerfile.inference"] == server_changed["Dockerfile.inference"]

    (context / "model_kit" / "shared.py").write_text("SHARED = 1\n")
    shared_changed = image_hashes(context, tmp_path / "shared")
    assert shared_changed["Dockerfile.training"] != both_changed["Dockerfile.training"]
    assert shared_changed["Dockerfile.inference"] != both_changed["Dockerfile.inference"]

    # What only this family's training installs (its compiler) changes the training image.
    (context / "requirements-training-lightgbm.txt").write_text("lleaves==0.0.0\n")
    compiler_changed = image_hashes(context, tmp_path / "compiler")
    assert compiler_changed["Dockerfile.training"] != shared_changed["Dockerfile.training"]
    assert compiler_changed["Dockerfile.inference"] == shared_changed["Dockerfile.inference"]

    # Another family's code or library changes neither image of this one; its own, both.
    (context / "model_kit" / "families" / "xgboost_trees.py").write_text("CHANGED = 1\n")
    (context / "requirements-xgboost.txt").write_text("xgboost-cpu==0.0.0\n")
    (context / "requirements-training-xgboost.txt").write_text("treelite==0.0.0\n")
    assert image_hashes(context, tmp_path / "other") == compiler_changed
    xgboost_images = image_hashes(context, tmp_path / "xgboost", model_family="xgboost")
    assert set(xgboost_images.values()).isdisjoint(compiler_changed.values())


def test_each_staged_build_context_holds_only_its_image_files(synthesized):
    assets = json.loads((synthesized.outdir / "custom-sm-registry.assets.json").read_text())
    for image in assets["dockerImages"].values():
        staged = synthesized.outdir / image["source"]["directory"]
        names = {path.relative_to(staged).as_posix() for path in staged.rglob("*")}
        assert "model_kit/model_io.py" in names
        if image["source"]["dockerFile"] == "Dockerfile.training":
            assert "bin/train" in names
            assert not any(name.startswith(("model_kit/serving", "bin/serve")) for name in names)
        else:
            assert "bin/serve" in names
            assert not any(name.startswith(("model_kit/training", "bin/train")) for name in names)
            assert not any(name.startswith("requirements-training") for name in names)


# -- iam --------------------------------------------------------------------------------------


def test_sagemaker_role_is_least_privilege(synthesized):
    template = synthesized.template("iam")
    Template.from_json(template).has_resource_properties(
        "AWS::IAM::Role",
        {
            "AssumeRolePolicyDocument": {
                "Statement": [
                    Match.object_like(
                        {"Principal": {"Service": "sagemaker.amazonaws.com"}, "Effect": "Allow"}
                    )
                ]
            }
        },
    )
    granted = statements(template, "SageMakerExecutionRole")
    actions = sorted({action for s in granted for action in as_list(s["Action"])})
    assert actions == [
        "cloudwatch:PutMetricData",
        "ecr:BatchCheckLayerAvailability",
        "ecr:BatchGetImage",
        "ecr:GetAuthorizationToken",
        "ecr:GetDownloadUrlForLayer",
        "logs:CreateLogGroup",
        "logs:CreateLogStream",
        "logs:DescribeLogStreams",
        "logs:PutLogEvents",
        "s3:AbortMultipartUpload",
        "s3:GetObject",
        "s3:ListBucket",
        "s3:PutObject",
    ]
    star = [s for s in granted if s["Resource"] == "*"]
    assert sorted(action for s in star for action in as_list(s["Action"])) == [
        "cloudwatch:PutMetricData",
        "ecr:GetAuthorizationToken",
    ]
    (metrics,) = [s for s in star if s["Action"] == "cloudwatch:PutMetricData"]
    assert metrics["Condition"] == {"StringLike": {"cloudwatch:namespace": "/aws/sagemaker/*"}}
    reads = flat([s["Resource"] for s in granted if "s3:GetObject" in as_list(s["Action"])])
    for prefix in ("/training/*", "/validation/*", "/training-output/*"):
        assert prefix in reads
    writes = flat([s["Resource"] for s in granted if "s3:PutObject" in as_list(s["Action"])])
    assert "/training-output/*" in writes
    assert "/training/*" not in writes
    lists = [s for s in granted if s["Action"] == "s3:ListBucket"]
    assert all("s3:prefix" in s["Condition"]["StringLike"] for s in lists)


def test_client_role_is_scoped_to_its_buckets_endpoint_queue_and_logs(synthesized):
    by_action = resources_by_action(synthesized.template("iam"), "ClientRole")
    assert sorted(by_action) == [
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "s3:AbortMultipartUpload",
        "s3:DeleteObject",
        "s3:GetObject",
        "s3:GetObjectVersion",
        "s3:ListBucket",
        "s3:PutObject",
        "sagemaker:CreateTransformJob",
        "sagemaker:DescribeEndpoint",
        "sagemaker:DescribeEndpointConfig",
        "sagemaker:InvokeEndpoint",
        "sqs:SendMessage",
    ]
    # Big files: stage a job's request, start it on the model the endpoint serves.
    assert by_action["sagemaker:CreateTransformJob"].endswith(
        ':transform-job/custom-sm-batch-*"]]}'
    )
    assert by_action["sagemaker:DescribeEndpoint"].endswith(
        ':endpoint/custom-sm-model-endpoint"]]}'
    )
    assert by_action["sagemaker:DescribeEndpointConfig"].endswith(':endpoint-config/*"]]}')
    assert "PublishOutputRefModels" in by_action["s3:PutObject"]
    assert "/batch-transform/*" in by_action["s3:PutObject"]
    assert "PublishOutputRefModels" not in by_action["s3:GetObject"]
    assert "PublishOutputRefInferenceInput" in by_action["s3:GetObject"]
    assert "PublishOutputRefInferenceInput" not in by_action["s3:PutObject"]
    assert "PublishOutputRefInferenceInput" not in by_action["s3:DeleteObject"]
    assert "PublishOutputRefInferenceOutput" in by_action["s3:PutObject"]
    for bucket in ("PublishOutputRefInferenceInput", "PublishOutputRefInferenceOutput"):
        assert bucket in by_action["s3:ListBucket"]
    assert by_action["sagemaker:InvokeEndpoint"].endswith(':endpoint/custom-sm-model-endpoint"]]}')
    assert by_action["sqs:SendMessage"].endswith(':custom-sm-client-failures"]]}')
    assert "log-group:/aws/lambda/custom-sm-client:*" in by_action["logs:PutLogEvents"]


# -- training ---------------------------------------------------------------------------------


def test_training_job_properties(synthesized):
    (job,) = synthesized.resources("training", "Custom::SageMakerTrainingJob").values()
    props = job["Properties"]
    assert props["InstanceType"] == "ml.m4.xlarge"
    assert props["VolumeSizeInGB"] == "5"
    assert props["MaxRuntimeInSeconds"] == "1200"
    assert props["UseSpot"] == "false"
    assert "MaxWaitTimeInSeconds" not in props
    assert props["HyperParameters"]["learning_rate"] == "0.1"
    assert {"Name": "Validation Accuracy", "Regex": "val_accuracy: ([0-9\\.]+)"} in props[
        "MetricDefinitions"
    ]
    assert [c["ChannelName"] for c in props["Channels"]] == ["training", "validation"]
    assert props["DataVersion"].startswith("bundled-")
    assert "/training-output/" in flat(props["OutputS3Uri"])
    assert re.fullmatch(r"custom-sm-[0-9a-f]{16}", props["JobNameStem"])
    # Starting a job takes seconds; the waiting is the wait condition's.
    assert props["ServiceTimeout"] == "300"


def test_the_deploy_waits_for_the_job_on_a_wait_condition(synthesized):
    """Job → wait condition (1200 s run + 600 s start-up) → result, in that order; the
    rule that signals it exists before the job starts."""
    template = synthesized.template("training")
    resources = template["Resources"]
    (job_id,) = synthesized.resources("training", "Custom::SageMakerTrainingJob")
    (wait_id,) = synthesized.resources("training", "AWS::CloudFormation::WaitCondition")
    (handle_id,) = synthesized.resources("training", "AWS::CloudFormation::WaitConditionHandle")
    (result_id,) = synthesized.resources("training", "Custom::SageMakerTrainingResult")
    (rule_id,) = synthesized.resources("training", "AWS::Events::Rule")
    wait = resources[wait_id]
    assert wait["Properties"] == {"Count": 1, "Handle": {"Ref": handle_id}, "Timeout": "1800"}
    assert wait["DependsOn"] == [job_id]
    assert resources[result_id]["DependsOn"] == [wait_id]
    assert resources[job_id]["Properties"]["WaitHandle"] == {"Ref": handle_id}
    assert rule_id in resources[job_id]["DependsOn"]
    # Named by what they wait for: a wait condition cannot be updated.
    assert wait_id[len("TrainingJobWait") :][:8] == handle_id[len("TrainingJobHandle") :][:8]
    outputs = template["Outputs"]
    assert outputs["ModelDataUrl"]["Value"] == {"Fn::GetAtt": [result_id, "ModelDataUrl"]}
    assert outputs["FinalMetrics"]["Value"] == {"Fn::GetAtt": [result_id, "FinalMetrics"]}


def test_the_rule_hands_the_signal_lambda_this_deploys_job_and_handle(synthesized):
    resources = synthesized.template("training")["Resources"]
    (job,) = synthesized.resources("training", "Custom::SageMakerTrainingJob").values()
    (handle_id,) = synthesized.resources("training", "AWS::CloudFormation::WaitConditionHandle")
    (rule,) = synthesized.resources("training", "AWS::Events::Rule").values()
    stem = job["Properties"]["JobNameStem"]
    assert rule["Properties"]["EventPattern"] == {
        "source": ["aws.sagemaker"],
        "detail-type": ["SageMaker Training Job State Change"],
        "detail": {
            "TrainingJobName": [{"prefix": f"{stem}-"}],
            "TrainingJobStatus": ["Completed", "Failed", "Stopped"],
        },
    }
    (target,) = rule["Properties"]["Targets"]
    function = resources[target["Arn"]["Fn::GetAtt"][0]]
    assert function["Properties"]["Handler"] == "index.on_state_change"
    transformer = target["InputTransformer"]
    assert transformer["InputPathsMap"] == {"detail-TrainingJobName": "$.detail.TrainingJobName"}
    assert transformer["InputTemplate"] == {
        "Fn::Join": [
            "",
            [
                '{"TrainingJobName":<detail-TrainingJobName>,"WaitHandle":"',
                {"Ref": handle_id},
                '"}',
            ],
        ]
    }


def test_the_signal_lambda_may_only_describe_this_apps_jobs(synthesized):
    granted = statements(synthesized.template("training"), "TrainingJobStateChangeRole")
    (jobs,) = [s for s in granted if "sagemaker:DescribeTrainingJob" in as_list(s["Action"])]
    assert jobs["Action"] == "sagemaker:DescribeTrainingJob"
    assert ":training-job/custom-sm-*" in flat(jobs["Resource"])
    assert {a for s in granted for a in as_list(s["Action"])} == {
        "sagemaker:DescribeTrainingJob",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
    }


def test_training_handler_may_only_touch_this_apps_jobs(synthesized):
    granted = statements(synthesized.template("training"), "TrainingJobOnEventRole")
    (jobs,) = [s for s in granted if "sagemaker:CreateTrainingJob" in as_list(s["Action"])]
    assert sorted(jobs["Action"]) == [
        "sagemaker:CreateTrainingJob",
        "sagemaker:DescribeTrainingJob",
        "sagemaker:StopTrainingJob",
    ]
    assert ":training-job/custom-sm-*" in flat(jobs["Resource"])
    (pass_role,) = [s for s in granted if s["Action"] == "iam:PassRole"]
    assert pass_role["Condition"] == {
        "StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}
    }
    assert "SageMakerExecutionRole" in flat(pass_role["Resource"])


def test_spot_training_config_reaches_the_job(tmp_path_factory):
    from .cdk_synth import context_with, synthesize

    spot = synthesize(
        tmp_path_factory.mktemp("spot"),
        context_with(
            **{
                "config.training.use_spot": "true",
                "config.training.max_wait_seconds": "2400",
                "config.serving.data_capture": "true",
            }
        ),
    )
    (job,) = spot.resources("training", "Custom::SageMakerTrainingJob").values()
    assert job["Properties"]["UseSpot"] == "true"
    assert job["Properties"]["MaxWaitTimeInSeconds"] == "2400"
    assert "/checkpoints/" in flat(job["Properties"]["CheckpointS3Uri"])
    (wait,) = spot.resources("training", "AWS::CloudFormation::WaitCondition").values()
    assert wait["Properties"]["Timeout"] == str(2400 + 600)
    writes = flat(
        [
            s["Resource"]
            for s in statements(spot.template("iam"), "SageMakerExecutionRole")
            if "s3:PutObject" in as_list(s["Action"])
        ]
    )
    assert "/checkpoints/*" in writes
    assert "/data-capture/*" in writes
    (config,) = spot.resources("serving", "AWS::SageMaker::EndpointConfig").values()
    assert config["Properties"]["DataCaptureConfig"]["EnableCapture"] is True


# -- serving ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def serverless(tmp_path_factory):
    from .cdk_synth import context_with, synthesize

    return synthesize(
        tmp_path_factory.mktemp("serverless"), context_with(**{"config.serving.mode": "serverless"})
    )


def test_a_serverless_endpoint_has_memory_and_concurrency_instead_of_instances(serverless):
    (config,) = serverless.resources("serving", "AWS::SageMaker::EndpointConfig").values()
    assert config["Properties"] == {
        "ProductionVariants": [
            {
                "InitialVariantWeight": 1,
                "ModelName": {"Fn::GetAtt": ["Model", "ModelName"]},
                "ServerlessConfig": {"MaxConcurrency": 10, "MemorySizeInMB": 2048},
                "VariantName": "AllTraffic",
            }
        ]
    }
    assert not serverless.resources("serving", "AWS::ApplicationAutoScaling::ScalableTarget")
    keys = serverless.resources("serving", "AWS::KMS::Key")
    assert [key for key in keys if not key.startswith("AlarmTopic")] == [], "no volume key"
    (model,) = serverless.resources("serving", "AWS::SageMaker::Model").values()
    assert model["Properties"]["EnableNetworkIsolation"] is False
    (endpoint,) = serverless.resources("serving", "AWS::SageMaker::Endpoint").values()
    assert endpoint["Properties"]["RetainAllVariantProperties"] is False
    rollback = endpoint["Properties"]["DeploymentConfig"]["AutoRollbackConfiguration"]["Alarms"]
    assert len(rollback) == 2


def test_a_serverless_endpoints_client_sends_smaller_requests_and_retries_longer(serverless):
    (function,) = [
        f
        for f in serverless.resources("client", "AWS::Lambda::Function").values()
        if f["Properties"]["Handler"] == "lambda_function.lambda_handler"
    ]
    variables = function["Properties"]["Environment"]["Variables"]
    assert variables["SERVING_MODE"] == "serverless"
    assert variables["MAX_REQUEST_BYTES"] == str(3 * 1024 * 1024)


def test_the_serving_mode_changes_the_serving_and_client_stacks_only(synthesized, serverless):
    changed = [s for s in STACKS if serverless.template(s) != synthesized.template(s)]
    assert changed == ["serving", "client"]


@pytest.fixture(scope="module")
def asynchronous(tmp_path_factory):
    from .cdk_synth import context_with, synthesize

    return synthesize(
        tmp_path_factory.mktemp("async"), context_with(**{"config.serving.mode": "async"})
    )


def test_an_asynchronous_endpoint_writes_results_to_s3_and_notifies_two_topics(asynchronous):
    template = asynchronous.template("serving")
    (config,) = asynchronous.resources("serving", "AWS::SageMaker::EndpointConfig").values()
    settings = config["Properties"]["AsyncInferenceConfig"]
    assert settings["ClientConfig"] == {"MaxConcurrentInvocationsPerInstance": 4}
    output = settings["OutputConfig"]
    assert flat(output["S3OutputPath"]).endswith('"/async-inference/results/"]]}')
    assert flat(output["S3FailurePath"]).endswith('"/async-inference/failures/"]]}')
    topics = asynchronous.resources("serving", "AWS::SNS::Topic")
    notified = {output["NotificationConfig"][k]["Ref"] for k in ("SuccessTopic", "ErrorTopic")}
    assert notified <= set(topics)
    for topic_id in notified:
        assert "KmsMasterKeyId" in topics[topic_id]["Properties"]
    publishers = [
        statement
        for policy in asynchronous.resources("serving", "AWS::SNS::TopicPolicy").values()
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        if statement["Action"] == "sns:Publish"
        and statement["Effect"] == "Allow"
        and {t["Ref"] for t in policy["Properties"]["Topics"]} <= notified
    ]
    assert len(publishers) == 2
    for statement in publishers:
        assert "SageMakerExecutionRole" in flat(statement["Principal"])
    (model,) = asynchronous.resources("serving", "AWS::SageMaker::Model").values()
    environment = model["Properties"]["PrimaryContainer"]["Environment"]
    assert environment["SAGEMAKER_MAX_PAYLOAD_IN_MB"] == "100"
    assert model["Properties"]["EnableNetworkIsolation"] is True
    (key,) = [r for k, r in template["Resources"].items() if k.startswith("AsyncTopicsKey")]
    (role_grant,) = [
        statement
        for statement in key["Properties"]["KeyPolicy"]["Statement"]
        if "SageMakerExecutionRole" in flat(statement["Principal"])
    ]
    assert sorted(role_grant["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey*"]


def test_an_asynchronous_endpoint_scales_on_its_backlog_down_to_zero(asynchronous):
    (target,) = asynchronous.resources(
        "serving", "AWS::ApplicationAutoScaling::ScalableTarget"
    ).values()
    assert (target["Properties"]["MinCapacity"], target["Properties"]["MaxCapacity"]) == (0, 2)
    policies = asynchronous.resources("serving", "AWS::ApplicationAutoScaling::ScalingPolicy")
    tracking = [
        p["Properties"]["TargetTrackingScalingPolicyConfiguration"]
        for p in policies.values()
        if p["Properties"]["PolicyType"] == "TargetTrackingScaling"
    ]
    assert [t["CustomizedMetricSpecification"]["MetricName"] for t in tracking] == [
        "ApproximateBacklogSizePerInstance"
    ]
    assert tracking[0]["TargetValue"] == 5
    (step,) = [p for p in policies.values() if p["Properties"]["PolicyType"] == "StepScaling"]
    alarms = asynchronous.resources("serving", "AWS::CloudWatch::Alarm")
    (from_zero,) = [
        a for a in alarms.values() if a["Properties"]["MetricName"] == "HasBacklogWithoutCapacity"
    ]
    assert from_zero["Properties"]["Threshold"] == 1
    assert step["Properties"]["StepScalingPolicyConfiguration"]["StepAdjustments"] == [
        {"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}
    ]


def test_the_completion_handler_hears_both_topics_and_has_a_role_of_its_own(asynchronous):
    functions = asynchronous.resources("client", "AWS::Lambda::Function")
    (completions,) = [
        f for f in functions.values() if f["Properties"]["Handler"] == "async_completion.handler"
    ]
    variables = completions["Properties"]["Environment"]["Variables"]
    assert variables["SERVING_MODE"] == "async"
    assert "INFERENCE_INPUT_BUCKET" in variables
    subscriptions = asynchronous.resources("client", "AWS::SNS::Subscription").values()
    assert sorted(
        flat(s["Properties"]["TopicArn"]).count("AsyncTopics") for s in subscriptions
    ) == [
        1,
        1,
    ]
    assert {s["Properties"]["Protocol"] for s in subscriptions} == {"lambda"}
    iam_template = asynchronous.template("iam")
    client = {a for s in statements(iam_template, "ClientRole") for a in as_list(s["Action"])}
    assert "sagemaker:InvokeEndpointAsync" in client
    assert "sagemaker:InvokeEndpoint" not in client
    reads = [
        flat(s["Resource"])
        for s in statements(iam_template, "CompletionRole")
        if s["Action"] == "s3:GetObject"
    ]
    assert any(
        "/async-inference/results/*" in r and "/async-inference/failures/*" in r for r in reads
    )


def test_the_async_mode_changes_the_iam_serving_and_client_stacks_only(synthesized, asynchronous):
    changed = [s for s in STACKS if asynchronous.template(s) != synthesized.template(s)]
    assert changed == ["iam", "serving", "client"]


def test_model_and_endpoint_config_are_named_by_cloudformation(synthesized):
    (model,) = synthesized.resources("serving", "AWS::SageMaker::Model").values()
    assert "ModelName" not in model["Properties"]
    assert model["Properties"]["EnableNetworkIsolation"] is True
    (config,) = synthesized.resources("serving", "AWS::SageMaker::EndpointConfig").values()
    props = config["Properties"]
    assert "EndpointConfigName" not in props
    assert props["KmsKeyId"]["Fn::GetAtt"][1] == "Arn"
    (variant,) = props["ProductionVariants"]
    assert variant["VariantName"] == "AllTraffic"
    assert variant["InstanceType"] == "ml.m5.large"
    assert variant["InitialInstanceCount"] == 1
    assert "AcceleratorType" not in variant
    assert "DataCaptureConfig" not in props
    key_id = props["KmsKeyId"]["Fn::GetAtt"][0]
    key = synthesized.template("serving")["Resources"][key_id]
    assert key["Properties"]["EnableKeyRotation"] is True


def test_endpoint_is_fixed_name_blue_green_with_alarm_rollback(synthesized):
    (endpoint,) = synthesized.resources("serving", "AWS::SageMaker::Endpoint").values()
    props = endpoint["Properties"]
    assert props["EndpointName"] == "custom-sm-model-endpoint"
    assert props["RetainAllVariantProperties"] is True
    assert props["ExcludeRetainedVariantProperties"] == [
        {"VariantPropertyType": "DataCaptureConfig"}
    ]
    policy = props["DeploymentConfig"]["BlueGreenUpdatePolicy"]
    assert policy["TrafficRoutingConfiguration"]["Type"] == "ALL_AT_ONCE"
    alarms = synthesized.resources("serving", "AWS::CloudWatch::Alarm")
    rollback = [
        a["AlarmName"]["Ref"]
        for a in props["DeploymentConfig"]["AutoRollbackConfiguration"]["Alarms"]
    ]
    assert sorted(rollback) == sorted(alarms)
    metrics = {a["Properties"]["MetricName"]: a["Properties"] for a in alarms.values()}
    assert set(metrics) == {"Invocation5XXErrors", "ModelLatency"}
    assert metrics["ModelLatency"]["ExtendedStatistic"] == "p99"
    assert metrics["ModelLatency"]["Threshold"] == 1_000_000  # 1000 ms in microseconds


def test_variant_autoscaling(synthesized):
    (target,) = synthesized.resources(
        "serving", "AWS::ApplicationAutoScaling::ScalableTarget"
    ).values()
    props = target["Properties"]
    assert props["ResourceId"] == "endpoint/custom-sm-model-endpoint/variant/AllTraffic"
    assert (props["MinCapacity"], props["MaxCapacity"]) == (1, 2)
    assert "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint" in flat(props["RoleARN"])
    assert target["DependsOn"] == ["Endpoint"]
    (policy,) = synthesized.resources(
        "serving", "AWS::ApplicationAutoScaling::ScalingPolicy"
    ).values()
    tracking = policy["Properties"]["TargetTrackingScalingPolicyConfiguration"]
    assert tracking["PredefinedMetricSpecification"]["PredefinedMetricType"] == (
        "SageMakerVariantInvocationsPerInstance"
    )
    assert tracking["TargetValue"] == 1000


def test_instance_type_change_mode_and_local_storage_instances(tmp_path_factory):
    """`autoscaling.enabled=false` deregisters the variant (the first step of an instance-type
    change); instances with local NVMe storage get no KMS key, which SageMaker would refuse.
    """
    from .cdk_synth import context_with, synthesize

    changed = synthesize(
        tmp_path_factory.mktemp("no-autoscaling"),
        context_with(
            **{
                "config.serving.autoscaling.enabled": "false",
                "config.serving.instance_type": "ml.g4dn.xlarge",
            }
        ),
    )
    template = changed.template("serving")
    assert "AWS::ApplicationAutoScaling" not in flat(template)
    assert "EndpointVolumeKey" not in flat(template)
    (config,) = changed.resources("serving", "AWS::SageMaker::EndpointConfig").values()
    assert "KmsKeyId" not in config["Properties"]
    assert config["Properties"]["ProductionVariants"][0]["InstanceType"] == "ml.g4dn.xlarge"


# -- client -----------------------------------------------------------------------------------


def test_client_function(synthesized):
    (function,) = [
        f
        for f in synthesized.resources("client", "AWS::Lambda::Function").values()
        if f["Properties"].get("Handler") == "lambda_function.lambda_handler"
    ]
    props = function["Properties"]
    assert props["Runtime"] == "python3.14"
    assert "ReservedConcurrentExecutions" not in props
    variables = props["Environment"]["Variables"]
    assert variables["MODEL_ENDPOINT"] == "custom-sm-model-endpoint"
    assert "PublishOutputRefInferenceOutput" in flat(variables["INFERENCE_OUTPUT_BUCKET"])
    assert variables["MAX_REQUEST_BYTES"] == str(5 * 1024 * 1024)
    assert "ClientRole" in flat(props["Role"])


def test_client_fires_on_object_created_for_supported_extensions_only(synthesized):
    (notifications,) = synthesized.resources("client", "Custom::S3BucketNotifications").values()
    configurations = notifications["Properties"]["NotificationConfiguration"][
        "LambdaFunctionConfigurations"
    ]
    assert {tuple(c["Events"]) for c in configurations} == {("s3:ObjectCreated:*",)}
    suffixes = sorted(c["Filter"]["Key"]["FilterRules"][0]["Value"] for c in configurations)
    assert suffixes == sorted(
        [".csv", ".json", ".jsonl", ".jsonlines", ".CSV", ".JSON", ".JSONL", ".JSONLINES"]
    )
    assert "PublishOutputRefInferenceInput" in flat(notifications["Properties"]["BucketName"])
    granted = statements(synthesized.template("client"), "NotificationsHandlerRole")
    assert [s["Action"] for s in granted] == [
        ["s3:GetBucketNotification", "s3:PutBucketNotification"],
        ["logs:CreateLogStream", "logs:PutLogEvents"],
    ]


def test_failed_events_land_in_an_encrypted_ssl_only_queue_with_alarms(synthesized):
    # The client and its transform handler: the same retries, the same queue.
    invokes = synthesized.resources("client", "AWS::Lambda::EventInvokeConfig").values()
    assert [i["Properties"]["MaximumRetryAttempts"] for i in invokes] == [2, 2]
    (queue_id,) = {
        i["Properties"]["DestinationConfig"]["OnFailure"]["Destination"]["Fn::GetAtt"][0]
        for i in invokes
    }
    queue = synthesized.template("client")["Resources"][queue_id]
    assert queue["Properties"]["SqsManagedSseEnabled"] is True
    assert queue["Properties"]["QueueName"] == "custom-sm-client-failures"
    (policy,) = synthesized.resources("client", "AWS::SQS::QueuePolicy").values()
    deny, allow = policy["Properties"]["PolicyDocument"]["Statement"]
    assert deny["Effect"] == "Deny"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    # EventBridge may send only the transform rule's undeliverable events.
    (rule_id,) = synthesized.resources("client", "AWS::Events::Rule")
    assert (allow["Effect"], allow["Principal"], allow["Action"]) == (
        "Allow",
        {"Service": "events.amazonaws.com"},
        "sqs:SendMessage",
    )
    assert allow["Condition"] == {"ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": [rule_id, "Arn"]}}}
    alarms = {
        a["Properties"]["MetricName"]: a["Properties"]
        for a in synthesized.resources("client", "AWS::CloudWatch::Alarm").values()
    }
    assert set(alarms) == {"Errors", "ApproximateNumberOfMessagesVisible"}


def test_outputs_name_buckets_endpoint_and_a_scoring_command(synthesized):
    outputs = synthesized.template("client")["Outputs"]
    assert outputs["EndpointName"]["Value"] == "custom-sm-model-endpoint"
    command = flat(outputs["ScoreFileCommand"]["Value"])
    assert "aws s3 cp data/inference/inference.csv s3://" in command
    assert "inference.csv.out -" in command
    storage_outputs = synthesized.template("storage")["Outputs"]
    for name in ("DataBucketName", "ModelsBucketName", "InputBucketName", "OutputBucketName"):
        assert name in storage_outputs


def acknowledgments(synthesized) -> dict[tuple[str, str], str]:
    """(construct path, rule id) -> reason, for every cdk-nag acknowledgment in the app."""
    found = {}
    for path in synthesized.outdir.glob("*.metadata.json"):
        for construct_path, entries in json.loads(path.read_text()).items():
            for entry in entries:
                if entry["type"] == "aws:cdk:acknowledged-rules":
                    for rule, reason in entry["data"].items():
                        found[(construct_path, rule.removeprefix("Annotation::"))] = reason
    return found


def test_acknowledgments_are_few_specific_and_scoped(synthesized):
    found = acknowledgments(synthesized)
    assert 0 < len(found) <= 30
    for (path, rule), reason in found.items():
        assert rule.startswith("AwsSolutions-"), rule
        assert path.count("/") >= 2, f"{rule} acknowledged for a whole stack: {path}"
        if rule.startswith(("AwsSolutions-IAM4", "AwsSolutions-IAM5")):
            assert "[" in rule, f"{rule} on {path} is not scoped to one finding"
        assert len(reason) >= 40, f"{rule} on {path}: reason too vague: {reason!r}"


def test_cdk_nag_runs_on_every_synth(tmp_path):
    """A non-compliant bucket added to the app makes synth fail with cdk-nag's finding."""
    from aws_cdk import aws_s3 as s3

    from app import build_app

    from .cdk_synth import cdk_json_context

    app = build_app(context=cdk_json_context(), outdir=str(tmp_path))
    s3.Bucket(app.node.find_child("custom-sm-storage"), "Unsafe")
    with pytest.raises(RuntimeError, match="ValidationFailed") as failure:
        app.synth()
    message = str(failure.value)
    assert "custom-sm-storage/Unsafe/Resource" in message
    assert "AwsSolutions-S10" in message
    assert "custom-sm-storage/Unsafe" in (tmp_path / "validation-report.json").read_text()


# -- batch transform --------------------------------------------------------------------------


def test_a_job_ending_fires_the_transform_handler_with_the_clients_retries_and_queue(synthesized):
    resources = synthesized.template("client")["Resources"]
    (rule,) = synthesized.resources("client", "AWS::Events::Rule").values()
    assert rule["Properties"]["EventPattern"] == {
        "source": ["aws.sagemaker"],
        "detail-type": ["SageMaker Transform Job State Change"],
        "detail": {
            "TransformJobName": [{"prefix": "custom-sm-batch-"}],
            "TransformJobStatus": ["Completed", "Failed", "Stopped"],
        },
    }
    (target,) = rule["Properties"]["Targets"]
    handler = resources[target["Arn"]["Fn::GetAtt"][0]]["Properties"]
    assert handler["Handler"] == "transform_completion.handler"
    assert handler["FunctionName"] == "custom-sm-client-transforms"
    assert target["RetryPolicy"] == {"MaximumEventAgeInSeconds": 3600, "MaximumRetryAttempts": 2}
    assert resources[target["DeadLetterConfig"]["Arn"]["Fn::GetAtt"][0]]["Properties"][
        "QueueName"
    ] == ("custom-sm-client-failures")
    client = next(
        r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::Lambda::Function"
        and r["Properties"].get("FunctionName") == "custom-sm-client"
    )
    variables = client["Environment"]["Variables"]
    # 66 MiB/s per vCPU x 512/1769 vCPU x 300 s x 1/2.
    assert variables["BATCH_THRESHOLD_BYTES"] == str(int(66 * 2**20 * 512 / 1769 * 300 * 0.5))
    assert "/batch-transform/" in flat(variables["TRANSFORM_STAGING"])
    assert (variables["TRANSFORM_INSTANCE_TYPE"], variables["TRANSFORM_MAX_PAYLOAD_MB"]) == (
        "ml.m5.large",
        "6",
    )
    assert handler["Environment"]["Variables"] == variables


def test_the_transform_handler_role_reads_jobs_and_their_output_and_invokes_nothing(synthesized):
    by_action = resources_by_action(synthesized.template("iam"), "TransformRole")
    assert "sagemaker:InvokeEndpoint" not in by_action
    assert by_action["sagemaker:DescribeTransformJob"].endswith(
        ':transform-job/custom-sm-batch-*"]]}'
    )
    assert "/batch-transform/*" in by_action["s3:GetObject"]
    assert "log-group:/aws/lambda/custom-sm-client-transforms:*" in by_action["logs:PutLogEvents"]


def test_with_batch_transform_off_no_role_may_start_a_job_or_read_the_input_for_sagemaker(
    synthesized, tmp_path
):
    from .cdk_synth import context_with, synthesize

    off = synthesize(tmp_path, context_with(**{"config.client.batch_transform.enabled": "false"}))
    assert not off.resources("client", "AWS::Events::Rule")
    assert "BATCH_THRESHOLD_BYTES" not in json.dumps(off.template("client"))
    assert "TransformRole" not in json.dumps(off.template("iam"))
    for template, allowed in ((off, False), (synthesized, True)):
        iam_template = json.dumps(template.template("iam"))
        assert ("sagemaker:CreateTransformJob" in iam_template) is allowed
        sagemaker_reads = json.dumps(statements(template.template("iam"), "SageMakerExecutionRole"))
        assert ("PublishOutputRefInferenceInput" in sagemaker_reads) is allowed
        assert ("/aws/sagemaker/TransformJobs" in sagemaker_reads) is allowed
