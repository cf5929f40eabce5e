"""Disk faults: power loss on every node, and a full disk on one follower."""

from __future__ import annotations

import asyncio
import signal
from typing import Any, ClassVar

import aiohttp

from chaos.api import ChaosError, ChaosNode, Fault, RunContext, TimelineEvent
from chaos.http import NodeHttpError, request_json, wait_for

__all__ = ["DiskFullFault", "PowerLossFault"]

READY_TIMEOUT_S = 60.0
PROBE_TOPIC = "chaos-disk-full-probe"


class PowerLossFault(Fault):
    """Kill every node with SIGKILL, drop what they did not fsync, and restart them on heal.

    Needs a data directory provider with ``power_cut``, such as
    :class:`~chaos.fs.providers.LossyDataDirs`.
    """

    name: ClassVar[str] = "power-loss"

    async def inject(self, ctx: RunContext) -> None:
        nodes = list(ctx.cluster.nodes)
        await asyncio.gather(*(node.kill(signal.SIGKILL) for node in nodes))
        for node in nodes:
            # Unmounting and restoring copy files, so they run off the event loop.
            await asyncio.to_thread(ctx.data_dirs.power_cut, node.name)
        ctx.timeline.record(
            TimelineEvent.NOTE, note="power cut", nodes=[node.name for node in nodes]
        )

    async def heal(self, ctx: RunContext) -> None:
        for node in ctx.cluster.nodes:
            if not node.running:
                await node.start()
        await ctx.cluster.wait_ready(READY_TIMEOUT_S)

    def describe(self) -> dict[str, Any]:
        return {"nodes": "all"}


class DiskFullFault(Fault):
    """Fill the disk of one follower; on heal, free it and check that the node recovered.

    While the disk is full the follower must stay up and reject produce
    requests with ``disk_full`` (HTTP 507); the other two nodes keep the
    majority. After the space is freed it must become ready again and
    accept a produce request. Needs
    :class:`~chaos.fs.providers.SmallDiskDataDirs`.
    """

    name: ClassVar[str] = "disk-full"

    def __init__(self) -> None:
        self.victim: str | None = None

    async def inject(self, ctx: RunContext) -> None:
        leader = await ctx.cluster.wait_ready(READY_TIMEOUT_S)
        followers = [node for node in ctx.cluster.nodes if node is not leader and node.running]
        if not followers:
            raise ChaosError("disk-full fault: no running follower to fill", leader=leader.name)
        victim = ctx.rng.choice(followers)
        self.victim = victim.name
        async with aiohttp.ClientSession() as session:
            await _ensure_probe_topic(session, leader)
            await asyncio.to_thread(ctx.data_dirs.set_full, victim.name, True)
            error = await _probe_produce(session, victim)
        if error is None or error.status != 507 or _error_code(error) != "disk_full":
            raise ChaosError(
                f"disk-full fault: node {victim.name} with a full disk returned "
                f"{error.status if error else 200} "
                f"{_error_code(error) if error else 'success'}; expected 507 disk_full",
                node=victim.name,
            )
        ctx.timeline.record(
            TimelineEvent.NOTE,
            note="disk full, produce rejected",
            node=victim.name,
            message=_error_message(error),
        )

    async def heal(self, ctx: RunContext) -> None:
        if self.victim is None:
            return
        victim = next(node for node in ctx.cluster.nodes if node.name == self.victim)
        still_running = victim.running
        await asyncio.to_thread(ctx.data_dirs.set_full, victim.name, False)
        if not still_running:
            await victim.start()
            raise ChaosError(
                f"disk-full fault: node {victim.name} stopped while its disk was full; "
                f"it must stay up and reject writes instead. See {victim.log_path}",
                node=victim.name,
            )

        async with aiohttp.ClientSession() as session:

            async def accepts_produce() -> bool:
                return await _probe_produce(session, victim) is None

            if not await wait_for(accepts_produce, READY_TIMEOUT_S, interval_s=0.5):
                raise ChaosError(
                    f"disk-full fault: node {victim.name} still rejects produce requests "
                    f"{READY_TIMEOUT_S:g} s after its disk was freed. See {victim.log_path}",
                    node=victim.name,
                )
        ctx.timeline.record(
            TimelineEvent.NOTE, note="disk freed, produce accepted", node=victim.name
        )

    def describe(self) -> dict[str, Any]:
        return {"node": self.victim}


async def _ensure_probe_topic(session: aiohttp.ClientSession, leader: ChaosNode) -> None:
    try:
        await request_json(
            session,
            "POST",
            leader.http_url + "/v1/topics",
            {"name": PROBE_TOPIC, "partitions": 1},
            timeout_s=15.0,
        )
    except NodeHttpError as exc:
        if _error_code(exc) != "topic_already_exists":
            raise


async def _probe_produce(session: aiohttp.ClientSession, node: ChaosNode) -> NodeHttpError | None:
    """Send one small record to ``node``; return the error, or None when it was stored."""
    try:
        await request_json(
            session,
            "POST",
            f"{node.http_url}/v1/topics/{PROBE_TOPIC}/records",
            {"records": [{"value": "probe"}]},
            timeout_s=15.0,
        )
    except NodeHttpError as exc:
        return exc
    return None


def _error_code(error: NodeHttpError) -> str | None:
    body = error.body
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        code = body["error"].get("code")
        return code if isinstance(code, str) else None
    return None


def _error_message(error: NodeHttpError) -> str:
    body = error.body
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("message", ""))
    return str(error)
