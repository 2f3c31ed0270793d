"""The parts of CloudFormation the rehearsal supplies, on small templates."""

from __future__ import annotations

import pytest

from local.rehearsal.template import (
    TemplateError,
    creation_order,
    dependents,
    needs_replacement,
    read_stack_outputs,
)

OUTPUTS = {"producer": {"BucketName": "data-bucket-1"}}


def reference(region: object = None, output: str = "BucketName") -> dict:
    spec = {"StackName": "producer", "OutputName": output}
    if region is not None:
        spec["Region"] = region
    return {"Fn::GetStackOutput": spec}


def test_a_weak_reference_reads_the_producers_deployed_output():
    template = {"Value": {"Fn::Join": ["", ["s3://", reference({"Ref": "AWS::Region"}), "/"]]}}
    resolved = read_stack_outputs(template, OUTPUTS, "eu-west-1", "consumer")
    assert resolved == {"Value": {"Fn::Join": ["", ["s3://", "data-bucket-1", "/"]]}}


def test_a_weak_reference_to_another_region_is_refused():
    with pytest.raises(TemplateError, match="in region 'us-east-1', but the stack deploys to"):
        read_stack_outputs({"V": reference("us-east-1")}, OUTPUTS, "eu-west-1", "consumer")


def test_a_missing_output_names_stack_and_output():
    with pytest.raises(TemplateError, match="stack producer has no output Missing"):
        read_stack_outputs({"V": reference(output="Missing")}, OUTPUTS, "eu-west-1", "consumer")


def test_replacement_follows_the_resource_schemas():
    old = {"PrimaryContainer": {"Environment": {"MODEL_INPUTS_DIGEST": "a"}}}
    new = {"PrimaryContainer": {"Environment": {"MODEL_INPUTS_DIGEST": "b"}}}
    assert needs_replacement("AWS::SageMaker::Model", old, new)
    endpoint = {"EndpointName": "e", "EndpointConfigName": "c1"}
    assert not needs_replacement(
        "AWS::SageMaker::Endpoint", endpoint, {**endpoint, "EndpointConfigName": "c2"}
    )
    assert needs_replacement(
        "AWS::SageMaker::Endpoint", endpoint, {**endpoint, "EndpointName": "f"}
    )
    assert not needs_replacement("Custom::Anything", {"A": 1}, {"A": 2})


RESOURCES = {
    "Endpoint": {"Properties": {"EndpointConfigName": {"Fn::GetAtt": ["Config", "Name"]}}},
    "Config": {"Properties": {"Model": {"Ref": "Model"}}},
    "Model": {"Properties": {"Image": {"Fn::Sub": "${AWS::AccountId}.dkr/${Repo}"}}},
    "Repo": {"Properties": {}},
    "Alarm": {"Properties": {}, "DependsOn": "Endpoint"},
    "Other": {"Properties": {}},
}


def test_creation_order_puts_each_resource_after_what_it_refers_to():
    order = creation_order(RESOURCES)
    for later, earlier in [("Endpoint", "Config"), ("Config", "Model"), ("Model", "Repo")]:
        assert order.index(earlier) < order.index(later)
    assert order.index("Endpoint") < order.index("Alarm")


def test_dependents_follow_references_and_depends_on():
    assert dependents(RESOURCES, {"Model"}) == {"Model", "Config", "Endpoint", "Alarm"}
