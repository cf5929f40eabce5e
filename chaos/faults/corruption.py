"""Disk corruption faults: damage a stopped node's segment or Raft journal files.

Each fault stops one follower with SIGTERM, damages one file in its data
directory, and starts it again. Heal waits until the node is ready again and
records on the timeline what the node did about the damage, taken from its
log. The checker then verifies, as after every run, that all nodes store
identical records and that every acknowledged record is present once.

- :class:`SegmentDamage` flips a byte inside a record batch, cuts a segment
  file in the middle of a batch, or overwrites an offset index. The node
  must find the damage by CRC-32C or offset chain (at open, in the
  background verification after start, or on a read), never serve the
  damaged batch, and copy the range again from a peer.
- :class:`JournalDamage` flips a byte in, or cuts, the last record of the
  node's Raft journal. An uncommitted record is a torn write and is cut.
  A committed one makes the node refuse to start, because cutting it could
  lose a committed entry on a majority. Heal then does what the node's
  error message tells an operator to do. It moves the node's Raft directory
  and its partition logs aside (kept under the run's output directory) and
  starts the node. The node installs the leader's snapshot and copies the
  records from its peers.
- :class:`ShrinkSegments` sets a small ``segment.bytes`` on the run's topic,
  so that a short run has closed segments to damage.
"""

from __future__ import annotations

import abc
import enum
import shutil
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import aiohttp

from chaos.api import (
    ChaosError,
    ChaosNode,
    Fault,
    FaultSpec,
    RunContext,
    Scenario,
    TimelineEvent,
    register_scenario,
)
from chaos.http import NodeHttpError, request_json, wait_for
from chaos.load import TOPIC
from kaflow.client import AsyncAdmin
from kaflow.errors import UnknownTopicError

__all__ = [
    "DAMAGE_EVIDENCE",
    "JournalDamage",
    "JournalMode",
    "SegmentDamage",
    "SegmentMode",
    "ShrinkSegments",
]

# Byte offsets in a record batch header (see docs/storage.md): the CRC covers
# every byte from ATTRIBUTES_OFFSET to the end of the batch.
BATCH_LENGTH_OFFSET = 8
ATTRIBUTES_OFFSET = 17
BATCH_HEADER_SIZE = 43
# Byte offsets in a Raft journal segment and record (see docs/journal.md).
JOURNAL_SEGMENT_HEADER_SIZE = 16
JOURNAL_RECORD_HEADER_SIZE = 24
JOURNAL_RECORD_INDEX_OFFSET = 8
JOURNAL_META_COMMIT_INDEX_OFFSET = 16

# Small enough that a one-minute run fills several segments per partition.
SMALL_SEGMENT_BYTES = 16 * 1024
READY_TIMEOUT_S = 90.0

# Log lines that show how a node dealt with the damage, by what they mean.
DAMAGE_EVIDENCE: dict[str, str] = {
    "partition log is damaged, copying it again from peers": "detected by verification",
    "cutting partition log before a damaged segment": "detected at open",
    "truncating corrupt tail of segment": "active segment tail cut at open",
    "rebuilding indexes of segment": "index rebuilt at open",
    "truncated torn tail of Raft journal segment": "uncommitted journal tail cut",
    "committed entry is damaged": "refused to start on a damaged committed journal entry",
    "truncating partition log to the snapshot": "records past the snapshot replayed",
    "truncating partition log to the replicated state": "records past the snapshot replayed",
    "deleting partition log unknown to the installed state": "logs rebuilt from the Raft journal",
    "catch-up done": "range copied from a peer",
}


class SegmentMode(enum.Enum):
    FLIP = "flip"
    TRUNCATE = "truncate"
    INDEX = "index"


class JournalMode(enum.Enum):
    # Flip a byte in, or cut, the journal's last record.
    FLIP = "flip"
    TRUNCATE = "truncate"
    # Cut the journal inside the last record at or below the stored commit index.
    TRUNCATE_COMMITTED = "truncate-committed"


@dataclass
class _Victim:
    node: ChaosNode
    log_offset: int
    details: dict[str, Any]


def _log_size(node: ChaosNode) -> int:
    try:
        return node.log_path.stat().st_size
    except OSError:
        return 0


def _log_since(node: ChaosNode, offset: int) -> str:
    try:
        with node.log_path.open("rb") as file:
            file.seek(offset)
            return file.read().decode(errors="replace")
    except OSError:
        return ""


def _evidence(text: str) -> list[str]:
    return [meaning for line, meaning in DAMAGE_EVIDENCE.items() if line in text]


async def _pick_follower(ctx: RunContext) -> ChaosNode:
    """Return a random running node that is not the leader, so the majority stays up."""
    leader = await ctx.cluster.leader()
    candidates = [
        node
        for node in ctx.cluster.nodes
        if node.running and not node.paused and node is not leader
    ]
    if not candidates:
        raise ChaosError(
            "no running follower to damage; the corruption faults need a leader and at least "
            "one running follower",
            nodes=[node.name for node in ctx.cluster.nodes],
        )
    return ctx.rng.choice(candidates)


async def _wait_ready_or_exit(node: ChaosNode, timeout_s: float) -> bool:
    """Wait until ``node`` is ready (True) or its process exited (False)."""
    async with aiohttp.ClientSession() as session:

        async def settled() -> bool:
            if not node.running:
                return True
            try:
                await request_json(session, "GET", node.http_url + "/v1/health/ready")
            except NodeHttpError:
                return False
            return True

        if not await wait_for(settled, timeout_s, interval_s=0.25):
            raise ChaosError(
                f"node {node.name} was neither ready nor exited {timeout_s:g} s after a restart "
                f"on damaged data; see {node.log_path}",
                node=node.name,
            )
    return node.running


def _batch_positions(data: bytes) -> list[tuple[int, int]]:
    """Return (position, length) of each whole batch in segment bytes."""
    found = []
    position = 0
    while len(data) - position >= BATCH_HEADER_SIZE:
        (length,) = struct.unpack_from(">i", data, position + BATCH_LENGTH_OFFSET)
        if length < BATCH_HEADER_SIZE or position + length > len(data):
            break
        found.append((position, length))
        position += length
    return found


class ShrinkSegments(Fault):
    """Set ``segment.bytes`` of the run's topic low, so segments close during the run."""

    name: ClassVar[str] = "shrink-segments"

    def __init__(self, segment_bytes: int = SMALL_SEGMENT_BYTES) -> None:
        self.segment_bytes = segment_bytes

    async def inject(self, ctx: RunContext) -> None:
        deadline = time.monotonic() + 30.0
        async with AsyncAdmin(ctx.cluster.urls, retry_timeout_ms=30_000) as admin:
            while True:
                try:
                    await admin.alter_topic(TOPIC, config={"segment.bytes": self.segment_bytes})
                    return
                except UnknownTopicError:
                    if time.monotonic() >= deadline:
                        raise

    async def heal(self, ctx: RunContext) -> None:
        # The small segments stay: later faults of the scenario damage them.
        return None

    def describe(self) -> dict[str, Any]:
        return {"segment_bytes": self.segment_bytes}


class _DamageFault(Fault):
    """Stop a follower, damage one of its files, start it, and judge the outcome at heal."""

    def __init__(self) -> None:
        self._victim: _Victim | None = None

    async def inject(self, ctx: RunContext) -> None:
        node = await _pick_follower(ctx)
        await node.terminate()
        victim = _Victim(node, _log_size(node), {"node": node.name})
        self._victim = victim
        victim.details.update(self.damage(ctx, node))
        await node.start()

    @abc.abstractmethod
    def damage(self, ctx: RunContext, node: ChaosNode) -> dict[str, Any]:
        """Damage the stopped node's files and return what was done."""

    async def heal(self, ctx: RunContext) -> None:
        victim = self._victim
        if victim is None:
            return
        node = victim.node
        if not node.running:
            await node.start()
        started = await _wait_ready_or_exit(node, READY_TIMEOUT_S)
        if not started:
            await self.restart_refused(ctx, victim)
        victim.details["outcome"] = _evidence(_log_since(node, victim.log_offset))
        ctx.timeline.record(TimelineEvent.NOTE, fault=self.name, damage=victim.details)

    async def restart_refused(self, ctx: RunContext, victim: _Victim) -> None:
        node = victim.node
        raise ChaosError(
            f"node {node.name} exited after a restart on damaged data and did not recover; "
            f"see {node.log_path}",
            node=node.name,
            damage=victim.details,
        )

    def describe(self) -> dict[str, Any]:
        return dict(self._victim.details) if self._victim is not None else {}


class SegmentDamage(_DamageFault):
    """Flip a byte in a batch, cut a segment mid-batch, or overwrite an offset index."""

    name: ClassVar[str] = "segment-damage"

    def __init__(self, mode: SegmentMode) -> None:
        super().__init__()
        self.mode = mode

    def damage(self, ctx: RunContext, node: ChaosNode) -> dict[str, Any]:
        segment = self._pick_segment(ctx, node)
        data = segment.read_bytes()
        batches = _batch_positions(data)
        if not batches:
            raise ChaosError(f"segment {segment} has no whole batch to damage", path=str(segment))
        position, length = ctx.rng.choice(batches)
        details: dict[str, Any] = {"mode": self.mode.value, "path": str(segment)}
        if self.mode is SegmentMode.FLIP:
            target = ctx.rng.randrange(position + ATTRIBUTES_OFFSET, position + length)
            damaged = bytearray(data)
            damaged[target] ^= 1 << ctx.rng.randrange(8)
            segment.write_bytes(bytes(damaged))
            details["byte"] = target
        elif self.mode is SegmentMode.TRUNCATE:
            cut = ctx.rng.randrange(position + 1, position + length)
            with segment.open("r+b") as file:
                file.truncate(cut)
            details["size"] = cut
        else:
            index = segment.with_suffix(".index")
            index.write_bytes(bytes(ctx.rng.randrange(256) for _ in range(64)))
            details["path"] = str(index)
        return details

    def _pick_segment(self, ctx: RunContext, node: ChaosNode) -> Path:
        """Return a closed segment of the run's topic on ``node``, else an active one."""
        logs_dir = node.data_dir / "logs"
        closed: list[Path] = []
        active: list[Path] = []
        for directory in sorted(logs_dir.glob(f"{TOPIC}-*")):
            segments = sorted(path for path in directory.glob("*.log") if path.stat().st_size)
            closed.extend(segments[:-1])
            active.extend(segments[-1:])
        candidates = closed or active
        if not candidates:
            raise ChaosError(
                f"node {node.name} has no segment of topic {TOPIC!r} under {logs_dir} to damage",
                node=node.name,
            )
        return ctx.rng.choice(candidates)

    def describe(self) -> dict[str, Any]:
        return {"mode": self.mode.value, **super().describe()}


class JournalDamage(_DamageFault):
    """Flip a byte in, or cut, the last record of a follower's Raft journal."""

    name: ClassVar[str] = "journal-damage"

    def __init__(self, mode: JournalMode) -> None:
        super().__init__()
        self.mode = mode

    def damage(self, ctx: RunContext, node: ChaosNode) -> dict[str, Any]:
        journal = node.data_dir / "raft" / "journal"
        segments = sorted(path for path in journal.glob("*.seg") if path.stat().st_size)
        if not segments:
            raise ChaosError(f"node {node.name} has no Raft journal segment in {journal}")
        segment = segments[-1]
        data = segment.read_bytes()
        max_index = None
        if self.mode is JournalMode.TRUNCATE_COMMITTED:
            meta = (journal / "journal.meta").read_bytes()
            (max_index,) = struct.unpack_from(">Q", meta, JOURNAL_META_COMMIT_INDEX_OFFSET)
        last = _last_journal_record(data, max_index)
        if last is None:
            raise ChaosError(f"journal segment {segment} has no whole record", path=str(segment))
        position, length = last
        details: dict[str, Any] = {"mode": self.mode.value, "path": str(segment)}
        if self.mode is JournalMode.FLIP:
            target = ctx.rng.randrange(position + 8, position + length)
            damaged = bytearray(data)
            damaged[target] ^= 1 << ctx.rng.randrange(8)
            segment.write_bytes(bytes(damaged))
            details["byte"] = target
        else:
            cut = ctx.rng.randrange(position + 1, position + length)
            with segment.open("r+b") as file:
                file.truncate(cut)
            details["size"] = cut
        return details

    async def restart_refused(self, ctx: RunContext, victim: _Victim) -> None:
        node = victim.node
        text = _log_since(node, victim.log_offset)
        if "committed entry is damaged" not in text:
            await super().restart_refused(ctx, victim)
            return
        # The operator's repair that the node's error message names: without its
        # journal the node cannot tell which records its logs hold, so both go.
        moved = ctx.out_dir / "damaged" / f"{node.name}-{int(time.time() * 1000)}"
        moved.mkdir(parents=True, exist_ok=True)
        for name in ("raft", "logs"):
            if (node.data_dir / name).exists():
                shutil.move(node.data_dir / name, moved / name)
        victim.details["moved_to"] = str(moved)
        ctx.log.info(
            "node failed to start on a damaged committed journal entry node=%s; moved its "
            "raft and logs directories to %s and restarting it",
            node.name,
            moved,
        )
        await node.start()
        if not await _wait_ready_or_exit(node, READY_TIMEOUT_S):
            await super().restart_refused(ctx, victim)

    def describe(self) -> dict[str, Any]:
        return {"mode": self.mode.value, **super().describe()}


def _last_journal_record(data: bytes, max_index: int | None) -> tuple[int, int] | None:
    """Return (position, length) of the last whole record of a journal segment.

    With ``max_index``, the last record whose Raft index is at most that.
    """
    position = JOURNAL_SEGMENT_HEADER_SIZE
    last: tuple[int, int] | None = None
    while len(data) - position >= JOURNAL_RECORD_HEADER_SIZE:
        (payload,) = struct.unpack_from(">I", data, position)
        (index,) = struct.unpack_from(">Q", data, position + JOURNAL_RECORD_INDEX_OFFSET)
        length = JOURNAL_RECORD_HEADER_SIZE + payload
        if position + length > len(data) or (max_index is not None and index > max_index):
            break
        last = (position, length)
        position += length
    return last


def _corruption_scenario() -> Scenario:
    return Scenario(
        name="corruption",
        description=(
            "damage a stopped follower's files (a flipped byte in a segment, a segment cut "
            "mid-batch, an overwritten index, a damaged Raft journal tail), restart it; it "
            "must detect the damage by checksum, serve none of it and copy it from peers"
        ),
        faults=(
            FaultSpec(0.0, 0.05, ShrinkSegments, relative=True),
            FaultSpec(0.2, 0.1, lambda: SegmentDamage(SegmentMode.FLIP), relative=True),
            FaultSpec(0.4, 0.1, lambda: SegmentDamage(SegmentMode.TRUNCATE), relative=True),
            FaultSpec(0.55, 0.1, lambda: SegmentDamage(SegmentMode.INDEX), relative=True),
            FaultSpec(0.7, 0.1, lambda: JournalDamage(JournalMode.FLIP), relative=True),
        ),
        settle_s=15.0,
        default_duration_s=60.0,
    )


def _journal_scenario() -> Scenario:
    return Scenario(
        name="corruption-journal",
        description=(
            "cut the last Raft journal record of a stopped follower, then cut it inside a "
            "committed record, and restart it; a committed record must stop the node instead "
            "of vanishing, and the node resyncs once its raft and logs directories are moved aside"
        ),
        faults=(
            FaultSpec(0.2, 0.2, lambda: JournalDamage(JournalMode.TRUNCATE), relative=True),
            FaultSpec(
                0.55, 0.2, lambda: JournalDamage(JournalMode.TRUNCATE_COMMITTED), relative=True
            ),
        ),
        settle_s=15.0,
        default_duration_s=40.0,
    )


register_scenario(_corruption_scenario())
register_scenario(_journal_scenario())
