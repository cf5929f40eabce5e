"""Start real `kaflow serve` processes for tests and talk to them over HTTP.

Each node gets its own data directory, a free Raft port on 127.0.0.1 and an
HTTP port chosen by the kernel (``--port 0``); the node writes its bound
address to a ready file, which the harness waits for.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

DEFAULT_START_TIMEOUT_S = 60.0


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that was free on ``host`` a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(
    predicate: Callable[[], bool], timeout: float, message: str, interval: float = 0.05
) -> None:
    """Poll ``predicate`` until it returns True; fail with ``message`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s: {message}")


class HttpError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"HTTP {status}: {body!r}")
        self.status = status
        self.body = body

    @property
    def code(self) -> str | None:
        if isinstance(self.body, dict) and isinstance(self.body.get("error"), dict):
            code = self.body["error"].get("code")
            return code if isinstance(code, str) else None
        return None


def http_json(method: str, url: str, body: Any = None, timeout: float = 30.0) -> tuple[int, Any]:
    """Send one JSON request; return (status, decoded body) or raise HttpError for >= 400."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
            return response.status, (json.loads(raw) if raw else None)
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            decoded: Any = json.loads(raw)
        except ValueError:
            decoded = raw.decode(errors="replace")
        raise HttpError(exc.code, decoded) from None


class NodeProcess:
    """One `kaflow serve` child process with its own data directory."""

    def __init__(
        self,
        data_dir: Path,
        node_id: str = "1",
        extra_args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.node_id = node_id
        self.extra_args = extra_args
        self.env = env
        self.raft_port = free_port()
        self.ready_file = data_dir.parent / f"{data_dir.name}.ready.json"
        self.log_path = data_dir.parent / f"{data_dir.name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "kaflow",
            "serve",
            "--data-dir",
            str(self.data_dir),
            "--node-id",
            self.node_id,
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--raft-port",
            str(self.raft_port),
            "--ready-file",
            str(self.ready_file),
            "--log-level",
            "INFO",
            *self.extra_args,
        ]

    def start(self, timeout: float = DEFAULT_START_TIMEOUT_S) -> NodeProcess:
        """Start the process and wait until /v1/health/ready returns 200."""
        self.ready_file.unlink(missing_ok=True)
        env = dict(os.environ)
        env.update(self.env or {})
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child for its lifetime
        try:
            self.process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, env=env
            )
        finally:
            log.close()
        wait_until(
            self._ready_file_written, timeout, f"node {self.node_id} ready file\n{self.tail_log()}"
        )
        wait_until(
            self.is_ready, timeout, f"node {self.node_id} /v1/health/ready\n{self.tail_log()}"
        )
        return self

    def _ready_file_written(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(
                f"node {self.node_id} exited with {self.process.returncode}\n{self.tail_log()}"
            )
        try:
            info = json.loads(self.ready_file.read_text())
        except (OSError, ValueError):
            return False
        self.url = str(info["http"])
        return True

    def is_ready(self) -> bool:
        try:
            status, _ = http_json("GET", f"{self.url}/v1/health/ready", timeout=5)
        except (HttpError, OSError):
            return False
        return status == 200

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL the process and reap it."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM the process and return its exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
                raise AssertionError(
                    f"node {self.node_id} ignored SIGTERM for {timeout} s\n{self.tail_log()}"
                ) from None
        return self.process.returncode

    def tail_log(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    # HTTP helpers.
    def get(self, path: str, timeout: float = 30.0) -> Any:
        return http_json("GET", self.url + path, timeout=timeout)[1]

    def post(self, path: str, body: Any, timeout: float = 30.0) -> Any:
        return http_json("POST", self.url + path, body, timeout=timeout)[1]

    def create_topic(self, name: str, partitions: int = 1, **config: Any) -> Any:
        return self.post("/v1/topics", {"name": name, "partitions": partitions, "config": config})

    def fetch_all(self, topic: str, partition: int) -> list[dict[str, Any]]:
        """Read a partition from its log start offset to its high watermark."""
        described = self.get(f"/v1/topics/{topic}")
        info = described["partitions"][partition]
        offset, end = info["log_start_offset"], info["high_watermark"]
        records: list[dict[str, Any]] = []
        while offset < end:
            page = self.get(
                f"/v1/topics/{topic}/partitions/{partition}/records?offset={offset}&max_records=10000"
            )
            records.extend(page["records"])
            if page["next_offset"] <= offset:
                raise AssertionError(f"fetch made no progress at offset {offset}: {page}")
            offset = page["next_offset"]
        return records
