"""The aiohttp application of the Kaflow HTTP API v1.

:func:`create_app` wires the routes in :data:`ENDPOINTS` to a
:class:`kaflow.broker.Broker`. docs/http-api.md is the reference for every
endpoint, parameter, limit and error code.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from aiohttp import web

import kaflow
from kaflow.broker import Broker
from kaflow.cluster import handlers as cluster
from kaflow.config import NodeConfig
from kaflow.observability import NodeMetrics
from kaflow.server.context import (
    BROKER_KEY,
    CONFIG_KEY,
    LONG_POLL_KEY,
    SHUTDOWN_KEY,
    LongPollStatistics,
)
from kaflow.server.error_handling import FailureEpisodes, error_middleware
from kaflow.server.handlers import (
    group_coordination,
    groups,
    internal,
    producers,
    records,
    status,
    topics,
)
from kaflow.server.handlers.metrics import METRICS_KEY, request_metrics_middleware
from kaflow.server.handlers.metrics import metrics as metrics_endpoint
from kaflow.server.media import json_response
from kaflow.server.params import Query

__all__ = ["ENDPOINTS", "EPISODES_KEY", "Endpoint", "create_app"]

EPISODES_KEY: Final = web.AppKey("failure_episodes", FailureEpisodes)

HandlerFunction = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Endpoint:
    method: str
    path: str
    handler: HandlerFunction
    summary: str


async def _index(request: web.Request) -> web.Response:
    Query(request.query, ())
    return json_response(
        {
            "name": "kaflow",
            "version": kaflow.__version__,
            "node_id": request.app[BROKER_KEY].node_id,
            "endpoints": [
                {"method": endpoint.method, "path": endpoint.path, "summary": endpoint.summary}
                for endpoint in ENDPOINTS
            ],
        }
    )


_RECORDS: Final = "/v1/topics/{topic}/partitions/{partition}"
_GROUP: Final = "/v1/groups/{group}"
_GROUP_OFFSETS: Final = f"{_GROUP}/offsets"
_GROUP_HEARTBEAT: Final = f"{_GROUP}/heartbeat"
_GROUP_RESET: Final = f"{_GROUP}/reset-offsets"

# Route patterns that differ from the documented path. An empty group segment
# matches, so /v1/groups//offsets gets invalid_group_name instead of a 404.
_ROUTE_PATTERNS: Final = {
    _GROUP_OFFSETS: "/v1/groups/{group:[^/]*}/offsets",
    _GROUP_HEARTBEAT: "/v1/groups/{group:[^/]*}/heartbeat",
    _GROUP_RESET: "/v1/groups/{group:[^/]*}/reset-offsets",
}

ENDPOINTS: Final[tuple[Endpoint, ...]] = (
    Endpoint("GET", "/", _index, "list the endpoints"),
    Endpoint("GET", "/v1", _index, "list the endpoints"),
    Endpoint("GET", "/v1/topics", topics.list_topics, "list topics"),
    Endpoint("POST", "/v1/topics", topics.create_topic, "create a topic"),
    Endpoint("GET", "/v1/topics/{topic}", topics.describe_topic, "describe a topic"),
    Endpoint("PATCH", "/v1/topics/{topic}", topics.alter_topic, "add partitions or change config"),
    Endpoint("DELETE", "/v1/topics/{topic}", topics.delete_topic, "delete a topic"),
    Endpoint("POST", "/v1/topics/{topic}/records", records.produce_records, "produce records"),
    Endpoint("GET", f"{_RECORDS}/records", records.fetch_records, "fetch records"),
    Endpoint("GET", f"{_RECORDS}/offsets", records.lookup_offset, "look up an offset"),
    Endpoint("POST", "/v1/producers", producers.init_producer, "allocate a producer id"),
    Endpoint("GET", "/v1/groups", groups.list_groups, "list consumer groups"),
    Endpoint("POST", _GROUP_OFFSETS, groups.commit_offsets, "commit offsets"),
    Endpoint("GET", _GROUP_OFFSETS, group_coordination.committed_offsets, "read offsets"),
    Endpoint("GET", _GROUP, group_coordination.describe_group, "describe a consumer group"),
    Endpoint("DELETE", _GROUP, group_coordination.delete_group, "delete a consumer group"),
    Endpoint(
        "POST", _GROUP_HEARTBEAT, group_coordination.heartbeat, "join, heartbeat or leave a group"
    ),
    Endpoint("POST", _GROUP_RESET, group_coordination.reset_offsets, "reset committed offsets"),
    Endpoint("GET", "/v1/health/live", status.health_live, "liveness probe"),
    Endpoint("GET", "/v1/health/ready", status.health_ready, "readiness probe"),
    Endpoint("GET", "/v1/cluster", status.cluster_status, "Raft role, term and members"),
    Endpoint("POST", "/v1/cluster/members", cluster.add_member, "add a cluster member"),
    Endpoint(
        "DELETE", "/v1/cluster/members/{member}", cluster.remove_member, "remove a cluster member"
    ),
    Endpoint("POST", "/v1/cluster/leader", cluster.transfer_leader, "transfer Raft leadership"),
    Endpoint("GET", "/metrics", metrics_endpoint, "Prometheus metrics of this node"),
    Endpoint(
        "GET",
        "/internal/v1/partitions/{topic}/{partition}/batches",
        internal.fetch_batches,
        "raw record batches for a member that copies records it missed",
    ),
)


async def _signal_shutdown(app: web.Application) -> None:
    app[SHUTDOWN_KEY].set()


def create_app(
    broker: Broker, config: NodeConfig, metrics: NodeMetrics | None = None
) -> web.Application:
    """Build the HTTP API application for ``broker``.

    Request bodies larger than ``config.max_request_bytes`` are rejected with
    413 ``request_too_large`` before any of them reaches the broker.
    ``metrics`` is the node's registry for GET /metrics; without it the app
    builds one that reads only the broker.
    """
    episodes = FailureEpisodes()
    app = web.Application(
        # The metrics middleware is outermost, so it also times rendered error responses.
        middlewares=[request_metrics_middleware, error_middleware(episodes)],
        client_max_size=config.max_request_bytes,
    )
    app[BROKER_KEY] = broker
    app[CONFIG_KEY] = config
    app[SHUTDOWN_KEY] = asyncio.Event()
    app[LONG_POLL_KEY] = LongPollStatistics()
    app[EPISODES_KEY] = episodes
    app[METRICS_KEY] = metrics if metrics is not None else NodeMetrics(broker)
    app.on_shutdown.append(_signal_shutdown)

    for endpoint in ENDPOINTS:
        pattern = _ROUTE_PATTERNS.get(endpoint.path, endpoint.path)
        if endpoint.method == "GET":
            # add_get also registers HEAD for the route.
            app.router.add_get(pattern, endpoint.handler)
        else:
            app.router.add_route(endpoint.method, pattern, endpoint.handler)
    return app
