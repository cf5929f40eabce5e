from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from kaflow.cli.exit_codes import NodeUnreachableError, UsageError
from kaflow.cli.http import NodeClient, validate_bootstrap_url
from kaflow.errors import KaflowError, UnknownTopicError


class ScriptedHandler(BaseHTTPRequestHandler):
    """Responds with the status and body that the test put into ``server.responses``."""

    server: ScriptedServer

    def do_GET(self) -> None:
        self._respond()

    def do_POST(self) -> None:
        self._respond()

    def _respond(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.server.requests.append((self.command, self.path, self.rfile.read(length)))
        status, body = self.server.responses.pop(0)
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class ScriptedServer(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), ScriptedHandler)
        self.responses: list[tuple[int, bytes]] = []
        self.requests: list[tuple[str, str, bytes]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    scripted = ScriptedServer()
    thread = threading.Thread(target=scripted.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield scripted
    scripted.shutdown()
    scripted.server_close()
    thread.join(timeout=10)


def test_client_sends_json_and_decodes_response(server: ScriptedServer) -> None:
    server.responses.append((201, b'{"name": "orders", "partitions": [], "config": {}}'))

    topic = NodeClient(server.url, 5).create_topic("orders", 3, {"retention.ms": 1000})

    assert topic["name"] == "orders"
    method, path, body = server.requests[0]
    assert (method, path) == ("POST", "/v1/topics")
    assert json.loads(body) == {"name": "orders", "partitions": 3, "config": {"retention.ms": 1000}}


def test_client_quotes_path_segments(server: ScriptedServer) -> None:
    server.responses.append((200, b'{"group": "a/b c", "offsets": []}'))

    NodeClient(server.url, 5).committed_offsets("a/b c")

    assert server.requests[0][1] == "/v1/groups/a%2Fb%20c/offsets"


def test_client_raises_error_class_from_body(server: ScriptedServer) -> None:
    body = {"error": {"code": "unknown_topic", "message": "no topic x", "details": {"topic": "x"}}}
    server.responses.append((404, json.dumps(body).encode()))

    with pytest.raises(UnknownTopicError, match="no topic x") as raised:
        NodeClient(server.url, 5).describe_topic("x")

    assert raised.value.details == {"topic": "x", "http_status": 404}


def test_client_error_without_json_body(server: ScriptedServer) -> None:
    server.responses.append((502, b"<html>bad gateway</html>"))

    with pytest.raises(KaflowError, match="unexpected error body") as raised:
        NodeClient(server.url, 5).list_topics()

    assert type(raised.value) is KaflowError
    assert raised.value.details["http_status"] == 502


def test_client_rejects_non_json_success(server: ScriptedServer) -> None:
    server.responses.append((200, b"not json"))

    with pytest.raises(KaflowError, match="not JSON"):
        NodeClient(server.url, 5).list_topics()


def test_client_rejects_wrong_response_shape(server: ScriptedServer) -> None:
    server.responses.append((200, b'{"topics": 5}'))

    with pytest.raises(KaflowError, match="where a list was expected"):
        NodeClient(server.url, 5).list_topics()


def test_client_ignores_proxy_variables(
    server: ScriptedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A proxy on a closed port would make every request fail if it were used.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        dead_proxy = f"http://127.0.0.1:{closed.getsockname()[1]}"
    monkeypatch.setenv("http_proxy", dead_proxy)
    monkeypatch.setenv("HTTP_PROXY", dead_proxy)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    server.responses.append((200, b'{"topics": []}'))

    assert NodeClient(server.url, 5).list_topics() == []


def test_client_connection_refused_is_unreachable() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"

    with pytest.raises(NodeUnreachableError, match="cannot connect to the node"):
        NodeClient(url, 5).list_topics()


def test_client_silent_node_times_out() -> None:
    # The kernel completes the handshake from the backlog, but nothing ever responds.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"

        with pytest.raises(NodeUnreachableError, match="no response from the node"):
            NodeClient(url, 0.2).list_topics()


@pytest.mark.parametrize("url", ["127.0.0.1:8092", "ftp://host", "http://", "http://host/?q=1"])
def test_bootstrap_url_rejected(url: str) -> None:
    with pytest.raises(UsageError, match="invalid bootstrap URL"):
        validate_bootstrap_url(url)


def test_bootstrap_url_trailing_slash_removed() -> None:
    assert validate_bootstrap_url("http://127.0.0.1:8092/") == "http://127.0.0.1:8092"
