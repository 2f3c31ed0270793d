"""Every serving mode deploys: the whole app, synthesized with the mode, into moto as
`cdk deploy --all` would (the default mode is rehearsed in full by `test_rehearsal`)."""

from __future__ import annotations

from pathlib import Path

from local.moto_server import start_moto_server
from local.rehearsal.assembly import read_assembly
from local.rehearsal.deployer import Rehearsal
from local.rehearsal.scenario import REGION, synth


def test_a_serverless_endpoint_deploys_with_its_memory_and_concurrency(tmp_path: Path) -> None:
    assembly = synth(tmp_path / "serverless", ("config.serving.mode=serverless",))
    with start_moto_server() as moto:
        rehearsal = Rehearsal(moto.url, REGION)
        try:
            results = [rehearsal.deploy(stack) for stack in read_assembly(assembly)]
            sagemaker = rehearsal.client("sagemaker")
            (config,) = sagemaker.list_endpoint_configs()["EndpointConfigs"]
            (variant,) = sagemaker.describe_endpoint_config(
                EndpointConfigName=config["EndpointConfigName"]
            )["ProductionVariants"]
        finally:
            rehearsal.close()
    assert [result.skipped for result in results] == [False] * 6
    assert variant["ServerlessConfig"] == {"MemorySizeInMB": 2048, "MaxConcurrency": 10}
    assert "InstanceType" not in variant
