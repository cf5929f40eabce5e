"""Short real chaos runs and the iptables controller on real sockets."""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from chaos.api import ChaosNode, RunConfig, Timeline
from chaos.faults.network import IptablesNetwork
from chaos.process_cluster import FIRST_NODE_GID, lease_block, node_host
from chaos.runner import run

needs_iptables = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("iptables") is None,
    reason="network faults need root and iptables",
)


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_leader_kill_run_completes(tmp_path: Path) -> None:
    config = RunConfig(scenario="leader-kill", duration_s=20.0, seed=3, out_dir=tmp_path / "run")

    outcome = await run(config)

    assert outcome.status in ("passed", "failed"), outcome.to_json()
    assert outcome.check is not None
    found = {violation.kind for violation in outcome.check.violations}
    assert found == set(), outcome.to_json()
    kills = [e for e in outcome.timeline if e["kind"] == "fault_inject"]
    assert len(kills) == 5
    assert all(e["fault"] == "kill-leader" for e in kills)
    windows = Timeline(events=outcome.timeline).fault_windows()
    for (_, _, healed), (_, injected, _) in itertools.pairwise(windows):
        assert healed is not None
        assert injected >= healed, windows
    assert (tmp_path / "run" / "result.json").is_file()
    assert outcome.check.stats["acked"] > 0


class _Endpoint(ChaosNode):
    """A stand-in node: only ``name`` and ``host`` matter to the controller."""

    def __init__(self, name: str, host: str) -> None:
        self.name = name
        self.host = host

    # The controller reads no process state and starts or signals nothing.
    @property
    def running(self) -> bool:
        return True

    @property
    def paused(self) -> bool:
        return False

    @property
    def pid(self) -> int | None:
        return None

    async def start(self) -> None:
        raise NotImplementedError

    async def kill(self, sig: signal.Signals = signal.SIGKILL) -> None:
        raise NotImplementedError

    async def terminate(self, timeout_s: float = 15.0) -> None:
        raise NotImplementedError

    async def pause(self) -> None:
        raise NotImplementedError

    async def resume(self) -> None:
        raise NotImplementedError


_CLIENT = """
import socket, sys
try:
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1.5) as conn:
        conn.sendall(b"ping")
        conn.settimeout(1.5)
        sys.exit(0 if conn.recv(4) == b"pong" else 1)
except OSError:
    sys.exit(3)
"""


def _exchange(source_host: str, gid: int, target_host: str) -> int:
    """Connect from a process with group ``gid`` to a server on ``target_host``; exit status."""
    with socket.socket() as server:
        server.bind((target_host, 0))
        server.listen()
        server.settimeout(3.0)
        client = subprocess.Popen(
            [sys.executable, "-c", _CLIENT, target_host, str(server.getsockname()[1])],
            group=gid,
        )
        try:
            conn, _ = server.accept()
            with conn:
                conn.settimeout(3.0)
                if conn.recv(4) == b"ping":
                    conn.sendall(b"pong")
        except OSError:
            pass
        return client.wait(timeout=10)


@needs_iptables
async def test_iptables_cut_blocks_then_heals() -> None:
    block, lock = lease_block()
    network = IptablesNetwork(block)
    first = _Endpoint("n1", node_host(1, block))
    second = _Endpoint("n2", node_host(2, block))
    gid = FIRST_NODE_GID + block * 10 + 1
    try:
        await network.reset()
        await network.register(first, gid)
        assert await asyncio.to_thread(_exchange, first.host, gid, second.host) == 0

        await network.cut(first, second)
        blocked = await asyncio.to_thread(_exchange, first.host, gid, second.host)
        await network.heal()
        healed = await asyncio.to_thread(_exchange, first.host, gid, second.host)

        assert blocked == 3
        assert healed == 0
    finally:
        await network.reset()
        lock.close()
    assert await network.leftover_rules() == []


@needs_iptables
async def test_iptables_reply_cut_blocks() -> None:
    block, lock = lease_block()
    network = IptablesNetwork(block)
    first = _Endpoint("n1", node_host(1, block))
    second = _Endpoint("n2", node_host(2, block))
    gid = FIRST_NODE_GID + block * 10 + 1
    try:
        await network.reset()
        await network.register(first, gid)
        # n2's replies on the connection n1 opened are what this cut drops.
        await network.cut(second, first)

        assert await asyncio.to_thread(_exchange, first.host, gid, second.host) == 3
    finally:
        await network.reset()
        lock.close()
    assert await network.leftover_rules() == []
