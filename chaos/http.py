"""JSON over HTTP to one node, for the runner, the cluster control and the checker.

The chaos code talks to each node by its own URL on purpose, so it bypasses
the client's failover: a fetch from n2 must return n2's copy of the log.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import aiohttp

from chaos.api import ChaosError

__all__ = ["NodeHttpError", "request_json", "wait_for"]


class NodeHttpError(ChaosError):
    """A node responded with an error status, or did not respond at all."""

    code: ClassVar[str] = "chaos_node_http"

    def __init__(self, message: str, status: int | None, body: Any) -> None:
        super().__init__(message, status=status)
        self.status = status
        self.body = body


async def request_json(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    body: Any = None,
    timeout_s: float = 5.0,
) -> Any:
    """Send one request and return the decoded JSON body.

    Raises NodeHttpError for a status of 400 or more, a refused or reset
    connection, or no response within ``timeout_s`` seconds.
    """
    try:
        async with session.request(
            method, url, json=body, timeout=aiohttp.ClientTimeout(total=timeout_s)
        ) as response:
            payload = await response.json(content_type=None)
            if response.status >= 400:
                raise NodeHttpError(
                    f"{method} {url} returned {response.status}: {payload}",
                    response.status,
                    payload,
                )
            return payload
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise NodeHttpError(f"{method} {url} failed: {exc!r}", None, None) from exc


async def wait_for(
    predicate: Callable[[], Awaitable[bool]],
    timeout_s: float,
    interval_s: float = 0.2,
) -> bool:
    """Poll ``predicate`` until it returns True; return False after ``timeout_s`` seconds."""
    deadline = time.monotonic() + timeout_s
    while True:
        if await predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(interval_s)
