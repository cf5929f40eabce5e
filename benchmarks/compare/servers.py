"""Start and stop the compared systems on 127.0.0.1: Kaflow, NATS JetStream and Redis.

Each system gets fresh data under its own directory of the run, free ports
picked at start, and a pidfile there. ``endpoint()`` returns what the
client process needs to connect, as a JSON-ready dict.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

from benchmarks.compare.processes import (
    HarnessError,
    ServerProcess,
    free_ports,
    http_ok,
    port_open,
    wait_until,
)

__all__ = [
    "KaflowCluster",
    "NatsCluster",
    "RedisServer",
    "System",
    "check_installed",
    "installed",
    "make_system",
]

_HOST = "127.0.0.1"
_START_TIMEOUT_S = 60.0


def installed(program: str) -> bool:
    return shutil.which(program) is not None


def _program_version(command: list[str]) -> str:
    try:
        output = subprocess.run(command, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"
    return output.strip().splitlines()[0] if output.strip() else "unknown"


class System:
    """A set of server processes under ``run_dir/name``."""

    name = ""

    def __init__(self, run_dir: Path) -> None:
        self.dir = run_dir / self.name
        self.pidfile = self.dir / "pids"
        self.processes: list[ServerProcess] = []

    def start(self) -> None:
        raise NotImplementedError

    def endpoint(self) -> dict[str, Any]:
        raise NotImplementedError

    def version(self) -> str:
        raise NotImplementedError

    def server_pids(self) -> dict[str, int]:
        return {p.label: p.pid for p in self.processes if p.running()}

    def stop(self) -> None:
        for process in self.processes:
            process.stop()
        self.pidfile.unlink(missing_ok=True)

    def remove_data(self) -> None:
        """Delete this system's directory; call after stop(), and only when nothing failed."""
        shutil.rmtree(self.dir, ignore_errors=True)

    def _fresh_dir(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)


class KaflowCluster(System):
    """Kaflow nodes, each a `python -m kaflow serve` process with ``--fsync always``."""

    name = "kaflow"

    def __init__(self, run_dir: Path, nodes: int = 3, log_level: str = "WARNING") -> None:
        super().__init__(run_dir)
        self.nodes = nodes
        self.log_level = log_level
        self.http_ports: list[int] = []
        self.raft_ports: list[int] = []
        self.secret = secrets.token_hex(32)

    def start(self) -> None:
        self._fresh_dir()
        ports = free_ports(2 * self.nodes)
        self.http_ports = ports[: self.nodes]
        self.raft_ports = ports[self.nodes :]
        self.processes = [self._node_process(index) for index in range(self.nodes)]
        for process in self.processes:
            process.start()
        self.wait_ready()

    def _node_process(self, index: int) -> ServerProcess:
        raft_addresses = [f"{_HOST}:{port}" for port in self.raft_ports]
        command = [
            sys.executable, "-m", "kaflow", "serve",
            "--data-dir", str(self.dir / f"node-{index + 1}"),
            "--node-id", str(index + 1),
            "--host", _HOST,
            "--port", str(self.http_ports[index]),
            "--raft-port", str(self.raft_ports[index]),
            "--fsync", "always",
            "--log-level", self.log_level,
        ]  # fmt: skip
        for peer_index, address in enumerate(raft_addresses):
            if peer_index != index:
                command += ["--peer", address]
        env = {**os.environ, "KAFLOW_CLUSTER_SECRET": self.secret}
        return ServerProcess(
            label=f"node-{index + 1}",
            command=command,
            log_path=self.dir / f"node-{index + 1}.log",
            pidfile=self.pidfile,
            env=env,
        )

    def urls(self) -> list[str]:
        return [f"http://{_HOST}:{port}" for port in self.http_ports]

    def wait_ready(self, timeout_s: float = _START_TIMEOUT_S) -> float:
        """Wait until every running node is ready and one of them leads; return seconds waited."""

        def ready() -> bool:
            for process in self.processes:
                process.check_running()
            running = [
                url for url, p in zip(self.urls(), self.processes, strict=True) if p.running()
            ]
            if not all(http_ok(f"{url}/v1/health/ready") for url in running):
                return False
            return self.leader_index() is not None

        return wait_until(ready, timeout_s, f"{self.nodes}-node Kaflow cluster ready")

    def status(self, index: int) -> dict[str, Any] | None:
        """GET /v1/cluster of node ``index``, or None when it does not respond."""
        try:
            url = f"{self.urls()[index]}/v1/cluster"
            with urllib.request.urlopen(url, timeout=2) as response:
                body: dict[str, Any] = json.load(response)
                return body
        except (OSError, ValueError):
            return None

    def open_gaps(self, index: int) -> int | None:
        """Record ranges node ``index`` still has to copy from a peer, from its /metrics."""
        try:
            url = f"{self.urls()[index]}/metrics"
            with urllib.request.urlopen(url, timeout=2) as response:
                text = response.read().decode()
        except (OSError, ValueError):
            return None
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            if name == "kaflow_catchup_open_gaps":
                return int(float(value))
        return None

    def leader_index(self) -> int | None:
        for index, process in enumerate(self.processes):
            if not process.running():
                continue
            body = self.status(index)
            if body is not None and body.get("role") == "leader":
                return index
        return None

    def endpoint(self) -> dict[str, Any]:
        return {"urls": self.urls()}

    def version(self) -> str:
        return _kaflow_version()


def _kaflow_version() -> str:
    from importlib.metadata import version

    repo = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        commit, dirty = "unknown", ""
    suffix = " with uncommitted changes" if dirty else ""
    return f"{version('kaflow')} (commit {commit}{suffix}), Python {sys.version.split()[0]}"


class NatsCluster(System):
    """Three nats-server processes with JetStream, joined by routes on loopback."""

    name = "nats"
    nodes = 3

    def __init__(self, run_dir: Path) -> None:
        super().__init__(run_dir)
        self.client_ports: list[int] = []
        self.monitor_ports: list[int] = []

    def start(self) -> None:
        self._fresh_dir()
        ports = free_ports(3 * self.nodes)
        self.client_ports = ports[0 : self.nodes]
        route_ports = ports[self.nodes : 2 * self.nodes]
        self.monitor_ports = ports[2 * self.nodes :]
        routes = ", ".join(f"nats-route://{_HOST}:{port}" for port in route_ports)
        self.processes = []
        for index in range(self.nodes):
            config = self.dir / f"n{index + 1}.conf"
            store = self.dir / f"n{index + 1}"
            config.write_text(
                f"server_name: n{index + 1}\n"
                f"listen: {_HOST}:{self.client_ports[index]}\n"
                f"http: {_HOST}:{self.monitor_ports[index]}\n"
                "max_payload: 1MB\n"
                f'jetstream {{ store_dir: "{store}", max_memory_store: 256MB, '
                "max_file_store: 16GB }\n"
                f"cluster {{ name: kaflow_bench, listen: {_HOST}:{route_ports[index]}, "
                f"routes: [{routes}] }}\n"
            )
            self.processes.append(
                ServerProcess(
                    label=f"n{index + 1}",
                    command=["nats-server", "-c", str(config)],
                    log_path=self.dir / f"n{index + 1}.log",
                    pidfile=self.pidfile,
                )
            )
        for process in self.processes:
            process.start()

        def healthy() -> bool:
            for process in self.processes:
                process.check_running()
            return all(
                http_ok(f"http://{_HOST}:{port}/healthz?js-enabled-only=true")
                for port in self.monitor_ports
            )

        wait_until(healthy, _START_TIMEOUT_S, "3-node NATS JetStream cluster healthy")

    def endpoint(self) -> dict[str, Any]:
        return {"servers": [f"nats://{_HOST}:{port}" for port in self.client_ports]}

    def version(self) -> str:
        return _program_version(["nats-server", "--version"])


class RedisServer(System):
    """One redis-server with the append-only file fsynced before each reply."""

    name = "redis"

    def __init__(self, run_dir: Path) -> None:
        super().__init__(run_dir)
        self.port = 0

    def start(self) -> None:
        self._fresh_dir()
        self.port = free_ports(1)[0]
        command = [
            "redis-server",
            "--bind", _HOST,
            "--port", str(self.port),
            "--dir", str(self.dir),
            "--appendonly", "yes",
            "--appendfsync", "always",
            # No RDB snapshots or AOF rewrites, so no fork lands inside a measurement.
            "--save", "",
            "--auto-aof-rewrite-percentage", "0",
            "--daemonize", "no",
        ]  # fmt: skip
        process = ServerProcess(
            label="redis", command=command, log_path=self.dir / "redis.log", pidfile=self.pidfile
        )
        self.processes = [process]
        process.start()

        def listening() -> bool:
            process.check_running()
            return port_open(self.port)

        wait_until(listening, _START_TIMEOUT_S, "redis-server listening")

    def endpoint(self) -> dict[str, Any]:
        return {"url": f"redis://{_HOST}:{self.port}"}

    def version(self) -> str:
        return _program_version(["redis-server", "--version"])


def check_installed(system: str) -> str | None:
    """Return why ``system`` cannot run here, or None when its server is installed."""
    program = {"nats": "nats-server", "redis": "redis-server"}.get(system)
    if program is not None and not installed(program):
        return f"{program} is not installed (apt-get install {program})"
    return None


def make_system(name: str, run_dir: Path) -> System:
    if name == "kaflow":
        return KaflowCluster(run_dir)
    if name == "nats":
        return NatsCluster(run_dir)
    if name == "redis":
        return RedisServer(run_dir)
    raise HarnessError(f"unknown system {name!r}: use kaflow, nats or redis")
