"""Every serving mode deploys: the whole app, synthesized with the mode, into moto as
`cdk deploy --all` would (the default mode is rehearsed in full by `test_rehearsal`; the
asynchronous app is the one `test_iam_proof_async` proves)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from local.moto_server import start_moto_server
from local.rehearsal.assembly import read_assembly
from local.rehearsal.deployer import Rehearsal
from local.rehearsal.scenario import REGION, synth


def deployed_endpoint_config(tmp_path: Path, mode: str) -> tuple[list[bool], dict[str, Any]]:
    """`cdk deploy --all` of the app in `mode` into an empty account: whether each stack was
    deployed, and the endpoint config as SageMaker describes it."""
    assembly = synth(tmp_path / mode, (f"config.serving.mode={mode}",))
    with start_moto_server() as moto:
        rehearsal = Rehearsal(moto.url, REGION)
        try:
            results = [rehearsal.deploy(stack) for stack in read_assembly(assembly)]
            sagemaker = rehearsal.client("sagemaker")
            (config,) = sagemaker.list_endpoint_configs()["EndpointConfigs"]
            described = sagemaker.describe_endpoint_config(
                EndpointConfigName=config["EndpointConfigName"]
            )
        finally:
            rehearsal.close()
    return [not result.skipped for result in results], described


def test_a_serverless_endpoint_deploys_with_its_memory_and_concurrency(tmp_path: Path) -> None:
    deployed, config = deployed_endpoint_config(tmp_path, "serverless")
    assert deployed == [True] * 6
    (variant,) = config["ProductionVariants"]
    assert variant["ServerlessConfig"] == {"MemorySizeInMB": 2048, "MaxConcurrency": 10}
    assert "InstanceType" not in variant


def test_an_asynchronous_endpoint_deploys_with_its_output_and_topics(
    async_deployment: Rehearsal,
) -> None:
    sagemaker = async_deployment.client("sagemaker")
    (listed,) = sagemaker.list_endpoint_configs()["EndpointConfigs"]
    config = sagemaker.describe_endpoint_config(EndpointConfigName=listed["EndpointConfigName"])
    output = config["AsyncInferenceConfig"]["OutputConfig"]
    assert output["S3OutputPath"].endswith("/async-inference/results/")
    topics = output["NotificationConfig"]
    assert topics["SuccessTopic"].startswith("arn:aws:sns:")
    assert topics["ErrorTopic"] != topics["SuccessTopic"]
