"""One local `kaflow serve` process of the chaos cluster, and its loopback address.

Node ``n<i>`` of address block B listens on ``127.0.B.1<i>`` for HTTP and
Raft. A run locks its block with :func:`lease_block`, so concurrent runs on
one machine share neither addresses nor iptables chains.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

from chaos.api import ChaosNode, ChaosSetupError, DataDirProvider

__all__ = [
    "FIRST_NODE_GID",
    "LOCK_DIR",
    "MAX_BLOCKS",
    "MAX_NODES",
    "ProcessNode",
    "lease_block",
    "node_host",
]

logger = logging.getLogger(__name__)

# Nodes of address block B use 127.0.B.11 .. 127.0.B.19; network rules are
# scoped to that range.
MAX_NODES = 9
# Concurrent runs on one machine take different blocks, so they share neither
# addresses nor iptables chains. Block 0 (127.0.0.11 ..) is the first choice.
MAX_BLOCKS = 32
LOCK_DIR = Path(tempfile.gettempdir())
# Group ids of the node processes, one per node and block, so that iptables
# can tell the processes apart.
FIRST_NODE_GID = 64_000


def node_host(index: int, block: int = 0) -> str:
    """Return the loopback address of node ``n<index>`` (1-based) in address block ``block``."""
    if not 1 <= index <= MAX_NODES:
        raise ChaosSetupError(
            f"node index {index} is outside 1..{MAX_NODES}; the chaos cluster has at most "
            f"{MAX_NODES} nodes, on 127.0.B.11 to 127.0.B.19",
            index=index,
        )
    return f"127.0.{block}.1{index}"


def lease_block() -> tuple[int, IO[str]]:
    """Lock the first free address block and return it with its lock file.

    The lock ends when the file is closed or the process exits.
    """
    for block in range(MAX_BLOCKS):
        handle = open(LOCK_DIR / f"kaflow-chaos-block-{block}.lock", "a+")  # noqa: SIM115
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        return block, handle
    raise ChaosSetupError(
        f"all {MAX_BLOCKS} chaos address blocks are in use by other runs; wait for one "
        f"to finish (locks in {LOCK_DIR}/kaflow-chaos-block-*.lock)"
    )


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class ProcessNode(ChaosNode):
    """One `kaflow serve` child process."""

    def __init__(
        self,
        index: int,
        peers: list[str],
        secret: str,
        data_dirs: DataDirProvider,
        log_dir: Path,
        kaflow_source: Path | None,
        gid: int | None,
        block: int = 0,
    ) -> None:
        self.index = index
        self.name = f"n{index}"
        self.host = node_host(index, block)
        self.http_port = _free_port(self.host)
        self.raft_port = _free_port(self.host)
        self.http_url = f"http://{self.host}:{self.http_port}"
        self.raft_address = f"{self.host}:{self.raft_port}"
        self.peers = peers
        self.gid = gid
        self.data_dirs = data_dirs
        self.data_dir = data_dirs.prepare(self.name)
        self.log_path = log_dir / f"{self.name}.log"
        self._secret = secret
        self._kaflow_source = kaflow_source
        self._process: subprocess.Popen[bytes] | None = None
        self._paused = False

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def paused(self) -> bool:
        return self._paused and self.running

    @property
    def pid(self) -> int | None:
        return self._process.pid if self.running and self._process is not None else None

    def command(self) -> list[str]:
        """Return the argument list that starts this node."""
        command = [
            sys.executable, "-P", "-m", "kaflow", "serve",
            "--node-id", self.name,
            "--data-dir", str(self.data_dir),
            "--host", self.host,
            "--port", str(self.http_port),
            "--raft-host", self.host,
            "--raft-port", str(self.raft_port),
            "--fsync", "always",
        ]  # fmt: skip
        for peer in self.peers:
            command += ["--peer", peer]
        return command

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env["KAFLOW_CLUSTER_SECRET"] = self._secret
        if self._kaflow_source is not None:
            env["PYTHONPATH"] = os.pathsep.join(
                [str(self._kaflow_source), *filter(None, [env.get("PYTHONPATH")])]
            )
        return env

    async def start(self) -> None:
        if self.running:
            return
        self.data_dir = self.data_dirs.prepare(self.name)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"--- chaos: starting {self.name} at {time.time():.3f}\n".encode())
            log.flush()
            self._process = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self._environment(),
                start_new_session=True,
                group=self.gid,
            )
        self._paused = False
        logger.info("node started node=%s pid=%s url=%s", self.name, self.pid, self.http_url)

    async def _wait_exit(self, timeout_s: float) -> bool:
        process = self._process
        if process is None:
            return True
        deadline = time.monotonic() + timeout_s
        while process.poll() is None:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    def _signal(self, sig: signal.Signals) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        try:
            os.kill(self._process.pid, sig)
        except ProcessLookupError:
            return

    async def kill(self, sig: signal.Signals = signal.SIGKILL) -> None:
        self._signal(sig)
        if sig == signal.SIGKILL:
            await self._wait_exit(10.0)
            self._paused = False
        logger.info("node signalled node=%s signal=%s", self.name, sig.name)

    async def terminate(self, timeout_s: float = 15.0) -> None:
        if not self.running:
            return
        if self._paused:
            await self.resume()
        self._signal(signal.SIGTERM)
        if not await self._wait_exit(timeout_s):
            logger.warning(
                "node ignored SIGTERM node=%s timeout_s=%s; sending SIGKILL", self.name, timeout_s
            )
            await self.kill(signal.SIGKILL)
        logger.info("node stopped node=%s returncode=%s", self.name, self.returncode)

    @property
    def returncode(self) -> int | None:
        """Exit status of the last process, or None while it runs or before it started."""
        return None if self._process is None else self._process.poll()

    async def pause(self) -> None:
        self._signal(signal.SIGSTOP)
        self._paused = self.running
        logger.info("node paused node=%s", self.name)

    async def resume(self) -> None:
        self._signal(signal.SIGCONT)
        self._paused = False
        logger.info("node resumed node=%s", self.name)
