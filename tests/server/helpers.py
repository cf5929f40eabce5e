"""HTTP helpers for the server tests: one request, its status and decoded body."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import msgpack

MSGPACK = "application/msgpack"


@dataclass
class Reply:
    status: int
    content_type: str
    headers: dict[str, str]
    body: Any

    @property
    def code(self) -> str | None:
        """Return the error code of an error body, or None for any other body."""
        if isinstance(self.body, dict) and isinstance(self.body.get("error"), dict):
            code = self.body["error"].get("code")
            return code if isinstance(code, str) else None
        return None

    @property
    def error(self) -> dict[str, Any]:
        assert isinstance(self.body, dict) and isinstance(self.body.get("error"), dict), self.body
        error: dict[str, Any] = self.body["error"]
        return error


async def call(
    session: aiohttp.ClientSession,
    method: str,
    path: str,
    *,
    json_body: Any = None,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    """Send one request; decode a JSON or msgpack body by the response's Content-Type."""
    if json_body is not None:
        data = json.dumps(json_body).encode()
        headers = {"Content-Type": "application/json", **(headers or {})}
    async with session.request(method, path, data=data, headers=headers) as response:
        raw = await response.read()
        content_type = response.content_type
        body: Any = raw
        if content_type == "application/json" and raw:
            body = json.loads(raw)
        elif content_type == MSGPACK and raw:
            body = msgpack.unpackb(raw, raw=False)
        return Reply(response.status, content_type, dict(response.headers), body)


def topic_name_for(test_name: str, suffix: str = "") -> str:
    """Return a topic name unique to one test, made of Kafka's allowed characters."""
    name = re.sub(r"[^a-zA-Z0-9._-]", "-", test_name).strip("-")
    return f"{name}{suffix}"[:200]


async def wait_until(predicate: Callable[[], bool], timeout: float, message: str) -> None:
    """Poll ``predicate`` on the event loop until it is true; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s: {message}")
        await asyncio.sleep(0.01)
