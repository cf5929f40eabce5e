"""Find damaged batches in the partition logs and copy them again from peers.

Recovery on open reads only each log's active segment in full, so a byte
flipped in a closed segment passes unnoticed at start. The
:class:`DamageRepair` task closes that hole:

- Once the node is ready it verifies every partition log in the background
  (:meth:`PartitionLog.verify`: CRC-32C and offset chain of every batch),
  one partition at a time in the default executor.
- A read that meets a damaged batch (a fetch, or a peer's back-fill
  request) reports the partition with :meth:`DamageRepair.report`, which
  verifies it again at once.

Repair reuses the catch-up gap machinery (see :mod:`.gaps`). Under the
tracker's lock, the log is cut before the damaged batch and a gap is opened
from there to the replicated end offset. The back-fill task then copies the
damaged batch and everything after it from a peer, verifying every batch it
receives. Reads of the range fail with the retriable ReplicaNotAvailableError
until then. A single node has no peer, so there the damage is logged at ERROR
and reads of it keep failing with CorruptBatchError.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from kaflow.catchup.gaps import GapTracker
from kaflow.catchup.reconcile import restart_log_at
from kaflow.errors import ReplicaNotAvailableError, StorageError
from kaflow.replication.state_machine import StateMachine
from kaflow.storage.log import PartitionLog
from kaflow.storage.manager import LogManager
from kaflow.storage.scrub import Damage

__all__ = ["DamageRepair", "RepairStatistics", "damaged_replica_error"]

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class RepairStatistics:
    # Partition logs read in full and found intact or repaired.
    partitions_verified: int = 0
    damage_found: int = 0
    # Damaged ranges handed to the back-fill as a gap.
    gaps_opened: int = 0
    # True once the verification of every log after start has finished.
    initial_pass_done: bool = False


def damaged_replica_error(topic: str, partition: int, offset: int) -> ReplicaNotAvailableError:
    """Return the retriable error for a read that met a damaged batch on this node."""
    return ReplicaNotAvailableError(
        f"this node's copy of partition {topic}-{partition} at offset {offset} failed its "
        "CRC-32C or offset check and is being copied again from another member; retry "
        "shortly or read from another member",
        topic=topic,
        partition=partition,
        offset=offset,
    )


class DamageRepair:
    """Verifies partition logs by checksum and hands damaged ranges to the back-fill."""

    def __init__(
        self,
        state: StateMachine,
        logs: LogManager,
        tracker: GapTracker,
        wait_ready: Callable[[], Awaitable[None]],
    ) -> None:
        self._state = state
        self._logs = logs
        self._tracker = tracker
        self._wait_ready = wait_ready
        self._reported: set[tuple[str, int]] = set()
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        # Partitions whose damage was logged on a single node, so it is logged once.
        self._unrepairable: set[tuple[str, int]] = set()
        self.statistics = RepairStatistics()

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._run(), name="damage-repair")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def report(self, topic: str, partition: int) -> None:
        """Verify the partition's log soon, because a read met a damaged batch in it.

        Safe to call from any thread.
        """
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed
            loop.call_soon_threadsafe(self._add_report, topic, partition)

    def read_failed(
        self, topic: str, partition: int, offset: int, exc: StorageError
    ) -> StorageError | ReplicaNotAvailableError:
        """Report a read that met a damaged batch and return the error for the reader.

        In a cluster that is the retriable ReplicaNotAvailableError, so the
        reader goes to another member while this one copies the range again.
        A single node returns ``exc`` itself.
        """
        self.report(topic, partition)
        if not self._tracker.enabled:
            return exc
        return damaged_replica_error(topic, partition, offset)

    def _add_report(self, topic: str, partition: int) -> None:
        self._reported.add((topic, partition))
        self._wake.set()

    async def _run(self) -> None:
        await self._wait_ready()
        keys = self._logs.partitions()
        logger.info("verifying partition logs count=%d", len(keys))
        for topic, partition in keys:
            await self._verify(topic, partition)
            await self._verify_reported()
        self.statistics.initial_pass_done = True
        logger.info(
            "verified partition logs count=%d damaged=%d",
            self.statistics.partitions_verified,
            self.statistics.damage_found,
        )
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._verify_reported()

    async def _verify_reported(self) -> None:
        while self._reported:
            topic, partition = self._reported.pop()
            await self._verify(topic, partition)

    async def _verify(self, topic: str, partition: int) -> None:
        loop = asyncio.get_running_loop()
        try:
            log = self._logs.get(topic, partition)
        except KeyError:
            return
        try:
            damage = await loop.run_in_executor(None, log.verify)
        except StorageError as exc:
            # The log was closed or deleted meanwhile, or could not be read at all.
            logger.debug(
                "skipped verifying partition log topic=%s partition=%d: %s",
                topic,
                partition,
                exc.message,
            )
            return
        self.statistics.partitions_verified += 1
        if damage is None:
            return
        self.statistics.damage_found += 1
        await loop.run_in_executor(None, self._repair, topic, partition, log, damage)

    def _repair(self, topic: str, partition: int, log: PartitionLog, damage: Damage) -> None:
        """Cut ``log`` before ``damage`` and open a gap from there. Runs in the executor."""
        if not self._tracker.enabled:
            if (topic, partition) not in self._unrepairable:
                self._unrepairable.add((topic, partition))
                logger.error(
                    "partition log is damaged and this single node has no peer to copy it "
                    "from topic=%s partition=%d offset=%d path=%s position=%d reason=%s; "
                    "restore the partition directory from a backup",
                    topic,
                    partition,
                    damage.offset,
                    damage.path,
                    damage.position,
                    damage.reason,
                )
            return
        with self._tracker.lock:
            found = self._state.topic(topic)
            try:
                current = self._logs.get(topic, partition)
            except KeyError:
                return
            if found is None or current is not log or log.log_end_offset <= damage.offset:
                return
            if damage.offset < log.log_start_offset:
                start = log.log_start_offset
                restart_log_at(self._logs, topic, partition, log.config, start)
            elif log.truncate_damaged(damage):
                start = damage.offset
            else:
                return
            self._tracker.open(topic, partition, found.created_index, start)
        self.statistics.gaps_opened += 1
        logger.warning(
            "partition log is damaged, copying it again from peers topic=%s partition=%d "
            "from_offset=%d path=%s position=%d reason=%s",
            topic,
            partition,
            start,
            damage.path,
            damage.position,
            damage.reason,
        )
