"""The background task that fills each gap with batches copied from peers.

For every open gap (see :mod:`.gaps`) the task repeats one step until the
local log end reaches the replicated end offset: request batches from the
local log end at one peer after another, verify and append them
(:func:`.backfill.append_fetched_batches`). Disk work runs in the default
executor and HTTP requests use aiohttp, so the event loop does not wait on
either.

A peer whose log start is above the local log end has deleted those records
under retention, and so will this node once it applies the same
delete_records command, so the local log restarts at the peer's log start.
When no peer can help (none known, all unreachable, or all behind), the
task waits ``retry_interval_s`` and tries again; reads of the missing range
keep failing with the retriable ReplicaNotAvailableError meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from kaflow.catchup.backfill import BackfillProgress, append_fetched_batches
from kaflow.catchup.client import PeerClient
from kaflow.catchup.gaps import Gap, GapTracker
from kaflow.catchup.reconcile import restart_log_at
from kaflow.errors import CorruptBatchError, KaflowError, OffsetOutOfRangeError
from kaflow.replication.state_machine import StateMachine
from kaflow.storage.manager import LogManager

__all__ = ["BackfillStatistics", "BackfillTask", "registry_peer_urls"]

logger = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 1024 * 1024
DEFAULT_RETRY_INTERVAL_S = 0.5


def registry_peer_urls(state: StateMachine, self_address: str) -> Callable[[], list[str]]:
    """Return a function listing the HTTP URLs of the other members in the member registry."""

    def peer_urls() -> list[str]:
        members = state.members()
        return [
            info.http_url for address, info in sorted(members.items()) if address != self_address
        ]

    return peer_urls


@dataclass(slots=True)
class BackfillStatistics:
    records_copied: int = 0
    batches_copied: int = 0
    bytes_copied: int = 0
    # Responses that failed the CRC or offset checks and were dropped.
    rejected_responses: int = 0
    gaps_filled: int = 0


@dataclass(slots=True)
class _GapProgress:
    records: int = 0
    batches: int = 0
    bytes: int = 0


class BackfillTask:
    """Copies missing records from peers until every gap is filled."""

    def __init__(
        self,
        state: StateMachine,
        logs: LogManager,
        tracker: GapTracker,
        peer_urls: Callable[[], Sequence[str]],
        client: PeerClient,
        max_bytes: int = DEFAULT_MAX_BYTES,
        retry_interval_s: float = DEFAULT_RETRY_INTERVAL_S,
    ) -> None:
        self._state = state
        self._logs = logs
        self._tracker = tracker
        self._peer_urls = peer_urls
        self._client = client
        self._max_bytes = max_bytes
        self._retry_interval_s = retry_interval_s
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._progress: dict[int, _GapProgress] = {}
        self._stuck = False
        # Peers whose last response was rejected; each gets one WARNING per episode.
        self._rejecting: set[str] = set()
        self.statistics = BackfillStatistics()

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._run(), name="catch-up")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._client.close()

    def wake_threadsafe(self) -> None:
        """Start work on new gaps now; safe to call from any thread."""
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed
                loop.call_soon_threadsafe(self._wake.set)

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            gaps = self._tracker.gaps()
            for gap in gaps:
                await self._fill(gap)
            if not self._tracker.gaps():
                await self._wake.wait()
                continue
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
            # cancellation that arrives as the wait finishes, and stop() would hang.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._retry_interval_s):
                    await self._wake.wait()

    async def _fill(self, gap: Gap) -> None:
        loop = asyncio.get_running_loop()
        if gap.generation not in self._progress:
            self._progress[gap.generation] = _GapProgress()
            logger.info(
                "catch-up started topic=%s partition=%d from_offset=%d to_offset=%s",
                gap.topic,
                gap.partition,
                gap.start_offset,
                self._replicated_end(gap),
            )
        while True:
            finished, closed_end = await loop.run_in_executor(None, self._close_if_filled, gap)
            if finished:
                progress = self._progress.pop(gap.generation, _GapProgress())
                if closed_end is not None:
                    self.statistics.gaps_filled += 1
                    logger.info(
                        "catch-up done topic=%s partition=%d records=%d batches=%d bytes=%d "
                        "log_end_offset=%d",
                        gap.topic,
                        gap.partition,
                        progress.records,
                        progress.batches,
                        progress.bytes,
                        closed_end,
                    )
                return
            if not await self._copy_step(gap):
                return

    def _replicated_end(self, gap: Gap) -> int | None:
        offsets = self._state.partition(gap.topic, gap.partition)
        return offsets.log_end_offset if offsets is not None else None

    def _close_if_filled(self, gap: Gap) -> tuple[bool, int | None]:
        """Return (work on the gap ends, local log end if this call closed it)."""
        with self._tracker.lock:
            if not self._tracker.is_current(gap):
                return True, None
            offsets = self._state.partition(gap.topic, gap.partition)
            try:
                log = self._logs.get(gap.topic, gap.partition)
            except KeyError:
                log = None
            if offsets is None or log is None:
                self._tracker.discard(gap.topic, gap.partition)
                return True, None
            if log.log_end_offset < offsets.log_end_offset:
                return False, None
            self._tracker.close(gap)
            return True, log.log_end_offset

    async def _copy_step(self, gap: Gap) -> bool:
        """Copy one response's batches from the first peer that has some; True on progress."""
        loop = asyncio.get_running_loop()
        try:
            from_offset = self._logs.get(gap.topic, gap.partition).log_end_offset
        except KeyError:
            return False
        for url in self._peer_urls():
            try:
                fetched = await self._client.fetch_batches(
                    url, gap.topic, gap.partition, from_offset, self._max_bytes
                )
            except OffsetOutOfRangeError as exc:
                start = exc.details.get("log_start_offset")
                if isinstance(start, int) and start > from_offset:
                    return await loop.run_in_executor(
                        None, self._restart_at, gap, from_offset, start
                    )
                self._note_failure(gap, url, exc)
                continue
            except KaflowError as exc:
                self._note_failure(gap, url, exc)
                continue
            if fetched.topic_id != gap.topic_id or not fetched.data:
                continue
            try:
                progress = await loop.run_in_executor(
                    None, self._append, gap, from_offset, fetched.data
                )
            except CorruptBatchError as exc:
                self.statistics.rejected_responses += 1
                if url in self._rejecting:
                    continue
                self._rejecting.add(url)
                logger.warning(
                    "catch-up rejected a response topic=%s partition=%d peer=%s from_offset=%d: %s",
                    gap.topic,
                    gap.partition,
                    url,
                    from_offset,
                    exc.message,
                )
                continue
            if progress is None:
                return False
            if progress.batches:
                self._record(gap, progress)
                return True
        if not self._stuck:
            self._stuck = True
            logger.warning(
                "catch-up found no peer to copy from topic=%s partition=%d from_offset=%d "
                "peers=%s; retrying every %.1f s",
                gap.topic,
                gap.partition,
                from_offset,
                ",".join(self._peer_urls()) or "-",
                self._retry_interval_s,
            )
        return False

    def _append(self, gap: Gap, from_offset: int, data: bytes) -> BackfillProgress | None:
        with self._tracker.lock:
            if not self._tracker.is_current(gap):
                return None
            end = self._replicated_end(gap)
            log = self._logs.get(gap.topic, gap.partition)
            if end is None or log.log_end_offset != from_offset:
                return None
            return append_fetched_batches(self._logs, gap.topic, gap.partition, data, end)

    def _restart_at(self, gap: Gap, from_offset: int, offset: int) -> bool:
        with self._tracker.lock:
            if not self._tracker.is_current(gap):
                return False
            log = self._logs.get(gap.topic, gap.partition)
            end = self._replicated_end(gap)
            if log.log_end_offset != from_offset or end is None or offset > end:
                return False
            restart_log_at(self._logs, gap.topic, gap.partition, log.config, offset)
        logger.info(
            "catch-up skipped records deleted on the peers topic=%s partition=%d "
            "from_offset=%d to_offset=%d",
            gap.topic,
            gap.partition,
            from_offset,
            offset,
        )
        return True

    def _record(self, gap: Gap, progress: BackfillProgress) -> None:
        self._rejecting.clear()
        if self._stuck:
            self._stuck = False
            logger.info("catch-up copies again topic=%s partition=%d", gap.topic, gap.partition)
        totals = self._progress.setdefault(gap.generation, _GapProgress())
        totals.records += progress.records
        totals.batches += progress.batches
        totals.bytes += progress.bytes
        self.statistics.records_copied += progress.records
        self.statistics.batches_copied += progress.batches
        self.statistics.bytes_copied += progress.bytes

    def _note_failure(self, gap: Gap, url: str, exc: KaflowError) -> None:
        logger.debug(
            "catch-up request failed topic=%s partition=%d peer=%s error=%s: %s",
            gap.topic,
            gap.partition,
            url,
            exc.code,
            exc.message,
        )
