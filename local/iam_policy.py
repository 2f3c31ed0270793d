"""Decide whether a role's identity-based IAM policies allow one AWS call.

Tests use it to prove that every AWS call the runtime code makes is allowed by the
role that makes it, and that the calls it must not make are denied. It follows AWS's
documented evaluation logic for identity-based policies in one account: an explicit
Deny in any matching statement wins, otherwise some Allow must match, otherwise the
request is implicitly denied.

It deliberately does not model resource-based policies, service control policies,
permission boundaries, session policies, policy variables, or the date, IP address and
binary condition operators. Anything it does not understand raises UnsupportedPolicy,
naming what and where, instead of guessing: a test must never pass by accident.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

POLICY_VERSION = "2012-10-17"
_DOCUMENT_KEYS = frozenset({"Version", "Id", "Statement"})
_STATEMENT_KEYS = frozenset(
    {"Sid", "Effect", "Action", "NotAction", "Resource", "NotResource", "Condition"}
)
_SET_OPERATORS = ("ForAnyValue", "ForAllValues")
_ACTION_PATTERN = re.compile(r"[^:]+:[^:]+")
_REQUEST_ACTION = re.compile(r"[^:*?\s]+:[^:*?\s]+")
_NUMBER = re.compile(r"-?\d+(\.\d+)?")

ContextValue = str | bool | int | Sequence[str]


class UnsupportedPolicy(ValueError):
    """A policy construct this evaluator does not model, so it refuses to decide."""


@dataclass(frozen=True)
class Request:
    """One AWS call as IAM sees it: the action, the resource ARN (or "*") and condition keys."""

    action: str
    resource: str
    context: Mapping[str, ContextValue] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    """The verdict and the statement behind it, so a failing test says why."""

    allowed: bool
    reason: str


@dataclass(frozen=True)
class NamedPolicy:
    """A policy document with the name that reasons and errors cite."""

    name: str
    document: Mapping


@dataclass(frozen=True)
class _Operator:
    """How one condition operator family reads a policy value and compares a request value."""

    parse: Callable[[str], Any]
    match: Callable[[str, Any], bool]


@dataclass(frozen=True)
class _Condition:
    where: str
    key: str
    set_operator: str
    if_exists: bool
    negated: bool
    operator: _Operator | None  # None for Null, which tests presence rather than comparing
    values: tuple[Any, ...]


@dataclass(frozen=True)
class _Statement:
    where: str
    effect: str
    actions: tuple[re.Pattern[str], ...]
    not_action: bool
    resources: tuple[re.Pattern[str], ...]
    not_resource: bool
    conditions: tuple[_Condition, ...]


def evaluate(policies: Sequence[NamedPolicy], request: Request) -> Decision:
    """Explicit Deny, else Allow, else implicit deny; every statement is checked first."""
    statements = [statement for policy in policies for statement in _compile_policy(policy)]
    context = _request_context(request)
    applying = [s for s in statements if _applies(s, request, context)]
    denying = [s for s in applying if s.effect == "Deny"]
    if denying:
        return Decision(False, f"explicitly denied by {denying[0].where}")
    if applying:
        return Decision(True, f"allowed by {applying[0].where}")
    return Decision(False, f"no statement allows {request.action} on {request.resource}")


def _request_context(request: Request) -> dict[str, str | tuple[str, ...]]:
    """Validate the request and key its context case-insensitively, as AWS does."""
    if not _REQUEST_ACTION.fullmatch(request.action):
        raise ValueError(f"request action {request.action!r} is not service:ActionName")
    if request.resource != "*" and not _is_arn(request.resource):
        raise ValueError(f"request resource {request.resource!r} is neither an ARN nor '*'")
    context: dict[str, str | tuple[str, ...]] = {}
    for key, value in request.context.items():
        if key.lower() in context:
            raise ValueError(f"request context has {key!r} twice, ignoring case")
        context[key.lower()] = _context_value(key, value)
    return context


def _context_value(key: str, value: object) -> str | tuple[str, ...]:
    if isinstance(value, str | bool | int):
        return _as_text(value)
    if isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
        return tuple(value)
    raise ValueError(f"request context {key!r} is {value!r}: expected str, bool, int or strings")


def _as_text(value: str | bool | int) -> str:
    """AWS compares every condition value as text; booleans are spelt true and false."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _is_arn(text: str) -> bool:
    parts = text.split(":", 5)
    return len(parts) == 6 and parts[0] == "arn"


def _applies(
    statement: _Statement, request: Request, context: Mapping[str, str | tuple[str, ...]]
) -> bool:
    if _matches_any(statement.actions, request.action) == statement.not_action:
        return False
    if _matches_any(statement.resources, request.resource) == statement.not_resource:
        return False
    return all(_holds(condition, context.get(condition.key)) for condition in statement.conditions)


def _matches_any(patterns: Sequence[re.Pattern[str]], text: str) -> bool:
    return any(pattern.fullmatch(text) for pattern in patterns)


def _holds(condition: _Condition, value: str | tuple[str, ...] | None) -> bool:
    family = condition.operator
    if family is None:
        # The docs treat a key with an empty value like a missing one for Null.
        return (value is None or value == ()) in condition.values
    if condition.set_operator:
        return _set_holds(condition, family, value)
    if value is None:
        # Documented: a missing key fails a positive operator and satisfies a negated one.
        return condition.if_exists or condition.negated
    if isinstance(value, tuple):
        raise UnsupportedPolicy(
            f"{condition.where}: the request has several values {list(value)!r} for a "
            "single-valued operator, which is ambiguous; use ForAnyValue: or ForAllValues:"
        )
    return _value_holds(condition, family, value)


def _set_holds(
    condition: _Condition, family: _Operator, value: str | tuple[str, ...] | None
) -> bool:
    values = (value,) if isinstance(value, str) else value or ()
    if not values:
        # Documented for ForAllValues; ForAnyValue is false here even when negated (our reading).
        return condition.if_exists or condition.set_operator == "ForAllValues"
    test = all if condition.set_operator == "ForAllValues" else any
    return test(_value_holds(condition, family, item) for item in values)


def _value_holds(condition: _Condition, family: _Operator, value: str) -> bool:
    """Policy values are ORed; a negated operator holds when none of them matches."""
    try:
        matched = any(family.match(value, wanted) for wanted in condition.values)
    except ValueError as error:
        raise UnsupportedPolicy(f"{condition.where}: request value {value!r} {error}") from None
    return matched != condition.negated


def _compile_policy(policy: NamedPolicy) -> list[_Statement]:
    document = policy.document
    if not isinstance(document, Mapping):
        raise UnsupportedPolicy(f"{policy.name}: the document is {document!r}, not an object")
    unknown = sorted(set(document) - _DOCUMENT_KEYS)
    if unknown:
        raise UnsupportedPolicy(f"{policy.name}: unsupported document elements {unknown}")
    if document.get("Version") != POLICY_VERSION:
        raise UnsupportedPolicy(
            f"{policy.name}: Version is {document.get('Version')!r}, not {POLICY_VERSION!r}"
        )
    statements = document.get("Statement")
    if isinstance(statements, Mapping):
        return [_compile_statement(statements, f"{policy.name} Statement")]
    if not isinstance(statements, list):
        raise UnsupportedPolicy(f"{policy.name}: Statement is {statements!r}, not a list")
    return [
        _compile_statement(statement, f"{policy.name} Statement[{index}]")
        for index, statement in enumerate(statements)
    ]


def _compile_statement(raw: object, where: str) -> _Statement:
    if not isinstance(raw, Mapping):
        raise UnsupportedPolicy(f"{where}: {raw!r} is not a statement object")
    if _is_intrinsic(raw):
        raise UnsupportedPolicy(f"{where}: unresolved CloudFormation intrinsic {dict(raw)!r}")
    if isinstance(raw.get("Sid"), str):
        where = f"{where} (Sid {raw['Sid']})"
    if "Principal" in raw or "NotPrincipal" in raw:
        raise UnsupportedPolicy(f"{where}: identity-based policies have no Principal")
    unknown = sorted(set(raw) - _STATEMENT_KEYS)
    if unknown:
        raise UnsupportedPolicy(f"{where}: unsupported statement elements {unknown}")
    effect = raw.get("Effect")
    if effect not in ("Allow", "Deny"):
        raise UnsupportedPolicy(f"{where}: Effect is {effect!r}, not Allow or Deny")
    action_element, not_action = _either(raw, "Action", where)
    resource_element, not_resource = _either(raw, "Resource", where)
    actions = _strings(raw[action_element], action_element, where)
    resources = _strings(raw[resource_element], resource_element, where)
    return _Statement(
        where=where,
        effect=effect,
        actions=tuple(_action_pattern(action, action_element, where) for action in actions),
        not_action=not_action,
        resources=tuple(_resource_pattern(text, resource_element, where) for text in resources),
        not_resource=not_resource,
        conditions=_compile_conditions(raw["Condition"], where) if "Condition" in raw else (),
    )


def _is_intrinsic(raw: Mapping) -> bool:
    return len(raw) == 1 and all(key == "Ref" or str(key).startswith("Fn::") for key in raw)


def _either(raw: Mapping, element: str, where: str) -> tuple[str, bool]:
    """Which of Element / NotElement the statement uses; exactly one is required."""
    present = [name for name in (element, f"Not{element}") if name in raw]
    if len(present) != 1:
        raise UnsupportedPolicy(f"{where}: needs exactly one of {element} and Not{element}")
    return present[0], present[0] != element


def _strings(value: object, element: str, where: str) -> list[str]:
    items = value if isinstance(value, list) else [value]
    if not items:
        raise UnsupportedPolicy(f"{where}: {element} is an empty list")
    for item in items:
        if isinstance(item, Mapping):
            raise UnsupportedPolicy(f"{where}: {element} holds an unresolved intrinsic {item!r}")
        if not isinstance(item, str) or not item:
            raise UnsupportedPolicy(f"{where}: {element} holds {item!r}, not a string")
    return items


def _action_pattern(text: str, element: str, where: str) -> re.Pattern[str]:
    if text != "*" and not _ACTION_PATTERN.fullmatch(text):
        raise UnsupportedPolicy(f"{where}: {element} {text!r} is not service:action")
    return _wildcard(text, ignore_case=True)


def _resource_pattern(text: str, element: str, where: str) -> re.Pattern[str]:
    _refuse_variables(text, f"{where}: {element}")
    return _wildcard(text, ignore_case=False)


def _refuse_variables(text: str, where: str) -> None:
    if "${" in text:
        raise UnsupportedPolicy(f"{where} {text!r} uses a policy variable")


def _wildcard(pattern: str, *, ignore_case: bool) -> re.Pattern[str]:
    """`*` is any run of characters, `/` and `:` included; `?` is one character."""
    regex = "".join(
        ".*" if char == "*" else "." if char == "?" else re.escape(char) for char in pattern
    )
    return re.compile(regex, re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def _compile_conditions(raw: object, where: str) -> tuple[_Condition, ...]:
    if not isinstance(raw, Mapping) or not raw:
        raise UnsupportedPolicy(f"{where}: Condition is {raw!r}, not a non-empty object")
    if _is_intrinsic(raw):
        raise UnsupportedPolicy(f"{where}: Condition is an unresolved intrinsic {dict(raw)!r}")
    conditions = []
    for name, block in raw.items():
        if not isinstance(block, Mapping) or not block:
            raise UnsupportedPolicy(f"{where}: {name} holds {block!r}, not a non-empty object")
        conditions.extend(
            _compile_condition(name, key, values, where) for key, values in block.items()
        )
    return tuple(conditions)


def _compile_condition(name: str, key: str, raw_values: object, where: str) -> _Condition:
    here = f"{name} {key!r} in {where}"
    set_operator, _, rest = name.rpartition(":")
    base = rest.removesuffix("IfExists")
    if_exists = base != rest
    positive = _NEGATIONS.get(base, base)
    if base == "Null" and not set_operator and not if_exists:
        family = None
    elif set_operator in ("", *_SET_OPERATORS) and positive in _OPERATORS:
        family = _OPERATORS[positive]
    else:
        raise UnsupportedPolicy(f"{where}: unsupported condition operator {name!r}")
    parse = _boolean if family is None else family.parse
    try:
        values = tuple(parse(text) for text in _condition_texts(raw_values, here))
    except ValueError as error:
        raise UnsupportedPolicy(f"{here}: policy value {error}") from None
    return _Condition(
        where=here,
        key=key.lower(),
        set_operator=set_operator,
        if_exists=if_exists,
        negated=base in _NEGATIONS,
        operator=family,
        values=values,
    )


def _condition_texts(raw: object, where: str) -> list[str]:
    items = raw if isinstance(raw, list) else [raw]
    if not items:
        raise UnsupportedPolicy(f"{where}: no values")
    texts = []
    for item in items:
        if isinstance(item, Mapping):
            raise UnsupportedPolicy(f"{where}: unresolved intrinsic {item!r}")
        if not isinstance(item, str | bool | int):
            raise UnsupportedPolicy(f"{where}: value {item!r} is not a string")
        text = _as_text(item)
        _refuse_variables(text, where)
        texts.append(text)
    return texts


def _boolean(text: str) -> bool:
    if text not in ("true", "false"):
        raise ValueError(f"{text!r} is not true or false")
    return text == "true"


def _number(text: str) -> Decimal:
    if not _NUMBER.fullmatch(text):
        raise ValueError(f"{text!r} is not a number")
    return Decimal(text)


def _arn_parts(text: str) -> list[str]:
    parts = text.split(":", 5)
    if len(parts) != 6:
        raise ValueError(f"{text!r} is not an ARN of six colon-separated parts")
    return parts


def _arn_pattern(text: str) -> tuple[re.Pattern[str], ...]:
    return tuple(_wildcard(part, ignore_case=False) for part in _arn_parts(text))


def _arn_matches(text: str, pattern: tuple[re.Pattern[str], ...]) -> bool:
    if not _is_arn(text):
        raise ValueError("is not an ARN")
    return all(part.fullmatch(value) for part, value in zip(pattern, _arn_parts(text), strict=True))


def _string_like(text: str, pattern: re.Pattern[str]) -> bool:
    return pattern.fullmatch(text) is not None


def _numeric(compare: Callable[[Decimal, Decimal], bool]) -> _Operator:
    return _Operator(parse=_number, match=lambda text, wanted: compare(_number(text), wanted))


_OPERATORS: dict[str, _Operator] = {
    "StringEquals": _Operator(parse=str, match=operator.eq),
    "StringEqualsIgnoreCase": _Operator(
        parse=str.casefold, match=lambda text, wanted: text.casefold() == wanted
    ),
    "StringLike": _Operator(
        parse=lambda text: _wildcard(text, ignore_case=False), match=_string_like
    ),
    # The docs give ArnEquals and ArnLike one meaning: wildcards allowed in each part.
    "ArnEquals": _Operator(parse=_arn_pattern, match=_arn_matches),
    "ArnLike": _Operator(parse=_arn_pattern, match=_arn_matches),
    "Bool": _Operator(parse=_boolean, match=lambda text, wanted: _boolean(text) == wanted),
    "NumericEquals": _numeric(operator.eq),
    "NumericLessThan": _numeric(operator.lt),
    "NumericLessThanEquals": _numeric(operator.le),
    "NumericGreaterThan": _numeric(operator.gt),
    "NumericGreaterThanEquals": _numeric(operator.ge),
}

_NEGATIONS: dict[str, str] = {
    "StringNotEquals": "StringEquals",
    "StringNotEqualsIgnoreCase": "StringEqualsIgnoreCase",
    "StringNotLike": "StringLike",
    "ArnNotEquals": "ArnEquals",
    "ArnNotLike": "ArnLike",
    "NumericNotEquals": "NumericEquals",
}
