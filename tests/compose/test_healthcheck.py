"""cluster/docker/healthcheck.py, the image's HEALTHCHECK, run against real HTTP servers."""

from __future__ import annotations

import importlib.util
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType

import pytest

from tests.compose.docker_harness import REPO_ROOT

SCRIPT = REPO_ROOT / "cluster" / "docker" / "healthcheck.py"


def load_healthcheck() -> ModuleType:
    spec = importlib.util.spec_from_file_location("kaflow_healthcheck", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


healthcheck = load_healthcheck()


class ReadyHandler(BaseHTTPRequestHandler):
    """Handler for /v1/health/ready that responds with the status in ``server.ready_status``."""

    server: ReadyServer

    def do_GET(self) -> None:
        if self.path != "/v1/health/ready":
            self.send_error(404)
            return
        status = self.server.ready_status
        body = {"status": "ready"} if status == 200 else {"error": {"code": "not_ready"}}
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        """Drop the per-request line that the base class writes to stderr."""


class ReadyServer(ThreadingHTTPServer):
    ready_status = 200


@pytest.fixture
def ready_server() -> Iterator[ReadyServer]:
    server = ReadyServer(("127.0.0.1", 0), ReadyHandler)
    # A short poll interval makes shutdown() return quickly.
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def write_ready_file(path: Path, http: str) -> Path:
    path.write_text(json.dumps({"http": http, "raft": "0.0.0.0:8093", "pid": 7, "node_id": "1"}))
    return path


def test_base_url_maps_wildcard_to_loopback(tmp_path: Path) -> None:
    ready_file = write_ready_file(tmp_path / "ready.json", "http://0.0.0.0:18092")

    url = healthcheck.node_base_url({"KAFLOW_READY_FILE": str(ready_file)})

    assert url == "http://127.0.0.1:18092"


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, "http://127.0.0.1:8092"),
        ({"KAFLOW_HOST": "0.0.0.0", "KAFLOW_PORT": "9000"}, "http://127.0.0.1:9000"),
        ({"KAFLOW_HOST": "::", "KAFLOW_PORT": "9000"}, "http://[::1]:9000"),
        ({"KAFLOW_HOST": "10.1.2.3"}, "http://10.1.2.3:8092"),
        ({"KAFLOW_READY_FILE": "", "KAFLOW_PORT": "9001"}, "http://127.0.0.1:9001"),
    ],
    ids=["defaults", "ipv4-wildcard", "ipv6-wildcard", "specific-host", "empty-ready-file"],
)
def test_base_url_from_environment(environ: dict[str, str], expected: str) -> None:
    assert healthcheck.node_base_url(environ) == expected


def test_base_url_rejects_invalid_port() -> None:
    with pytest.raises(healthcheck.Unhealthy, match="invalid KAFLOW_PORT='http'"):
        healthcheck.node_base_url({"KAFLOW_PORT": "http"})


def test_base_url_missing_ready_file(tmp_path: Path) -> None:
    with pytest.raises(healthcheck.Unhealthy, match="still starting"):
        healthcheck.node_base_url({"KAFLOW_READY_FILE": str(tmp_path / "absent.json")})


@pytest.mark.parametrize(
    "content", ["not json", "[]", '{"http": 5}', '{"http": "http://host-without-port"}'],
    ids=["not-json", "not-object", "http-not-string", "no-port"],
)  # fmt: skip
def test_base_url_invalid_ready_file(tmp_path: Path, content: str) -> None:
    path = tmp_path / "ready.json"
    path.write_text(content)

    with pytest.raises(healthcheck.Unhealthy, match="ready file"):
        healthcheck.node_base_url({"KAFLOW_READY_FILE": str(path)})


def test_check_ready_accepts_200(ready_server: ReadyServer) -> None:
    port = ready_server.server_address[1]

    message = healthcheck.check_ready(f"http://127.0.0.1:{port}")

    assert message == f"ready: http://127.0.0.1:{port}/v1/health/ready returned 200"


def test_check_ready_reports_503_code(ready_server: ReadyServer) -> None:
    ready_server.ready_status = 503
    port = ready_server.server_address[1]

    with pytest.raises(healthcheck.Unhealthy, match="returned 503 not_ready"):
        healthcheck.check_ready(f"http://127.0.0.1:{port}")


def test_check_ready_reports_refused_connection(ready_server: ReadyServer) -> None:
    port = ready_server.server_address[1]
    ready_server.shutdown()
    ready_server.server_close()

    with pytest.raises(healthcheck.Unhealthy, match="failed"):
        healthcheck.check_ready(f"http://127.0.0.1:{port}")


def test_main_exit_status_follows_readiness(
    ready_server: ReadyServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    port = ready_server.server_address[1]
    ready_file = write_ready_file(tmp_path / "ready.json", f"http://0.0.0.0:{port}")
    monkeypatch.setenv("KAFLOW_READY_FILE", str(ready_file))

    ready_exit = healthcheck.main()
    ready_server.ready_status = 503
    not_ready_exit = healthcheck.main()

    assert ready_exit == 0
    assert not_ready_exit == 1
    assert capsys.readouterr().out.splitlines() == [
        f"ready: http://127.0.0.1:{port}/v1/health/ready returned 200",
        f"not ready: http://127.0.0.1:{port}/v1/health/ready returned 503 not_ready",
    ]
