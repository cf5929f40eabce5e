"""`kaflow cluster up`: a local 3-node cluster of `kaflow serve` child processes.

Each member listens on 127.0.0.1 with its own HTTP and Raft port, keeps its
data in ``<data_dir>/node-N`` and writes its log to ``<data_dir>/node-N.log``.
The cluster secret is generated on the first run and kept in
``<data_dir>/cluster-secret`` with mode 0600, so a restart with the same
data directory forms the same cluster again. The children run in their own
session, so a Ctrl-C in the terminal reaches only this supervisor, which
then sends SIGTERM to each member and waits for its clean stop.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

__all__ = ["SECRET_FILE", "LocalCluster", "LocalClusterError", "load_or_create_secret"]

logger = logging.getLogger(__name__)

SECRET_FILE = "cluster-secret"
_HOST = "127.0.0.1"
# Seconds a member gets to stop after SIGTERM before it is killed.
_STOP_TIMEOUT_S = 30.0
_POLL_INTERVAL_S = 0.1


class LocalClusterError(Exception):
    """A member failed to start, or the data directory or secret file is unusable."""


@dataclass
class _Member:
    node_id: str
    http_port: int
    raft_port: int
    data_dir: Path
    log_path: Path
    ready_file: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{_HOST}:{self.http_port}"

    @property
    def raft_address(self) -> str:
        return f"{_HOST}:{self.raft_port}"


def load_or_create_secret(data_dir: Path) -> str:
    """Return the secret in ``data_dir/cluster-secret``, creating it with mode 0600 if missing."""
    path = data_dir / SECRET_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_secret(path)
    except OSError as exc:
        raise LocalClusterError(f"cannot create {path}: {exc.strerror}") from exc
    secret = secrets.token_hex(32)
    with os.fdopen(fd, "w") as file:
        file.write(secret + "\n")
    return secret


def _read_secret(path: Path) -> str:
    if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise LocalClusterError(
            f"{path} is readable by other users; run chmod 600 {path} and start again"
        )
    secret = path.read_text().strip()
    if not secret:
        raise LocalClusterError(f"{path} is empty; delete it to generate a new secret")
    return secret


class LocalCluster:
    """Three `kaflow serve` processes on 127.0.0.1 forming one cluster."""

    def __init__(
        self,
        data_dir: Path,
        http_ports: tuple[int, ...],
        raft_ports: tuple[int, ...],
        log_level: str = "INFO",
    ) -> None:
        self.data_dir = data_dir
        self.log_level = log_level
        self.members = [
            _Member(
                node_id=str(index + 1),
                http_port=http_port,
                raft_port=raft_port,
                data_dir=data_dir / f"node-{index + 1}",
                log_path=data_dir / f"node-{index + 1}.log",
                ready_file=data_dir / f"node-{index + 1}.ready.json",
            )
            for index, (http_port, raft_port) in enumerate(zip(http_ports, raft_ports, strict=True))
        ]
        self._stop_requested = threading.Event()

    def run(self, start_timeout_s: float) -> int:
        """Start the members, print their endpoints, and stop them on SIGINT or SIGTERM."""
        previous = {
            signum: signal.signal(signum, self._on_signal)
            for signum in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            try:
                self.data_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise LocalClusterError(
                    f"cannot create data directory {self.data_dir}: {exc.strerror}"
                ) from exc
            secret = load_or_create_secret(self.data_dir)
            for member in self.members:
                self._spawn(member, secret)
            if not self._wait_ready(start_timeout_s):
                return 0
            self._print_endpoints()
            self._supervise()
            return 0
        finally:
            status = self._stop_all()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            print("cluster stopped", flush=True)
            if status != 0:
                print(f"a member exited with status {status}; see its log", flush=True)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._stop_requested.set()

    def _spawn(self, member: _Member, secret: str) -> None:
        peers = [other.raft_address for other in self.members if other is not member]
        command = [
            sys.executable,
            "-m",
            "kaflow",
            "serve",
            "--data-dir",
            str(member.data_dir),
            "--node-id",
            member.node_id,
            "--host",
            _HOST,
            "--port",
            str(member.http_port),
            "--raft-port",
            str(member.raft_port),
            "--ready-file",
            str(member.ready_file),
            "--log-level",
            self.log_level,
        ]
        for peer in peers:
            command += ["--peer", peer]
        env = dict(os.environ, KAFLOW_CLUSTER_SECRET=secret)
        member.ready_file.unlink(missing_ok=True)
        with open(member.log_path, "ab") as log:
            member.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        logger.info("member started node_id=%s pid=%d", member.node_id, member.process.pid)

    def _wait_ready(self, timeout_s: float) -> bool:
        """Wait until every member serves requests; False if a signal came first."""
        print(f"starting 3 Kaflow nodes, logs in {self.data_dir}/node-N.log", flush=True)
        deadline = time.monotonic() + timeout_s
        pending = list(self.members)
        while pending:
            if self._stop_requested.is_set():
                return False
            for member in list(pending):
                self._check_running(member)
                if _is_ready(member):
                    pending.remove(member)
            if time.monotonic() >= deadline:
                names = ", ".join(member.node_id for member in pending)
                raise LocalClusterError(
                    f"nodes {names} were not ready within {timeout_s:g} s; see their logs in "
                    f"{self.data_dir}"
                )
            self._stop_requested.wait(_POLL_INTERVAL_S)
        return True

    def _check_running(self, member: _Member) -> None:
        assert member.process is not None
        code = member.process.poll()
        if code is not None:
            raise LocalClusterError(
                f"node {member.node_id} exited with status {code} while starting:\n"
                f"{_tail(member.log_path)}"
            )

    def _print_endpoints(self) -> None:
        lines = ["Kaflow cluster is up (Ctrl-C stops it):"]
        for member in self.members:
            lines.append(
                f"  node {member.node_id}  http {member.url}  raft {member.raft_address}  "
                f"data {member.data_dir}  log {member.log_path}"
            )
        lines.append(f"try: kaflow --bootstrap {self.members[0].url} cluster status")
        print("\n".join(lines), flush=True)

    def _supervise(self) -> None:
        reported: set[str] = set()
        while not self._stop_requested.wait(0.5):
            for member in self.members:
                assert member.process is not None
                code = member.process.poll()
                if code is not None and member.node_id not in reported:
                    reported.add(member.node_id)
                    print(
                        f"node {member.node_id} exited with status {code}; see {member.log_path}",
                        flush=True,
                    )

    def _stop_all(self) -> int:
        """SIGTERM every running member, wait for each, and return the worst exit status."""
        running = [m for m in self.members if m.process is not None and m.process.poll() is None]
        if running:
            print("stopping the cluster", flush=True)
        for member in running:
            assert member.process is not None
            member.process.send_signal(signal.SIGTERM)
        worst = 0
        for member in self.members:
            if member.process is None:
                continue
            try:
                code = member.process.wait(timeout=_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                member.process.kill()
                code = member.process.wait()
                print(f"node {member.node_id} ignored SIGTERM and was killed", flush=True)
            if member in running:
                worst = max(worst, code if code >= 0 else 1)
        return worst


def _is_ready(member: _Member) -> bool:
    if not member.ready_file.exists():
        return False
    try:
        info = json.loads(member.ready_file.read_text())
        url = str(info["http"])
        with urllib.request.urlopen(f"{url}/v1/health/ready", timeout=2) as response:
            return bool(response.status == 200)
    except (OSError, ValueError, KeyError, urllib.error.URLError):
        return False


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
