"""Send an HTTP request that reached a follower on to the leader, and relay its response.

Membership changes run on the leader. A follower that receives one forwards
it once to the leader's advertised URL from the member registry, marking
the request with the ``Kaflow-Forwarded-By`` header; a node never forwards
a request that carries the header, so a stale view of the leader cannot
make two nodes send a request back and forth. The client gets one response:
the leader's, status and body unchanged.
"""

from __future__ import annotations

import logging
from typing import Any, Final

import aiohttp
from aiohttp import web

from kaflow.errors import LeaderNotAvailableError

__all__ = ["FORWARDED_HEADER", "forward_to_leader", "is_forwarded"]

logger = logging.getLogger(__name__)

FORWARDED_HEADER: Final = "Kaflow-Forwarded-By"


def is_forwarded(request: web.Request) -> bool:
    return FORWARDED_HEADER in request.headers


async def forward_to_leader(
    request: web.Request, leader_url: str, node_id: str, body: Any, timeout_s: float
) -> web.Response:
    """Send ``request`` with the JSON ``body`` (None for no body) to ``leader_url``.

    Raises LeaderNotAvailableError when the leader does not respond.
    """
    url = leader_url.rstrip("/") + request.rel_url.path_qs
    headers = {FORWARDED_HEADER: node_id, "Accept": "application/json"}
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    logger.debug("forwarding request method=%s url=%s", request.method, url)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.request(request.method, url, json=body, headers=headers) as response,
        ):
            payload = await response.read()
            return web.Response(
                body=payload,
                status=response.status,
                content_type=response.content_type,
            )
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise LeaderNotAvailableError(
            f"forwarding the request to the leader at {leader_url} failed: {exc!r}; retry "
            "after the leader is reachable or send the request to it directly",
            leader_url=leader_url,
        ) from exc
