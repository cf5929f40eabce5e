"""Process faults: signals to nodes, restarts, membership changes and consumer faults.

Raft elections in Kaflow start after 0.4 to 1.4 s without a leader message
(the tuning in ``kaflow/replication/raft/tuning.py``), so a pause of a few
seconds is well past the election timeout.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from typing import Any, ClassVar

from chaos.api import ChaosError, ChaosNode, Fault, RunContext

__all__ = [
    "AddRemoveNode",
    "CrashConsumer",
    "KillAll",
    "KillLeader",
    "KillRandomNode",
    "PauseFollower",
    "PauseLeader",
    "RollingRestart",
    "StallConsumer",
    "wait_healthy",
]

logger = logging.getLogger(__name__)

READY_TIMEOUT_S = 90.0


async def wait_healthy(ctx: RunContext) -> ChaosNode:
    """Wait until every node runs unpaused and follows one leader; return the leader.

    A fault waits for this before it acts, so that a fault whose start came
    while an earlier one was still healing does not hit a degraded cluster.
    """
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not all(node.running and not node.paused for node in ctx.cluster.nodes):
        if time.monotonic() >= deadline:
            down = [node.name for node in ctx.cluster.nodes if not node.running or node.paused]
            raise ChaosError(
                f"nodes {down} were still down or paused after {READY_TIMEOUT_S:g} s; "
                "lengthen the run or space its faults further apart",
                nodes=down,
            )
        await asyncio.sleep(0.1)
    return await ctx.cluster.wait_ready(READY_TIMEOUT_S)


async def _restart_if_stopped(node: ChaosNode | None) -> None:
    if node is None:
        return
    if node.paused:
        await node.resume()
    if not node.running:
        await node.start()


class _NodeFault(Fault):
    """A fault on one node; heal brings that node back."""

    def __init__(self) -> None:
        self.node: ChaosNode | None = None

    def describe(self) -> dict[str, Any]:
        return {"node": self.node.name} if self.node is not None else {}

    async def heal(self, ctx: RunContext) -> None:
        await _restart_if_stopped(self.node)


class KillLeader(_NodeFault):
    """SIGKILL the current leader; heal restarts it on its data."""

    name: ClassVar[str] = "kill-leader"

    async def inject(self, ctx: RunContext) -> None:
        self.node = await wait_healthy(ctx)
        await self.node.kill(signal.SIGKILL)


class KillRandomNode(_NodeFault):
    """SIGKILL a node chosen by the run's random generator."""

    name: ClassVar[str] = "kill-random-node"

    async def inject(self, ctx: RunContext) -> None:
        await wait_healthy(ctx)
        self.node = ctx.rng.choice(ctx.cluster.nodes)
        await self.node.kill(signal.SIGKILL)


class PauseLeader(_NodeFault):
    """SIGSTOP the leader for the fault's duration; heal sends SIGCONT."""

    name: ClassVar[str] = "pause-leader"

    async def inject(self, ctx: RunContext) -> None:
        self.node = await wait_healthy(ctx)
        await self.node.pause()


class PauseFollower(_NodeFault):
    """SIGSTOP one random follower for the fault's duration; heal sends SIGCONT."""

    name: ClassVar[str] = "pause-follower"

    async def inject(self, ctx: RunContext) -> None:
        leader = await wait_healthy(ctx)
        self.node = ctx.rng.choice([node for node in ctx.cluster.nodes if node is not leader])
        await self.node.pause()


class RollingRestart(Fault):
    """SIGTERM each node in turn, restart it and wait for a leader before the next one."""

    name: ClassVar[str] = "rolling-restart"

    def __init__(self) -> None:
        self.restarted: list[str] = []

    def describe(self) -> dict[str, Any]:
        return {"nodes": list(self.restarted)}

    async def inject(self, ctx: RunContext) -> None:
        for node in list(ctx.cluster.nodes):
            await node.terminate()
            await node.start()
            self.restarted.append(node.name)
            await ctx.cluster.wait_ready(READY_TIMEOUT_S)

    async def heal(self, ctx: RunContext) -> None:
        for node in ctx.cluster.nodes:
            await _restart_if_stopped(node)


class KillAll(Fault):
    """SIGKILL every node at once; heal restarts them all on their data."""

    name: ClassVar[str] = "kill-all"

    async def inject(self, ctx: RunContext) -> None:
        await wait_healthy(ctx)
        for node in ctx.cluster.nodes:
            await node.kill(signal.SIGKILL)

    async def heal(self, ctx: RunContext) -> None:
        for node in ctx.cluster.nodes:
            await _restart_if_stopped(node)


class AddRemoveNode(Fault):
    """Add a node under load; heal removes a random node that was a member before."""

    name: ClassVar[str] = "add-remove-node"

    def __init__(self) -> None:
        self.added: ChaosNode | None = None
        self.removed: ChaosNode | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "added": None if self.added is None else self.added.name,
            "removed": None if self.removed is None else self.removed.name,
        }

    async def inject(self, ctx: RunContext) -> None:
        await wait_healthy(ctx)
        self.added = await ctx.cluster.add_node()

    async def heal(self, ctx: RunContext) -> None:
        if self.added is None or self.removed is not None:
            return
        candidates = [node for node in ctx.cluster.nodes if node is not self.added]
        self.removed = ctx.rng.choice(candidates)
        await ctx.cluster.remove_node(self.removed)


class _ConsumerFault(Fault):
    def __init__(self) -> None:
        self.consumer: str | None = None

    def describe(self) -> dict[str, Any]:
        return {"consumer": self.consumer}

    def _pick(self, ctx: RunContext) -> str:
        names = ctx.load.consumer_names()
        if not names:
            raise ChaosError("no consumer is running, so no consumer can be disturbed")
        return ctx.rng.choice(sorted(names))


class CrashConsumer(_ConsumerFault):
    """SIGKILL a consumer between processing and commit; heal starts a replacement."""

    name: ClassVar[str] = "crash-consumer"

    async def inject(self, ctx: RunContext) -> None:
        self.consumer = self._pick(ctx)
        await ctx.load.crash_consumer(self.consumer)

    async def heal(self, ctx: RunContext) -> None:
        if self.consumer is not None:
            replacement = await ctx.load.start_consumer()
            logger.info("consumer replaced crashed=%s by=%s", self.consumer, replacement)


class StallConsumer(_ConsumerFault):
    """SIGSTOP a consumer past max.poll.interval.ms; heal sends SIGCONT."""

    name: ClassVar[str] = "stall-consumer"

    async def inject(self, ctx: RunContext) -> None:
        self.consumer = self._pick(ctx)
        await ctx.load.stall_consumer(self.consumer)

    async def heal(self, ctx: RunContext) -> None:
        if self.consumer is not None:
            await ctx.load.resume_consumer(self.consumer)
