from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from kaflow.client import AsyncProducer
from tests.harness import NodeProcess


class LossyProxy:
    """An HTTP proxy on 127.0.0.1 that drops the reply to the first produce request.

    The node stores that request, but the client sees the connection close
    and must retry. ``GET /v1/cluster`` gets a 404 response so the client
    does not discover the node's own URL and keeps talking to the proxy.
    """

    def __init__(self, target: str) -> None:
        self.target = target
        self.produce_requests = 0
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        self._session = aiohttp.ClientSession()

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        if request.path == "/v1/cluster":
            body = {"error": {"code": "not_found", "message": "hidden by the test proxy"}}
            return web.json_response(body, status=404)
        assert self._session is not None
        headers = {"Content-Type": request.headers.get("Content-Type", "application/json")}
        async with self._session.request(
            request.method,
            self.target + request.path_qs,
            data=await request.read(),
            headers=headers,
        ) as response:
            payload = await response.read()
            status = response.status
        if request.method == "POST" and request.path.endswith("/records"):
            self.produce_requests += 1
            if self.produce_requests == 1:
                assert request.transport is not None
                request.transport.close()
        return web.Response(body=payload, status=status, content_type="application/json")


@pytest.fixture
async def proxy(node: NodeProcess) -> AsyncIterator[LossyProxy]:
    lossy = LossyProxy(node.url)
    await lossy.start()
    yield lossy
    await lossy.stop()


@pytest.mark.parametrize(
    ("idempotent", "expected", "offsets"),
    [(True, ["a", "b"], (0, 1)), (False, ["a", "b", "a", "b"], (2, 3))],
    ids=["idempotent", "plain"],
)
async def test_producer_retry_after_lost_reply(
    node: NodeProcess,
    proxy: LossyProxy,
    idempotent: bool,
    expected: list[str],
    offsets: tuple[int, int],
) -> None:
    node.create_topic("orders")

    async with AsyncProducer(
        proxy.url, linger_ms=600_000, retry_backoff_ms=10, enable_idempotence=idempotent
    ) as producer:
        first = await producer.send("orders", b"a", partition=0)
        second = await producer.send("orders", b"b", partition=0)
        await producer.flush()

    assert proxy.produce_requests == 2
    assert [r["value"] for r in node.fetch_all("orders", 0)] == expected
    assert (first.result().offset, second.result().offset) == offsets
