"""Health and cluster endpoints."""

from __future__ import annotations

from aiohttp import web

from kaflow.errors import NotReadyError
from kaflow.server.context import BROKER_KEY
from kaflow.server.error_handling import error_response
from kaflow.server.media import json_response
from kaflow.server.params import Query
from kaflow.server.views import render_cluster

__all__ = ["cluster_status", "health_live", "health_ready"]


async def health_live(request: web.Request) -> web.Response:
    Query(request.query, ())
    return json_response({"status": "live"})


async def health_ready(request: web.Request) -> web.Response:
    Query(request.query, ())
    broker = request.app[BROKER_KEY]
    if broker.is_ready():
        return json_response({"status": "ready"})
    # Returned, not raised: 503 is this endpoint's normal response while the
    # node starts, so it must not open a failure episode in the log.
    return error_response(
        NotReadyError(
            f"node {broker.node_id} is not ready: it is starting, replaying its log "
            "or has no Raft leader; retry shortly",
            node_id=broker.node_id,
        )
    )


async def cluster_status(request: web.Request) -> web.Response:
    Query(request.query, ())
    return json_response(render_cluster(request.app[BROKER_KEY].cluster_status()))
