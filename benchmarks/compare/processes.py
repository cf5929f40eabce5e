"""Server processes that the harness starts, meters and stops by their own PIDs.

Every started process is appended to a pidfile (``label pid`` lines) in its
run directory, so a harness that died can be cleaned up by hand with
``kill $(cut -d' ' -f2 PIDFILE)``. Stopping sends SIGTERM, then SIGKILL
after a grace period, to the recorded PID only.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "HarnessError",
    "ServerProcess",
    "cpu_seconds",
    "free_ports",
    "http_ok",
    "port_open",
    "rss_bytes",
    "wait_until",
]

_HOST = "127.0.0.1"
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


class HarnessError(Exception):
    """A server failed to start or stop, or a workload failed; the message names which."""


def free_ports(count: int) -> list[int]:
    """Return ``count`` distinct TCP ports that were free on 127.0.0.1 a moment ago."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind((_HOST, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((_HOST, port)) == 0


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (OSError, ValueError, urllib.error.URLError):
        return False


def wait_until(predicate: Callable[[], bool], timeout_s: float, description: str) -> float:
    """Poll ``predicate`` every 20 ms and return the seconds it took to hold.

    Raises HarnessError naming ``description`` after ``timeout_s``.
    """
    start = time.monotonic()
    deadline = start + timeout_s
    while not predicate():
        if time.monotonic() >= deadline:
            raise HarnessError(f"{description} did not happen within {timeout_s:g} s")
        time.sleep(0.02)
    return time.monotonic() - start


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` from /proc, 0 once the process is gone."""
    try:
        fields = Path(f"/proc/{pid}/statm").read_text().split()
    except OSError:
        return 0
    return int(fields[1]) * _PAGE_BYTES


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds of ``pid`` from /proc, 0.0 once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    # The command name in brackets may contain spaces; fields after it are fixed.
    after_name = stat.rsplit(")", 1)[1].split()
    return (int(after_name[11]) + int(after_name[12])) / _CLOCK_TICKS


@dataclass
class ServerProcess:
    """One server process with its log file, recorded in ``pidfile`` while it runs."""

    label: str
    command: Sequence[str]
    log_path: Path
    pidfile: Path
    env: Mapping[str, str] | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def pid(self) -> int:
        if self.process is None:
            raise HarnessError(f"{self.label} is not started")
        return self.process.pid

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                list(self.command),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(self.env) if self.env is not None else None,
                start_new_session=True,
            )
        with open(self.pidfile, "a") as pids:
            pids.write(f"{self.label} {self.process.pid}\n")

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def check_running(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise HarnessError(
                f"{self.label} exited with status {self.process.returncode}; see {self.log_path}"
            )

    def kill(self) -> None:
        """Send SIGKILL and reap the process."""
        if self.running():
            assert self.process is not None
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self, grace_s: float = 15.0) -> None:
        """Send SIGTERM, wait up to ``grace_s``, then SIGKILL."""
        if not self.running():
            return
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
