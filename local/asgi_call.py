"""One HTTP request through an ASGI app in this process, with no server: for profiles and tests."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any


def call(
    app: Callable[..., Awaitable[None]], path: str, body: bytes, headers: dict[str, str]
) -> tuple[int, bytes]:
    """POST ``body`` to ``path``: the response's status and body."""
    scope: dict[str, Any] = {
        "type": "http",
        "method": "POST",
        "path": path,
        "headers": [
            *((name.lower().encode(), value.encode()) for name, value in headers.items()),
            (b"content-length", str(len(body)).encode()),
        ],
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], sent[-1]["body"]
