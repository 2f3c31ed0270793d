"""Content negotiation: which format reads the request, which one answers it (`formats`)."""

from __future__ import annotations

from model_kit.serving.errors import RequestError
from model_kit.serving.formats import ALLOWED, BY_MEDIA_TYPE

UTF8_CHARSETS = ("utf-8", "utf8", "us-ascii")


def _split_params(header: str) -> tuple[str, dict[str, str]]:
    """``'text/csv; charset=UTF-8'`` -> ``('text/csv', {'charset': 'UTF-8'})``."""
    kind, *params = header.split(";")
    parsed = {}
    for param in params:
        name, _, value = param.partition("=")
        parsed[name.strip().lower()] = value.strip().strip('"')
    return kind.strip().lower(), parsed


def request_type(content_type: str | None) -> str:
    """The media type (as the client spelled it) of a request body, or a 415."""
    if not content_type:
        raise RequestError(
            415, f"Content-Type is missing; allowed: {', '.join(ALLOWED)}", allowed=ALLOWED
        )
    kind, params = _split_params(content_type)
    if kind not in BY_MEDIA_TYPE:
        raise RequestError(
            415,
            f"Content-Type {content_type!r} is not supported; allowed: {', '.join(ALLOWED)}",
            allowed=ALLOWED,
        )
    charset = params.get("charset", "utf-8").lower()
    if BY_MEDIA_TYPE[kind].text and charset not in UTF8_CHARSETS:
        raise RequestError(
            415,
            f"Content-Type {content_type!r}: charset {charset!r} is not supported; send utf-8",
            allowed=ALLOWED,
        )
    return kind


def _quality(params: dict[str, str]) -> float:
    try:
        return float(params.get("q", "1"))
    except ValueError:
        return 1.0


def response_type(accept: str | None, request_kind: str) -> str:
    """The media type to answer in: the first supported range of ``Accept``, by q-value.

    A missing Accept, ``*/*`` or a wildcard that covers the request's own type
    answers in the request's own type.
    """
    if not accept or not accept.strip():
        return request_kind
    ranges = [_split_params(item) for item in accept.split(",") if item.strip()]
    ranked = sorted(ranges, key=lambda item: -_quality(item[1]))
    for kind, params in ranked:
        if _quality(params) <= 0:
            continue
        if kind == "*/*":
            return request_kind
        if kind in BY_MEDIA_TYPE:
            return kind
        if kind.endswith("/*"):
            prefix = kind[:-1]
            if request_kind.startswith(prefix):
                return request_kind
            match = next((known for known in BY_MEDIA_TYPE if known.startswith(prefix)), None)
            if match:
                return match
    raise RequestError(
        406,
        f"Accept {accept!r} names no supported type; allowed: {', '.join(ALLOWED)}",
        allowed=ALLOWED,
    )
