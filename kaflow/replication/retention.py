"""Enforce retention.ms and retention.bytes through the Raft log.

Only the leader decides. Every interval it computes how far each partition's
log start may advance (:meth:`PartitionLog.retention_target`) and proposes
a ``delete_records`` command for each partition that can move. Every
member then advances its log start at the same log index, so replicas
delete the same records even if their clocks differ.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from kaflow.errors import KaflowError
from kaflow.replication.commands import DeleteRecords, encode_command
from kaflow.replication.raft import RaftNode
from kaflow.replication.state_machine import StateMachine
from kaflow.storage.manager import LogManager

__all__ = ["RetentionTask"]

logger = logging.getLogger(__name__)


class RetentionTask:
    """A background task that proposes delete_records on the leader every ``interval_s``."""

    def __init__(
        self, state: StateMachine, logs: LogManager, raft: RaftNode, interval_s: float
    ) -> None:
        self._state = state
        self._logs = logs
        self._raft = raft
        self._interval_s = interval_s
        self._task: asyncio.Task[None] | None = None
        self._failing = False
        self.rounds = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            if not (self._raft.is_leader() and self._raft.is_ready()):
                continue
            try:
                await self.enforce()
            except KaflowError as exc:
                if not self._failing:
                    logger.warning("retention round failed, retrying next interval: %s", exc)
                self._failing = True
            else:
                if self._failing:
                    logger.info("retention rounds succeed again")
                self._failing = False

    async def enforce(self) -> int:
        """Propose delete_records for every partition past its retention; return how many."""
        loop = asyncio.get_running_loop()
        targets = await loop.run_in_executor(None, self._targets, time.time_ns() // 1_000_000)
        for (topic, partition), offset in targets.items():
            result = await self._raft.propose(
                encode_command(DeleteRecords(topic, partition, offset))
            )
            if result.rejection is not None:
                # The topic was deleted or changed meanwhile; the next round uses the new state.
                logger.info(
                    "retention skipped topic=%s partition=%d reason=%s",
                    topic,
                    partition,
                    result.rejection.message,
                )
        self.rounds += 1
        return len(targets)

    def _targets(self, now_ms: int) -> dict[tuple[str, int], int]:
        targets: dict[tuple[str, int], int] = {}
        for (topic, partition), offsets in self._state.all_partitions().items():
            try:
                log = self._logs.get(topic, partition)
            except KeyError:
                continue  # deleted since the state was read
            target = log.retention_target(now_ms)
            if target is not None and target > offsets.log_start_offset:
                targets[(topic, partition)] = min(target, offsets.log_end_offset)
        return targets
