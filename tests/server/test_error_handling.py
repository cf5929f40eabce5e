from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from kaflow.config import NodeConfig
from kaflow.errors import (
    LeaderNotAvailableError,
    error_from_payload,
)
from kaflow.server import HttpServer, create_app
from kaflow.server.app import EPISODES_KEY
from kaflow.server.error_handling import FailureEpisodes, error_middleware
from tests.harness import free_port
from tests.server.conftest import Api, ServeFunction
from tests.server.helpers import call, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="package")


async def test_error_body_round_trips_over_http(api: Api, topic: str) -> None:
    reply = await api.call("GET", f"/v1/topics/{topic}")

    rebuilt = error_from_payload(reply.body)

    assert set(reply.error) == {"code", "message", "retriable", "details"}
    assert type(rebuilt).__name__ == "UnknownTopicError"
    assert rebuilt.http_status == reply.status


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v2/topics"),
        ("GET", "/v1/topics/t/nothing"),
        ("POST", "/nowhere"),
        ("GET", "/v1/topics/"),
    ],
    ids=["other-version", "unknown-subresource", "post-unknown", "trailing-slash"],
)
async def test_unknown_route_is_json_404(api: Api, method: str, path: str) -> None:
    reply = await api.call(method, path)

    assert reply.status == 404
    assert reply.content_type == "application/json"
    assert reply.code == "not_found"
    assert path in reply.error["message"]
    assert reply.error["retriable"] is False


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/v1/topics", ["GET", "HEAD", "POST"]),
        ("POST", "/v1/health/live", ["GET", "HEAD"]),
        ("DELETE", "/v1/groups", ["GET", "HEAD"]),
    ],
    ids=["put-topics", "post-health", "delete-groups"],
)
async def test_wrong_method_is_json_405(
    api: Api, method: str, path: str, allowed: list[str]
) -> None:
    reply = await api.call(method, path)

    assert reply.status == 405
    assert reply.content_type == "application/json"
    assert reply.code == "method_not_allowed"
    assert reply.error["details"] == {"method": method, "allowed": allowed}
    assert reply.headers["Allow"] == ", ".join(allowed)


async def test_head_answers_without_body(api: Api) -> None:
    reply = await api.call("HEAD", "/v1/health/live")

    assert reply.status == 200
    assert reply.body == b""


async def test_unexpected_exception_is_500_without_traceback(
    serve: ServeFunction, caplog: pytest.LogCaptureFixture
) -> None:
    api = await serve()

    async def broken(request: web.Request) -> web.Response:
        raise ZeroDivisionError("secret internal detail")

    # The router is frozen once served; a second app shares the middleware.
    app = create_app(api.broker, api.config)
    app.router.add_get("/broken", broken)
    server = HttpServer(app, "127.0.0.1", 0)
    url = await server.start()
    try:
        with caplog.at_level(logging.ERROR, logger="kaflow.server"):
            async with aiohttp.ClientSession(base_url=url) as session:
                reply = await call(session, "GET", "/broken")
    finally:
        await server.stop()

    assert reply.status == 500
    assert reply.code == "internal_error"
    assert "secret internal detail" not in str(reply.body)
    assert "Traceback" not in str(reply.body)
    error_id = reply.error["details"]["error_id"]
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert error_id in record.getMessage()
    assert record.exc_info is not None
    assert record.exc_info[0] is ZeroDivisionError


async def test_middleware_reraises_cancelled_error() -> None:
    async def cancelled(request: web.Request) -> web.Response:
        raise asyncio.CancelledError

    middleware = error_middleware(FailureEpisodes())
    request = make_mocked_request("GET", "/v1/topics")

    with pytest.raises(asyncio.CancelledError):
        await middleware(request, cancelled)


async def serve_handler(
    handler: Callable[[web.Request], Awaitable[web.Response]], episodes: FailureEpisodes
) -> HttpServer:
    """Serve ``handler`` at GET /probe behind the error middleware on a real socket."""
    app = web.Application(middlewares=[error_middleware(episodes)])
    app.router.add_get("/probe", handler)
    server = HttpServer(app, "127.0.0.1", 0)
    await server.start()
    return server


async def test_middleware_renders_kaflow_error() -> None:
    async def failing(request: web.Request) -> web.Response:
        raise LeaderNotAvailableError("no leader during election", term=4)

    server = await serve_handler(failing, FailureEpisodes())
    try:
        async with aiohttp.ClientSession(base_url=server.url) as session:
            reply = await call(session, "GET", "/probe")
    finally:
        await server.stop()

    rebuilt = error_from_payload(reply.body)
    assert reply.status == 503
    assert isinstance(rebuilt, LeaderNotAvailableError)
    assert rebuilt.retriable is True
    assert rebuilt.details == {"term": 4}


async def test_server_failures_logged_once_per_episode(caplog: pytest.LogCaptureFixture) -> None:
    episodes = FailureEpisodes()
    failing = True

    async def handler(request: web.Request) -> web.Response:
        if failing:
            raise LeaderNotAvailableError("no leader")
        return web.Response(text="ok")

    server = await serve_handler(handler, episodes)
    try:
        with caplog.at_level(logging.INFO, logger="kaflow.server"):
            async with aiohttp.ClientSession(base_url=server.url) as session:
                for _ in range(5):
                    await call(session, "GET", "/probe")
                open_before = episodes.open_episodes()
                failing = False
                await call(session, "GET", "/probe")
    finally:
        await server.stop()

    messages = [r.getMessage() for r in caplog.records if r.name == "kaflow.server.error_handling"]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, messages
    assert "leader_not_available" in warnings[0].getMessage()
    assert open_before == {("GET /probe", "leader_not_available"): 5}
    assert any("failures=5" in message for message in messages), messages
    assert episodes.open_episodes() == {}


async def test_client_errors_open_no_episode(api: Api, topic: str) -> None:
    await api.call("GET", f"/v1/topics/{topic}")
    await api.call("PUT", "/v1/topics")

    assert api.app[EPISODES_KEY].open_episodes() == {}


async def test_health_ready_before_start_is_503(tmp_path: Path) -> None:
    from kaflow.node import Node

    config = NodeConfig(data_dir=tmp_path / "data", port=0, raft_port=free_port())
    unstarted = Node(config)
    server = HttpServer(create_app(unstarted, config), "127.0.0.1", 0)
    url = await server.start()
    try:
        async with aiohttp.ClientSession(base_url=url) as session:
            reply = await call(session, "GET", "/v1/health/ready")
            live = await call(session, "GET", "/v1/health/live")
    finally:
        await server.stop()

    assert reply.status == 503
    assert reply.code == "not_ready"
    assert reply.error["retriable"] is True
    assert live.status == 200


async def test_access_log_names_request(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    def access_lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "kaflow.access"]

    with caplog.at_level(logging.INFO, logger="kaflow.access"):
        await api.call("GET", "/v1/health/live?probe=1")
        await api.call("GET", "/v1/nowhere")
        # aiohttp writes the access line after sending the response.
        await wait_until(lambda: len(access_lines()) >= 2, 10, "two access log lines")

    lines = access_lines()
    assert any("method=GET" in line and "status=400" in line for line in lines), lines
    assert any("/v1/nowhere" in line and "status=404" in line for line in lines), lines


async def test_error_response_renders_unserializable_details() -> None:
    from kaflow.errors import InvalidRequestError
    from kaflow.server.error_handling import error_response

    error = InvalidRequestError("bad value", value=b"\xff", ratio=float("nan"), count=3)

    response = error_response(error)

    assert response.status == 400
    body = json.loads(response.body)
    assert body["error"]["details"] == {"value": "b'\\xff'", "ratio": "nan", "count": 3}
