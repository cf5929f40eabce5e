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
from kaflow.config import NodeConfig
from kaflow.server.context import (
    BROKER_KEY,
    CONFIG_KEY,
    LONG_POLL_KEY,
    SHUTDOWN_KEY,
    LongPollStatistics,
)
from kaflow.server.error_handling import FailureEpisodes, error_middleware
from kaflow.server.handlers import groups, records, status, topics
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
    Endpoint("GET", "/v1/groups", groups.list_groups, "list consumer groups"),
    Endpoint("POST", "/v1/groups/{group}/offsets", groups.commit_offsets, "commit offsets"),
    Endpoint("GET", "/v1/groups/{group}/offsets", groups.committed_offsets, "read offsets"),
    Endpoint("GET", "/v1/health/live", status.health_live, "liveness probe"),
    Endpoint("GET", "/v1/health/ready", status.health_ready, "readiness probe"),
    Endpoint("GET", "/v1/cluster", status.cluster_status, "Raft role, term and members"),
)


async def _signal_shutdown(app: web.Application) -> None:
    app[SHUTDOWN_KEY].set()


def create_app(broker: Broker, config: NodeConfig) -> web.Application:
    """Build the HTTP API application for ``broker``.

    Request bodies larger than ``config.max_request_bytes`` are rejected with
    413 ``request_too_large`` before any of them reaches the broker.
    """
    episodes = FailureEpisodes()
    app = web.Application(
        middlewares=[error_middleware(episodes)],
        client_max_size=config.max_request_bytes,
    )
    app[BROKER_KEY] = broker
    app[CONFIG_KEY] = config
    app[SHUTDOWN_KEY] = asyncio.Event()
    app[LONG_POLL_KEY] = LongPollStatistics()
    app[EPISODES_KEY] = episodes
    app.on_shutdown.append(_signal_shutdown)

    for endpoint in ENDPOINTS:
        if endpoint.method == "GET":
            # add_get also registers HEAD for the route.
            app.router.add_get(endpoint.path, endpoint.handler)
        else:
            app.router.add_route(endpoint.method, endpoint.path, endpoint.handler)
    return app
