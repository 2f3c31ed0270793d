"""The IAM evaluator: AWS's documented semantics, and a refusal for anything it does not model."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from local.iam_policy import Decision, NamedPolicy, Request, UnsupportedPolicy, evaluate

ACCOUNT = "123456789012"
BUCKET_KEY = "arn:aws:s3:::model-bucket/training/train.csv"
ENDPOINT = f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:endpoint/custom-model"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/SageMakerExecutionRole"


def policy(*statements: Mapping[str, Any], name: str = "RoleDefaultPolicy") -> NamedPolicy:
    return NamedPolicy(name, {"Version": "2012-10-17", "Statement": list(statements)})


def allow(action: Any, resource: Any, **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def decide(statement: Mapping[str, Any], action: str, resource: str, **context: Any) -> bool:
    return evaluate([policy(statement)], Request(action, resource, context)).allowed


def with_condition(condition: Mapping[str, Any], **context: Any) -> bool:
    """Whether an Allow of s3:ListBucket holds under `condition` for this request context."""
    statement = allow("s3:ListBucket", "*", Condition=condition)
    return decide(statement, "s3:ListBucket", "arn:aws:s3:::model-bucket", **context)


def test_an_exact_match_is_allowed_and_names_the_statement():
    statement = allow("s3:GetObject", BUCKET_KEY, Sid="ReadTraining")
    decision = evaluate([policy(statement)], Request("s3:GetObject", BUCKET_KEY))
    assert decision == Decision(
        True, "allowed by RoleDefaultPolicy Statement[0] (Sid ReadTraining)"
    )


def test_another_action_or_resource_is_not_allowed():
    statement = allow("s3:GetObject", BUCKET_KEY)
    assert not decide(statement, "s3:PutObject", BUCKET_KEY)
    assert not decide(statement, "s3:GetObject", BUCKET_KEY + ".bak")


@pytest.mark.parametrize("action", ["s3:getobject", "S3:GETOBJECT", "S3:GetObject"])
def test_actions_compare_case_insensitively_including_the_service(action: str):
    assert decide(allow(action, BUCKET_KEY), "s3:GetObject", BUCKET_KEY)


def test_resources_compare_case_sensitively():
    shouted = BUCKET_KEY.replace("training", "Training")
    assert not decide(allow("s3:GetObject", shouted), "s3:GetObject", BUCKET_KEY)
    assert not decide(allow("s3:GetObject", BUCKET_KEY), "s3:GetObject", shouted)


def test_star_in_a_resource_crosses_slashes_and_colons():
    assert decide(allow("s3:GetObject", "arn:aws:s3:::model-*"), "s3:GetObject", BUCKET_KEY)
    assert decide(
        allow("sagemaker:InvokeEndpoint", "arn:aws:*"), "sagemaker:InvokeEndpoint", ENDPOINT
    )
    assert decide(allow("s3:GetObject", "*"), "s3:GetObject", BUCKET_KEY)


def test_question_mark_matches_exactly_one_character():
    statement = allow("s3:GetObject", "arn:aws:s3:::model-bucket/training/train.cs?")
    assert decide(statement, "s3:GetObject", BUCKET_KEY)
    assert not decide(statement, "s3:GetObject", BUCKET_KEY[:-1])
    assert not decide(statement, "s3:GetObject", BUCKET_KEY + "v")


def test_action_wildcards():
    assert decide(allow("s3:Get*", BUCKET_KEY), "s3:GetObjectVersion", BUCKET_KEY)
    assert decide(allow("s3:?etObject", BUCKET_KEY), "s3:GetObject", BUCKET_KEY)
    assert decide(allow("*", BUCKET_KEY), "s3:DeleteObject", BUCKET_KEY)
    assert not decide(allow("s3:Get*", BUCKET_KEY), "s3:PutObject", BUCKET_KEY)
    assert not decide(allow("s3:Get*", BUCKET_KEY), "sqs:GetQueueUrl", BUCKET_KEY)


def test_a_list_of_actions_or_resources_is_any_of_them():
    statement = allow(["s3:GetObject", "s3:PutObject"], ["arn:aws:s3:::other", BUCKET_KEY])
    assert decide(statement, "s3:PutObject", BUCKET_KEY)
    assert not decide(statement, "s3:DeleteObject", BUCKET_KEY)


def test_an_explicit_deny_in_one_policy_beats_an_allow_in_another():
    allowing = policy(allow("s3:*", "*"), name="Broad")
    denying = policy(
        {"Sid": "NoDeletes", "Effect": "Deny", "Action": "s3:DeleteObject", "Resource": "*"},
        name="Guard",
    )
    decision = evaluate([allowing, denying], Request("s3:DeleteObject", BUCKET_KEY))
    assert decision == Decision(False, "explicitly denied by Guard Statement[0] (Sid NoDeletes)")
    assert evaluate([allowing, denying], Request("s3:GetObject", BUCKET_KEY)).allowed


def test_a_deny_whose_condition_fails_does_not_deny():
    deny = {
        "Effect": "Deny",
        "Action": "s3:*",
        "Resource": "*",
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }
    policies = [policy(allow("s3:GetObject", "*"), deny)]
    secure = Request("s3:GetObject", BUCKET_KEY, {"aws:SecureTransport": True})
    plain = Request("s3:GetObject", BUCKET_KEY, {"aws:SecureTransport": False})
    assert evaluate(policies, secure).allowed
    assert not evaluate(policies, plain).allowed


def test_not_action_matches_every_action_but_the_listed_ones():
    statement = {"Effect": "Allow", "NotAction": ["iam:*", "s3:Delete*"], "Resource": "*"}
    assert decide(statement, "s3:GetObject", BUCKET_KEY)
    assert not decide(statement, "s3:DeleteObject", BUCKET_KEY)
    assert not decide(statement, "iam:PassRole", ROLE)


def test_not_resource_matches_every_resource_but_the_listed_ones():
    statement = {"Effect": "Deny", "Action": "s3:*", "NotResource": "arn:aws:s3:::model-bucket/*"}
    policies = [policy(allow("s3:GetObject", "*"), statement)]
    assert evaluate(policies, Request("s3:GetObject", BUCKET_KEY)).allowed
    assert not evaluate(policies, Request("s3:GetObject", "arn:aws:s3:::other/key")).allowed


def test_an_implicit_deny_names_the_action_and_the_resource():
    decision = evaluate(
        [policy(allow("s3:GetObject", BUCKET_KEY))], Request("s3:PutObject", BUCKET_KEY)
    )
    assert decision == Decision(False, f"no statement allows s3:PutObject on {BUCKET_KEY}")


def test_no_policies_deny_implicitly():
    assert not evaluate([], Request("s3:GetObject", BUCKET_KEY)).allowed


def test_a_request_on_star_needs_a_statement_on_star():
    assert decide(allow("ecr:GetAuthorizationToken", "*"), "ecr:GetAuthorizationToken", "*")
    statement = allow("ecr:GetAuthorizationToken", "arn:aws:ecr:*")
    assert not decide(statement, "ecr:GetAuthorizationToken", "*")


def test_statement_may_be_a_single_object():
    document = {"Version": "2012-10-17", "Statement": allow("s3:GetObject", BUCKET_KEY)}
    decision = evaluate([NamedPolicy("Single", document)], Request("s3:GetObject", BUCKET_KEY))
    assert decision == Decision(True, "allowed by Single Statement")


def test_string_equals_on_the_passed_to_service():
    statement = allow(
        "iam:PassRole",
        ROLE,
        Condition={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
    )
    assert decide(
        statement, "iam:PassRole", ROLE, **{"iam:PassedToService": "sagemaker.amazonaws.com"}
    )
    assert not decide(
        statement, "iam:PassRole", ROLE, **{"iam:PassedToService": "lambda.amazonaws.com"}
    )
    assert not decide(
        statement, "iam:PassRole", ROLE, **{"iam:PassedToService": "SageMaker.amazonaws.com"}
    )
    assert not decide(statement, "iam:PassRole", ROLE)


def test_string_equals_ignore_case():
    condition = {"StringEqualsIgnoreCase": {"s3:prefix": "Training/"}}
    assert with_condition(condition, **{"s3:prefix": "training/"})
    assert not with_condition(condition, **{"s3:prefix": "validation/"})


def test_string_like_with_a_list_of_patterns_matches_any_of_them():
    condition = {"StringLike": {"s3:prefix": ["training/*", "validation/*", ""]}}
    assert with_condition(condition, **{"s3:prefix": "training/"})
    assert with_condition(condition, **{"s3:prefix": "validation/2024/part-1.csv"})
    assert with_condition(condition, **{"s3:prefix": ""})
    assert not with_condition(condition, **{"s3:prefix": "output/"})
    assert not with_condition(condition, **{"s3:prefix": "Training/"})


def test_condition_keys_compare_case_insensitively():
    condition = {"StringEquals": {"S3:Prefix": "training/"}}
    assert with_condition(condition, **{"s3:prefix": "training/"})


def test_several_operators_and_keys_must_all_hold():
    condition = {
        "StringLike": {"s3:prefix": "training/*"},
        "StringEquals": {"aws:RequestedRegion": "us-east-1", "s3:delimiter": "/"},
    }
    context = {"s3:prefix": "training/", "aws:RequestedRegion": "us-east-1", "s3:delimiter": "/"}
    assert with_condition(condition, **context)
    assert not with_condition(condition, **{**context, "s3:delimiter": "-"})
    assert not with_condition(condition, **{**context, "s3:prefix": "output/"})


def test_a_negated_operator_with_several_values_holds_only_when_none_matches():
    condition = {"StringNotEquals": {"aws:RequestedRegion": ["us-east-1", "eu-west-1"]}}
    assert not with_condition(condition, **{"aws:RequestedRegion": "us-east-1"})
    assert not with_condition(condition, **{"aws:RequestedRegion": "eu-west-1"})
    assert with_condition(condition, **{"aws:RequestedRegion": "ap-south-1"})


@pytest.mark.parametrize(
    ("operator", "holds"),
    [
        ("StringEquals", False),
        ("StringLike", False),
        ("ArnLike", False),
        ("NumericLessThan", False),
        ("Bool", False),
        ("StringNotEquals", True),
        ("StringNotLike", True),
        ("ArnNotLike", True),
        ("StringEqualsIfExists", True),
        ("StringNotEqualsIfExists", True),
        ("ArnLikeIfExists", True),
    ],
)
def test_a_missing_key_fails_positive_operators_and_satisfies_negated_ones(operator, holds):
    values = {"ArnLike": ROLE, "ArnNotLike": ROLE, "ArnLikeIfExists": ROLE}
    values |= {"NumericLessThan": "5", "Bool": "true"}
    condition = {operator: {"aws:SourceArn": values.get(operator, "x")}}
    assert with_condition(condition) is holds


def test_if_exists_still_checks_a_present_key():
    condition = {"StringEqualsIfExists": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
    assert with_condition(condition, **{"iam:PassedToService": "sagemaker.amazonaws.com"})
    assert not with_condition(condition, **{"iam:PassedToService": "lambda.amazonaws.com"})


def test_null_tests_whether_the_key_is_absent():
    assert with_condition({"Null": {"aws:TagKeys": "true"}})
    assert not with_condition({"Null": {"aws:TagKeys": "true"}}, **{"aws:TagKeys": ["team"]})
    assert with_condition({"Null": {"aws:TagKeys": "false"}}, **{"aws:TagKeys": ["team"]})
    assert not with_condition({"Null": {"aws:TagKeys": "false"}})
    assert with_condition({"Null": {"aws:TagKeys": True}})
    assert with_condition({"Null": {"aws:TagKeys": "true"}}, **{"aws:TagKeys": []})


def test_for_any_value_needs_one_request_value_to_match():
    condition = {"ForAnyValue:StringEquals": {"aws:TagKeys": ["team", "cost-centre"]}}
    assert with_condition(condition, **{"aws:TagKeys": ["owner", "team"]})
    assert not with_condition(condition, **{"aws:TagKeys": ["owner"]})
    assert not with_condition(condition, **{"aws:TagKeys": []})
    assert not with_condition(condition)
    assert with_condition(condition, **{"aws:TagKeys": "team"})


def test_for_all_values_needs_every_request_value_to_match():
    condition = {"ForAllValues:StringLike": {"aws:TagKeys": ["team", "cost-*"]}}
    assert with_condition(condition, **{"aws:TagKeys": ["team", "cost-centre"]})
    assert not with_condition(condition, **{"aws:TagKeys": ["team", "owner"]})
    assert with_condition(condition, **{"aws:TagKeys": []})
    assert with_condition(condition)


def test_negated_set_operators_apply_the_negation_to_each_request_value():
    condition = {"ForAllValues:StringNotLike": {"aws:TagKeys": "aws:*"}}
    assert with_condition(condition, **{"aws:TagKeys": ["team", "owner"]})
    assert not with_condition(condition, **{"aws:TagKeys": ["team", "aws:cloudformation"]})
    assert not with_condition({"ForAnyValue:StringNotLike": {"aws:TagKeys": "aws:*"}})


def test_for_any_value_if_exists_holds_without_the_key():
    assert with_condition({"ForAnyValue:StringEqualsIfExists": {"aws:TagKeys": "team"}})


def test_arn_like_compares_the_six_parts_one_by_one():
    condition = {"ArnLike": {"aws:SourceArn": f"arn:aws:sagemaker:*:{ACCOUNT}:endpoint/*"}}
    assert with_condition(condition, **{"aws:SourceArn": ENDPOINT})
    other_account = ENDPOINT.replace(ACCOUNT, "999999999999")
    assert not with_condition(condition, **{"aws:SourceArn": other_account})
    training_job = f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:training-job/x"
    assert not with_condition(condition, **{"aws:SourceArn": training_job})


def test_arn_like_star_stays_within_its_part_but_string_like_star_does_not():
    arn = f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:endpoint/custom-model"
    string_like = {"StringLike": {"aws:SourceArn": "arn:aws:*:endpoint/*"}}
    assert with_condition(string_like, **{"aws:SourceArn": arn})
    arn_like = {"ArnLike": {"aws:SourceArn": "arn:aws:*:*:*:endpoint/*"}}
    assert with_condition(arn_like, **{"aws:SourceArn": arn})
    arn_like_region_only = {"ArnLike": {"aws:SourceArn": "arn:aws:sagemaker:*:endpoint/*:*"}}
    assert not with_condition(arn_like_region_only, **{"aws:SourceArn": arn})


def test_arn_like_resource_part_may_hold_colons():
    log_stream = f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:/aws/sagemaker/Endpoints:*"
    condition = {"ArnEquals": {"aws:SourceArn": log_stream}}
    stream = log_stream.replace(":*", ":log-stream:AllTraffic/i-1")
    assert with_condition(condition, **{"aws:SourceArn": stream})


def test_arn_not_like():
    condition = {"ArnNotLike": {"aws:SourceArn": f"arn:aws:sagemaker:*:{ACCOUNT}:*"}}
    assert not with_condition(condition, **{"aws:SourceArn": ENDPOINT})
    assert with_condition(condition, **{"aws:SourceArn": "arn:aws:lambda:us-east-1:1:function:f"})


@pytest.mark.parametrize(
    ("policy_value", "request_value", "holds"),
    [("true", True, True), ("true", "true", True), (True, True, True), ("false", True, False)],
)
def test_bool(policy_value, request_value, holds):
    condition = {"Bool": {"aws:SecureTransport": policy_value}}
    assert with_condition(condition, **{"aws:SecureTransport": request_value}) is holds


@pytest.mark.parametrize(
    ("operator", "holds_for"),
    [
        ("NumericEquals", [10]),
        ("NumericNotEquals", [5, 50]),
        ("NumericLessThan", [5]),
        ("NumericLessThanEquals", [5, 10]),
        ("NumericGreaterThan", [50]),
        ("NumericGreaterThanEquals", [10, 50]),
    ],
)
def test_numeric_operators(operator, holds_for):
    for max_keys in (5, 10, 50):
        holds = with_condition({operator: {"s3:max-keys": "10"}}, **{"s3:max-keys": max_keys})
        assert holds is (max_keys in holds_for), (operator, max_keys)


def test_numeric_compares_numbers_not_text():
    condition = {"NumericLessThan": {"s3:max-keys": 100}}
    assert with_condition(condition, **{"s3:max-keys": "20"})
    assert not with_condition(condition, **{"s3:max-keys": "100.0"})


def unsupported(document: Mapping[str, Any], request: Request | None = None) -> str:
    request = request or Request("s3:GetObject", BUCKET_KEY)
    with pytest.raises(UnsupportedPolicy) as raised:
        evaluate([NamedPolicy("P", document)], request)
    return str(raised.value)


def one(statement: Mapping[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": [statement]}


def test_unknown_operator_is_refused_naming_it_and_the_statement():
    statement = allow(
        "s3:*", "*", Sid="Dated", Condition={"DateLessThan": {"aws:CurrentTime": "2030"}}
    )
    message = unsupported(one(statement))
    assert "DateLessThan" in message
    assert "P Statement[0] (Sid Dated)" in message


@pytest.mark.parametrize(
    "operator",
    ["StringEqual", "ForSomeValues:StringEquals", "NullIfExists", "ForAnyValue:Null", "IfExists"],
)
def test_malformed_operators_are_refused(operator):
    assert operator in unsupported(one(allow("s3:*", "*", Condition={operator: {"k": "true"}})))


def test_policy_variables_are_refused():
    in_resource = allow("s3:*", "arn:aws:s3:::bucket/${aws:username}/*")
    assert "policy variable" in unsupported(one(in_resource))
    in_condition = allow("s3:*", "*", Condition={"StringLike": {"s3:prefix": "${aws:userid}/*"}})
    assert "policy variable" in unsupported(one(in_condition))


def test_unresolved_intrinsics_are_refused():
    join = {"Fn::Join": ["", ["arn:aws:s3:::", {"Ref": "Bucket"}, "/*"]]}
    assert "unresolved" in unsupported(one(allow("s3:GetObject", join)))
    assert "unresolved" in unsupported(one(allow("s3:GetObject", ["arn:aws:s3:::b", join])))
    condition = {"StringEquals": {"aws:SourceArn": {"Fn::GetAtt": ["Endpoint", "Arn"]}}}
    assert "unresolved" in unsupported(one(allow("s3:GetObject", "*", Condition=condition)))
    conditional = {"Fn::If": ["IsProd", allow("s3:*", "*"), {"Ref": "AWS::NoValue"}]}
    assert "unresolved" in unsupported(one(conditional))


def test_a_principal_is_refused():
    statement = allow("s3:*", "*", Principal={"AWS": ROLE})
    assert "Principal" in unsupported(one(statement))


@pytest.mark.parametrize(
    "statement",
    [
        {"Effect": "Allow", "Action": "s3:*", "NotAction": "iam:*", "Resource": "*"},
        {"Effect": "Allow", "Resource": "*"},
        {"Effect": "Allow", "Action": "s3:*", "Resource": "*", "NotResource": "arn:aws:s3:::b"},
        {"Effect": "Allow", "Action": "s3:*"},
        {"Effect": "allow", "Action": "s3:*", "Resource": "*"},
        {"Effect": "Allow", "Action": "s3", "Resource": "*"},
        {"Effect": "Allow", "Action": [], "Resource": "*"},
        {"Effect": "Allow", "Action": "s3:*", "Resource": "*", "Condition": {}},
        {"Effect": "Allow", "Action": "s3:*", "Resource": "*", "Conditions": {}},
    ],
)
def test_malformed_statements_are_refused(statement):
    unsupported(one(statement))


def test_other_policy_versions_are_refused():
    assert "Version" in unsupported({"Version": "2008-10-17", "Statement": []})
    assert "Version" in unsupported({"Statement": []})


def test_a_statement_that_does_not_apply_is_still_checked():
    statements = [allow("s3:GetObject", "*"), allow("sqs:*", "*", Condition={"Bogus": {"k": "v"}})]
    assert "Bogus" in unsupported({"Version": "2012-10-17", "Statement": statements})


def test_a_list_of_request_values_for_a_single_valued_operator_is_refused():
    statement = allow("s3:*", "*", Condition={"StringEquals": {"aws:TagKeys": "team"}})
    request = Request("s3:GetObject", BUCKET_KEY, {"aws:TagKeys": ["team"]})
    assert "ForAnyValue" in unsupported(one(statement), request)


@pytest.mark.parametrize(
    ("operator", "policy_value", "request_value"),
    [
        ("ArnLike", "arn:aws:sagemaker:*:endpoint/*", ENDPOINT),
        ("ArnLike", "arn:aws:sagemaker:*:*:*", "not-an-arn"),
        ("NumericEquals", "ten", "10"),
        ("NumericEquals", "10", "ten"),
        ("Bool", "yes", "true"),
        ("Bool", "true", "yes"),
    ],
)
def test_values_an_operator_cannot_read_are_refused(operator, policy_value, request_value):
    statement = allow("s3:*", "*", Condition={operator: {"aws:SourceArn": policy_value}})
    request = Request("s3:GetObject", BUCKET_KEY, {"aws:SourceArn": request_value})
    assert "aws:SourceArn" in unsupported(one(statement), request)


@pytest.mark.parametrize(
    "request_",
    [
        Request("s3:Get*", BUCKET_KEY),
        Request("GetObject", BUCKET_KEY),
        Request("s3:GetObject", "model-bucket/key"),
        Request("s3:GetObject", BUCKET_KEY, {"s3:prefix": "a", "S3:Prefix": "b"}),
        Request("s3:GetObject", BUCKET_KEY, {"s3:max-keys": 1.5}),
    ],
)
def test_malformed_requests_are_refused(request_):
    with pytest.raises(ValueError):
        evaluate([policy(allow("*", "*"))], request_)
