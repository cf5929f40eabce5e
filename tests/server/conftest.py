"""Fixtures: one real Node per test package and the HTTP API on a real socket.

Every test in tests/server runs on the package's event loop (each module
sets ``pytestmark = pytest.mark.asyncio(loop_scope="package")``) so that the
tests can share one started Node. Tests keep apart by using topic and group
names made from their own test name.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from kaflow.broker import Broker
from kaflow.config import FsyncPolicy, NodeConfig
from kaflow.server import HttpServer, create_app
from tests.harness import free_port
from tests.server.helpers import Reply, call, topic_name_for

NODE_START_TIMEOUT_S = 60.0


@dataclass
class Api:
    """A client session bound to one served app, and the broker behind it."""

    session: aiohttp.ClientSession
    broker: Broker
    config: NodeConfig
    app: web.Application
    server: HttpServer
    url: str

    async def call(self, method: str, path: str, **kwargs: Any) -> Reply:
        return await call(self.session, method, path, **kwargs)

    async def create_topic(self, name: str, partitions: int = 1, **config: Any) -> dict[str, Any]:
        reply = await self.call(
            "POST",
            "/v1/topics",
            json_body={"name": name, "partitions": partitions, "config": config},
        )
        assert reply.status == 201, reply.body
        body: dict[str, Any] = reply.body
        return body

    async def produce(self, topic: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        reply = await self.call(
            "POST", f"/v1/topics/{topic}/records", json_body={"records": records}
        )
        assert reply.status == 200, reply.body
        produced: list[dict[str, Any]] = reply.body["records"]
        return produced

    async def high_watermarks(self, topic: str) -> list[int]:
        reply = await self.call("GET", f"/v1/topics/{topic}")
        assert reply.status == 200, reply.body
        return [partition["high_watermark"] for partition in reply.body["partitions"]]

    async def topic_names(self) -> list[str]:
        reply = await self.call("GET", "/v1/topics")
        assert reply.status == 200, reply.body
        return [topic["name"] for topic in reply.body["topics"]]


async def _wait_ready(broker: Broker, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not broker.is_ready():
        if time.monotonic() > deadline:
            raise AssertionError(f"node was not ready within {timeout} s")
        await asyncio.sleep(0.02)


@pytest_asyncio.fixture(scope="package", loop_scope="package")
async def broker_node(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[Broker, NodeConfig]]:
    """A started single-member Node with its data in a fresh directory."""
    from kaflow.node import Node

    config = NodeConfig(
        data_dir=tmp_path_factory.mktemp("node"),
        port=0,
        raft_port=free_port(),
        # The tests here check the HTTP layer, not durability.
        fsync=FsyncPolicy.NEVER,
    )
    started = Node(config)
    await started.start()
    try:
        await _wait_ready(started, NODE_START_TIMEOUT_S)
        yield started, config
    finally:
        await started.stop()


ServeFunction = Callable[..., Awaitable[Api]]


@pytest_asyncio.fixture(loop_scope="package")
async def serve(broker_node: tuple[Broker, NodeConfig]) -> AsyncIterator[ServeFunction]:
    """Serve create_app(node, config) on 127.0.0.1, port 0; keyword arguments change the config."""
    broker, base_config = broker_node
    servers: list[HttpServer] = []
    sessions: list[aiohttp.ClientSession] = []

    async def start(**config_changes: Any) -> Api:
        config = dataclasses.replace(base_config, **config_changes)
        app = create_app(broker, config)
        server = HttpServer(app, "127.0.0.1", 0)
        url = await server.start()
        servers.append(server)
        session = aiohttp.ClientSession(base_url=url)
        sessions.append(session)
        return Api(session, broker, config, app, server, url)

    yield start
    for session in sessions:
        await session.close()
    for server in servers:
        await server.stop()


@pytest_asyncio.fixture(loop_scope="package")
async def api(serve: ServeFunction) -> Api:
    """The API with the node's own configuration."""
    return await serve()


@pytest.fixture
def topic(request: pytest.FixtureRequest) -> str:
    """A topic name no other test uses (the topic is not created)."""
    return topic_name_for(request.node.name)
