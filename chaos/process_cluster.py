"""A chaos cluster of local `kaflow serve` processes, one loopback address per node.

Node ``n<i>`` listens on ``127.0.B.1<i>`` for HTTP and Raft, on ports picked
free on that address, where B is the run's address block: 0 (127.0.0.11,
127.0.0.12, ...) unless another run on the machine holds it. The whole
127.0.0.0/8 range is local on Linux, so these addresses need no configuration. Every
node runs with ``--fsync always`` and one random cluster secret, and writes
its output to ``<out_dir>/logs/<name>.log``.

When the runner is root, each node process runs with its own group id so
that :class:`chaos.faults.network.IptablesNetwork` can give the node's
outgoing connections the node's own source address and cut traffic between
two nodes. Without root the cluster runs, and network faults are rejected.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from pathlib import Path
from typing import Any

import aiohttp

from chaos.api import ChaosCluster, ChaosNode, ChaosSetupError, DataDirProvider, NetworkController
from chaos.faults.network import IptablesNetwork, UnavailableNetwork
from chaos.http import NodeHttpError, request_json, wait_for
from chaos.process_node import (
    FIRST_NODE_GID,
    MAX_NODES,
    ProcessNode,
    lease_block,
    node_host,
)

__all__ = [
    "FIRST_NODE_GID",
    "MAX_NODES",
    "ProcessCluster",
    "ProcessNode",
    "create_cluster",
    "lease_block",
    "node_host",
]

logger = logging.getLogger(__name__)

STATUS_TIMEOUT_S = 2.0


class ProcessCluster(ChaosCluster):
    """``size`` `kaflow serve` processes forming one Raft group."""

    def __init__(
        self,
        out_dir: Path,
        data_dirs: DataDirProvider,
        size: int = 3,
        kaflow_source: Path | None = None,
    ) -> None:
        if not 1 <= size <= MAX_NODES:
            raise ChaosSetupError(
                f"invalid cluster size {size}: use 1 to {MAX_NODES} nodes", size=size
            )
        self.out_dir = out_dir
        self.data_dirs = data_dirs
        self.kaflow_source = kaflow_source
        self.secret = secrets.token_hex(16)
        self.nodes: list[ChaosNode] = []
        self.removed: list[ProcessNode] = []
        self._next_index = 1
        self._session: aiohttp.ClientSession | None = None
        self.block, self._block_lock = lease_block()
        self._network: NetworkController
        if os.geteuid() == 0:
            self._network = IptablesNetwork(self.block)
        else:
            self._network = UnavailableNetwork("the chaos runner is not root")
        for _ in range(size):
            self._new_node(peers=None)
        addresses = [node.raft_address for node in self.nodes]
        for node in self.nodes:
            assert isinstance(node, ProcessNode)
            node.peers = [address for address in addresses if address != node.raft_address]

    @property
    def network(self) -> NetworkController:
        return self._network

    def _new_node(self, peers: list[str] | None) -> ProcessNode:
        index = self._next_index
        self._next_index += 1
        gid = None
        if isinstance(self._network, IptablesNetwork):
            gid = FIRST_NODE_GID + self.block * 10 + index
        node = ProcessNode(
            index,
            peers or [],
            self.secret,
            self.data_dirs,
            self.out_dir / "logs",
            self.kaflow_source,
            gid,
            self.block,
        )
        self.nodes.append(node)
        return node

    def session(self) -> aiohttp.ClientSession:
        """Return the HTTP session the cluster uses for status and membership requests."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session

    async def start(self) -> None:
        await self._network.reset()
        for node in self.nodes:
            await self._prepare_network(node)
            await node.start()
        await self.wait_ready(60.0)

    async def _prepare_network(self, node: ChaosNode) -> None:
        if isinstance(self._network, IptablesNetwork) and isinstance(node, ProcessNode):
            assert node.gid is not None
            await self._network.register(node, node.gid)

    async def stop(self) -> None:
        try:
            for node in self.nodes:
                await node.terminate()
        finally:
            await self._network.reset()
            if self._session is not None:
                await self._session.close()
            self._block_lock.close()

    async def status(self, node: ChaosNode) -> dict[str, Any] | None:
        """Return ``GET /v1/cluster`` of ``node``, or None when it does not respond."""
        if not node.running or node.paused:
            return None
        try:
            body = await request_json(
                self.session(), "GET", node.http_url + "/v1/cluster", timeout_s=STATUS_TIMEOUT_S
            )
        except NodeHttpError:
            return None
        return body if isinstance(body, dict) else None

    async def leader(self) -> ChaosNode | None:
        statuses = await asyncio.gather(*(self.status(node) for node in self.nodes))
        by_name = {node.name: node for node in self.nodes}
        # A leader cut off from the others may still report the leader role, so
        # a node counts only when it reports that role and a majority of the
        # members name it as their leader.
        votes: dict[str, int] = {}
        for status in statuses:
            if status is not None and status.get("leader_id") is not None:
                votes[status["leader_id"]] = votes.get(status["leader_id"], 0) + 1
        majority = len(self.nodes) // 2 + 1
        for name, count in votes.items():
            node = by_name.get(name)
            if node is None or count < majority:
                continue
            own = statuses[self.nodes.index(node)]
            if own is not None and own.get("role") == "leader":
                return node
        return None

    async def wait_ready(self, timeout_s: float) -> ChaosNode:
        found: list[ChaosNode] = []

        async def ready() -> bool:
            leader = await self.leader()
            if leader is None:
                return False
            for node in self.nodes:
                if not node.running or node.paused:
                    continue
                status = await self.status(node)
                if status is None or not status.get("ready"):
                    return False
                if status.get("leader_id") != leader.name:
                    return False
            found[:] = [leader]
            return True

        if not await wait_for(ready, timeout_s, interval_s=0.25):
            states = {node.name: await self.status(node) for node in self.nodes}
            raise ChaosSetupError(
                f"the cluster had no leader that every running node follows after "
                f"{timeout_s:g} s; see the node logs in {self.out_dir / 'logs'}",
                statuses=states,
            )
        return found[0]

    async def _admin_request(self, method: str, path: str, body: Any = None) -> Any:
        """Send a membership request to the leader, retrying while no leader is known."""
        deadline = time.monotonic() + 60.0
        while True:
            leader = await self.leader()
            target = leader or next((n for n in self.nodes if n.running and not n.paused), None)
            if target is not None:
                try:
                    return await request_json(
                        self.session(), method, target.http_url + path, body, timeout_s=45.0
                    )
                except NodeHttpError as exc:
                    if exc.status is not None and exc.status < 500:
                        raise
                    if time.monotonic() >= deadline:
                        raise
                    logger.warning("membership request failed, retrying error=%s", exc)
            elif time.monotonic() >= deadline:
                raise ChaosSetupError(
                    f"no running node to send {method} {path} to for 60 s", path=path
                )
            await asyncio.sleep(0.5)

    async def add_node(self) -> ChaosNode:
        peers = [node.raft_address for node in self.nodes]
        node = self._new_node(peers)
        try:
            await self._admin_request(
                "POST", "/v1/cluster/members", {"raft_address": node.raft_address}
            )
        except BaseException:
            self.nodes.remove(node)
            raise
        await self._prepare_network(node)
        await node.start()
        await self.wait_ready(60.0)
        logger.info("node added node=%s members=%s", node.name, [n.name for n in self.nodes])
        return node

    async def remove_node(self, node: ChaosNode) -> None:
        await self._admin_request("DELETE", f"/v1/cluster/members/{node.name}")
        self.nodes.remove(node)
        await node.terminate()
        if isinstance(node, ProcessNode):
            self.removed.append(node)
        await self.wait_ready(60.0)
        logger.info("node removed node=%s members=%s", node.name, [n.name for n in self.nodes])


def create_cluster(
    out_dir: Path, data_dirs: DataDirProvider, kaflow_source: Path | None
) -> ProcessCluster:
    """Return a three-node process cluster; the runner's factory for ``--runner process``."""
    return ProcessCluster(out_dir, data_dirs, size=3, kaflow_source=kaflow_source)
