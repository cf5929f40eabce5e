"""Network partitions between local chaos nodes, made with iptables on the loopback interface.

Each run owns one address block B (see :mod:`chaos.process_cluster`): its
nodes are 127.0.B.11 to 127.0.B.19, and its chains are named after B. Every
node process runs with its own group id. Two chains make the cuts possible:

1. ``nat`` chain ``KAFLOW-CHAOS-SNAT-<B>`` (jumped to from POSTROUTING for ``lo``)
   gives each node's outgoing connections to another chaos node the node's
   own source address. Without it the kernel picks 127.0.0.1 for every
   connection on ``lo``, and the nodes are indistinguishable.
2. ``filter`` chain ``KAFLOW-CHAOS-<B>`` (jumped to from INPUT for ``lo``) drops
   the packets of a cut. A packet is matched by its connection-tracking
   tuples rather than its header, because at the INPUT hook a reply already
   carries the un-NATed destination 127.0.0.1.

The rules match only the block's node addresses (and connections SNATed to
them), so clients on 127.0.0.1 reach every node during a partition, as
clients outside a real partition would. :meth:`IptablesNetwork.reset` deletes
the block's chains and their jump rules; the cluster calls it before a run
and in its ``stop()``, so no rule outlives a run that fails. A run killed
with SIGKILL leaves its rules until the next run on the same block.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar

from chaos.api import (
    ChaosNode,
    ChaosSetupError,
    ChaosUnsupportedError,
    Fault,
    NetworkController,
    RunContext,
)
from chaos.faults.process import wait_healthy

__all__ = [
    "CHAIN_PREFIX",
    "IptablesNetwork",
    "IsolateFollower",
    "IsolateLeader",
    "OneWayCut",
    "UnavailableNetwork",
    "chain_names",
    "node_address_range",
]

logger = logging.getLogger(__name__)

CHAIN_PREFIX = "KAFLOW-CHAOS"


def chain_names(block: int) -> tuple[str, str]:
    """Return the (filter, nat) chain names of address block ``block``."""
    return f"{CHAIN_PREFIX}-{block}", f"{CHAIN_PREFIX}-SNAT-{block}"


def node_address_range(block: int) -> str:
    """Return the iptables range of the node addresses of ``block``: 127.0.B.11-127.0.B.19."""
    return f"127.0.{block}.11-127.0.{block}.19"


async def _iptables(*args: str, check: bool = True) -> bool:
    """Run ``iptables -w`` with ``args``; return whether it exited 0.

    Raises ChaosSetupError when ``check`` is set and the command fails.
    """
    try:
        process = await asyncio.create_subprocess_exec(
            "iptables", "-w", *args,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
    except FileNotFoundError as exc:
        raise ChaosSetupError(
            "iptables is not installed; install it or run scenarios without network faults"
        ) from exc
    _, stderr = await process.communicate()
    if process.returncode != 0 and check:
        raise ChaosSetupError(
            f"iptables {' '.join(args)} failed with status {process.returncode}: "
            f"{stderr.decode(errors='replace').strip()}",
            arguments=list(args),
        )
    return process.returncode == 0


class IptablesNetwork(NetworkController):
    """Cuts between chaos nodes as iptables rules in chains of its own."""

    def __init__(self, block: int) -> None:
        self.block = block
        self.filter_chain, self.nat_chain = chain_names(block)
        self._jumps: tuple[tuple[str, str, tuple[str, ...]], ...] = (
            ("filter", self.filter_chain, ("INPUT", "-i", "lo")),
            ("nat", self.nat_chain, ("POSTROUTING", "-o", "lo")),
        )
        self._cuts: set[tuple[str, str]] = set()
        self._ready = False

    async def _ensure_chains(self) -> None:
        if self._ready:
            return
        for table, chain, (hook, *match) in self._jumps:
            await _iptables("-t", table, "-N", chain)
            await _iptables("-t", table, "-I", hook, *match, "-j", chain)
        self._ready = True

    async def register(self, node: ChaosNode, gid: int) -> None:
        """Give the connections of the process group ``gid`` the source address of ``node``."""
        await self._ensure_chains()
        await _iptables(
            "-t", "nat", "-A", self.nat_chain,
            "-m", "owner", "--gid-owner", str(gid),
            "-p", "tcp",
            "-m", "iprange", "--dst-range", node_address_range(self.block),
            "-j", "SNAT", "--to-source", node.host,
        )  # fmt: skip
        logger.info("network source address set node=%s gid=%s", node.name, gid)

    @staticmethod
    def _cut_rules(source: str, target: str) -> list[list[str]]:
        # Packets that ``source`` sends on connections it opened to ``target``,
        # then the replies ``source`` sends on connections ``target`` opened.
        return [
            ["-m", "conntrack", "--ctdir", "ORIGINAL",
             "--ctrepldst", source, "--ctorigdst", target, "-j", "DROP"],
            ["-m", "conntrack", "--ctdir", "REPLY",
             "--ctorigdst", source, "--ctrepldst", target, "-j", "DROP"],
        ]  # fmt: skip

    async def cut(self, source: ChaosNode, target: ChaosNode) -> None:
        await self._ensure_chains()
        key = (source.host, target.host)
        if key in self._cuts:
            return
        for rule in self._cut_rules(source.host, target.host):
            await _iptables("-t", "filter", "-A", self.filter_chain, *rule)
        self._cuts.add(key)
        logger.info("network cut source=%s target=%s", source.name, target.name)

    async def heal(self) -> None:
        if self._ready:
            await _iptables("-t", "filter", "-F", self.filter_chain)
        if self._cuts:
            logger.info("network healed cuts=%d", len(self._cuts))
        self._cuts.clear()

    async def reset(self) -> None:
        for table, chain, (hook, *match) in self._jumps:
            # Delete every jump, including duplicates left by an interrupted run.
            while await _iptables("-t", table, "-D", hook, *match, "-j", chain, check=False):
                pass
            await _iptables("-t", table, "-F", chain, check=False)
            await _iptables("-t", table, "-X", chain, check=False)
        self._cuts.clear()
        self._ready = False

    async def leftover_rules(self) -> list[str]:
        """Return the iptables rules that mention this block's chains, for checks after a run."""
        found: list[str] = []
        for table in ("filter", "nat"):
            process = await asyncio.create_subprocess_exec(
                "iptables", "-w", "-t", table, "-S",
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
            stdout, _ = await process.communicate()
            found += [
                line
                for line in stdout.decode().splitlines()
                if self.filter_chain in line.split() or self.nat_chain in line.split()
            ]
        return found


class UnavailableNetwork(NetworkController):
    """The controller of a cluster that cannot cut traffic; every cut raises."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    async def cut(self, source: ChaosNode, target: ChaosNode) -> None:
        raise ChaosUnsupportedError(
            f"cannot cut traffic from {source.name} to {target.name}: {self.reason}; "
            "run network scenarios as root on Linux with iptables",
            reason=self.reason,
        )

    async def heal(self) -> None:
        return None

    async def reset(self) -> None:
        return None


async def _followers(ctx: RunContext) -> tuple[ChaosNode, list[ChaosNode]]:
    leader = await wait_healthy(ctx)
    return leader, [node for node in ctx.cluster.nodes if node is not leader]


class _NetworkFault(Fault):
    def __init__(self) -> None:
        self.targets: dict[str, Any] = {}

    def describe(self) -> dict[str, Any]:
        return dict(self.targets)

    async def heal(self, ctx: RunContext) -> None:
        await ctx.cluster.network.heal()


class IsolateLeader(_NetworkFault):
    """Cut the leader off from every other node in both directions."""

    name: ClassVar[str] = "isolate-leader"

    async def inject(self, ctx: RunContext) -> None:
        leader, _ = await _followers(ctx)
        self.targets = {"node": leader.name}
        await ctx.cluster.network.isolate(leader, ctx.cluster.nodes)


class IsolateFollower(_NetworkFault):
    """Cut one random follower off from every other node in both directions."""

    name: ClassVar[str] = "isolate-follower"

    async def inject(self, ctx: RunContext) -> None:
        _, followers = await _followers(ctx)
        follower = ctx.rng.choice(followers)
        self.targets = {"node": follower.name}
        await ctx.cluster.network.isolate(follower, ctx.cluster.nodes)


class OneWayCut(_NetworkFault):
    """Drop what the leader sends to one follower; the follower's packets still arrive."""

    name: ClassVar[str] = "one-way-cut"

    async def inject(self, ctx: RunContext) -> None:
        leader, followers = await _followers(ctx)
        follower = ctx.rng.choice(followers)
        self.targets = {"source": leader.name, "target": follower.name}
        await ctx.cluster.network.cut(leader, follower)
