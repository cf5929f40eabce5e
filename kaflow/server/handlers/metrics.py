"""The Prometheus endpoint (GET /metrics) and the middleware that times every request.

Requests are labelled with an ``operation``: the name of the handler that
served them (``produce_records``, ``fetch_records``, ``commit_offsets`` ...),
so the label set stays small and follows the routes without a table to keep
in sync. Requests that match no route are labelled ``unmatched``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler

from kaflow.observability import NodeMetrics
from kaflow.server.params import Query

__all__ = ["METRICS_KEY", "metrics", "operation_name", "request_metrics_middleware"]

METRICS_KEY: Final = web.AppKey("metrics", NodeMetrics)

# Status label of a request that was cancelled before a response was sent,
# because the client disconnected or the server stopped. nginx logs 499 for this case.
CANCELLED_STATUS: Final = 499


async def metrics(request: web.Request) -> web.Response:
    Query(request.query, ())
    body, content_type = request.app[METRICS_KEY].render(request.headers.get("Accept"))
    response = web.Response(body=body)
    # The content type carries version and charset parameters, which
    # Response(content_type=...) does not accept.
    response.headers["Content-Type"] = content_type
    return response


def operation_name(request: web.Request) -> str:
    """Return the ``operation`` label of a request: its handler's name, or ``unmatched``."""
    match_info = request.match_info
    if match_info.http_exception is not None:
        return "unmatched"
    name = getattr(match_info.handler, "__name__", None)
    if not isinstance(name, str):
        return "unmatched"
    return name.lstrip("_")


@web.middleware
async def request_metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Observe each request's duration and status in ``kaflow_http_request_duration_seconds``.

    Install it before (outside) the error middleware, so that it records the
    status of the rendered error response.
    """
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        status = exc.status
        raise
    except asyncio.CancelledError:
        status = CANCELLED_STATUS
        raise
    else:
        status = response.status
        return response
    finally:
        request.app[METRICS_KEY].observe_request(
            operation_name(request), status, time.perf_counter() - started
        )
