"""The asynchronous consumer: assigned partitions or consumer group membership.

The consumer reads either the partitions given to :meth:`AsyncConsumer.assign`
or, after :meth:`AsyncConsumer.subscribe`, the partitions that the group's
broker-side assignment gives this member (:mod:`kaflow.client.membership`,
:mod:`kaflow.client.rebalance`). Its position in each partition is the offset
of the next record to return. A position is set by ``seek*``, by the group's
committed offset, or by ``auto_offset_reset`` when neither exists or the
offset left the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any

from kaflow.client.errors import CommitFailedError, IllegalStateError
from kaflow.client.group_consumer import ConsumerGroup, post_commit
from kaflow.client.membership import ConsumerGroupMetadata, GroupMembership
from kaflow.client.reader import MAX_WAIT_MS, RESET_POLICIES, PartitionReader
from kaflow.client.rebalance import CallbackInvoker, ConsumerRebalanceListener
from kaflow.client.records import ConsumerRecord, TopicPartition
from kaflow.client.transport import Transport

__all__ = ["AsyncConsumer", "OffsetsToCommit"]

# Offsets to commit per partition, keyed by TopicPartition or (topic, partition).
OffsetsToCommit = Mapping[TopicPartition, int] | Mapping[tuple[str, int], int]

logger = logging.getLogger(__name__)


class AsyncConsumer(PartitionReader):
    """Read records from assigned or subscribed partitions and commit positions to ``group_id``.

    With ``group_id``, :meth:`subscribe` joins the consumer group, and the
    broker assigns partitions. A consumer that uses :meth:`assign` instead
    reads the partitions given there, and ``group_id`` only stores its
    committed offsets. ``session_timeout_ms``, ``heartbeat_interval_ms`` and
    ``max_poll_interval_ms`` are Kafka's ``session.timeout.ms``,
    ``heartbeat.interval.ms`` and ``max.poll.interval.ms``.
    """

    def __init__(
        self,
        bootstrap: Sequence[str] | str,
        *,
        group_id: str | None = None,
        group_instance_id: str | None = None,
        client_id: str | None = None,
        session_timeout_ms: int = 45_000,
        heartbeat_interval_ms: int = 3_000,
        max_poll_interval_ms: int = 300_000,
        enable_auto_commit: bool = False,
        auto_commit_interval_ms: int = 5_000,
        auto_offset_reset: str = "latest",
        max_partition_fetch_bytes: int = 1_048_576,
        request_timeout_ms: int = 40_000,
        retry_timeout_ms: int = 30_000,
        retry_backoff_ms: int = 100,
    ) -> None:
        if auto_offset_reset not in RESET_POLICIES:
            raise ValueError(
                f"invalid auto_offset_reset {auto_offset_reset!r}: use one of "
                + ", ".join(RESET_POLICIES)
            )
        if request_timeout_ms <= MAX_WAIT_MS:
            raise ValueError(
                f"request_timeout_ms={request_timeout_ms} must exceed the longest fetch "
                f"wait of {MAX_WAIT_MS} ms, or long polls time out"
            )
        _check_group_options(
            group_id,
            group_instance_id,
            session_timeout_ms,
            heartbeat_interval_ms,
            max_poll_interval_ms,
            enable_auto_commit,
            auto_commit_interval_ms,
        )
        transport = Transport(
            [bootstrap] if isinstance(bootstrap, str) else bootstrap,
            request_timeout_ms=request_timeout_ms,
            retry_timeout_ms=retry_timeout_ms,
            retry_backoff_ms=retry_backoff_ms,
        )
        super().__init__(transport, group_id, auto_offset_reset, max_partition_fetch_bytes)
        self.group_instance_id = group_instance_id
        # Without a name, `kaflow group describe` shows the host and process id of each member.
        self.client_id = client_id or f"kaflow-{socket.gethostname()}-{os.getpid()}"
        self.enable_auto_commit = enable_auto_commit
        self.auto_commit_interval_ms = auto_commit_interval_ms
        self._group_options = (session_timeout_ms, heartbeat_interval_ms, max_poll_interval_ms)
        self._group: ConsumerGroup | None = None
        self._invoker: CallbackInvoker | None = None
        # The task running a rebalance step; poll() from its callbacks would deadlock.
        self._reconciling_task: asyncio.Task[Any] | None = None
        self._reconcile_lock = asyncio.Lock()
        self._next_auto_commit = time.monotonic() + auto_commit_interval_ms / 1000

    async def __aenter__(self) -> AsyncConsumer:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Leave the group if subscribed, then release the connections.

        A subscribed member first revokes its partitions: auto-commit (when
        on), then ``on_partitions_revoked``. A dynamic member leaves the group
        at once; a static member (``group_instance_id``) keeps its partitions
        until its session times out, so a restart within that time gets them
        back without a rebalance. With ``assign()``, only auto-commit runs.
        """
        if self._closed:
            return
        try:
            if self._group is not None:
                await self._group.leave(static=self.group_instance_id is not None)
            elif self.enable_auto_commit and self.group_id is not None:
                await self.commit()
        finally:
            self._closed = True
            await self._transport.close()

    # Assignment, subscription and flow control.

    def assign(self, partitions: Iterable[tuple[str, int]]) -> None:
        """Replace the assigned partitions; positions of partitions that stay are kept."""
        self._check_open()
        if self._group is not None:
            raise IllegalStateError(
                "assign() is not allowed while subscribed to "
                f"{list(self._group.membership.topics)}: call unsubscribe() first, or keep "
                "subscribe() and let the group assign partitions"
            )
        requested = [TopicPartition(topic, partition) for topic, partition in partitions]
        self._positions = {tp: self._positions.get(tp) for tp in requested}
        self._paused &= set(requested)

    def subscribe(
        self, topics: Iterable[str], listener: ConsumerRebalanceListener | None = None
    ) -> None:
        """Join ``group_id`` on the next poll() and read the partitions the group assigns.

        Calling it again replaces the topics and the listener; the broker
        moves partitions at the member's next heartbeat.
        """
        self._check_open()
        chosen = [topics] if isinstance(topics, str) else list(topics)
        if not chosen or not all(isinstance(topic, str) and topic for topic in chosen):
            raise ValueError(
                f"invalid topics {chosen!r}: subscribe to a list of one or more topic names"
            )
        group_id = self._require_group()
        if self._group is None and self._positions:
            raise IllegalStateError(
                f"subscribe() is not allowed while partitions are assigned with assign() "
                f"({len(self._positions)} partitions): call unsubscribe() or assign([]) first"
            )
        if self._group is None:
            self._group = self._new_group(group_id)
        self._group.subscribe(chosen, listener)

    def _new_group(self, group_id: str) -> ConsumerGroup:
        session_timeout_ms, heartbeat_interval_ms, max_poll_interval_ms = self._group_options
        membership = GroupMembership(
            self._transport,
            group_id,
            group_instance_id=self.group_instance_id,
            client_id=self.client_id,
            session_timeout_ms=session_timeout_ms,
            heartbeat_interval_ms=heartbeat_interval_ms,
            max_poll_interval_ms=max_poll_interval_ms,
        )
        group = ConsumerGroup(
            self._transport,
            membership,
            owned=self.assignment,
            release=self._release,
            acquire=self._acquire,
            auto_commit=self._commit_partitions if self.enable_auto_commit else None,
        )
        group.set_invoker(self._invoker)
        return group

    async def unsubscribe(self) -> None:
        """Revoke the subscribed partitions, leave the group and clear any assign()."""
        self._check_open()
        group, self._group = self._group, None
        if group is not None:
            try:
                await group.leave(static=False)
            finally:
                await group.membership.close()
        self._positions.clear()
        self._paused.clear()

    def group_metadata(self) -> ConsumerGroupMetadata | None:
        """Return the member id, member epoch and group epoch, or None when not subscribed."""
        return self._group.membership.metadata() if self._group is not None else None

    def subscription(self) -> set[str]:
        """Return the subscribed topics (empty when not subscribed)."""
        return set(self._group.membership.topics) if self._group is not None else set()

    def assignment(self) -> set[TopicPartition]:
        """Return the partitions the consumer reads now (assigned or given by the group)."""
        return set(self._positions)

    def _release(self, partitions: set[TopicPartition]) -> None:
        for tp in partitions:
            self._positions.pop(tp, None)
            self._paused.discard(tp)

    def _acquire(self, partitions: set[TopicPartition]) -> None:
        # Sorted, so that poll() reads a member's partitions in a stable order.
        for tp in sorted(partitions):
            self._positions.setdefault(tp, None)

    def _set_callback_invoker(self, invoker: CallbackInvoker | None) -> None:
        # The blocking Consumer runs listener callbacks in its caller's thread.
        self._invoker = invoker
        if self._group is not None:
            self._group.set_invoker(invoker)

    # Reading.

    async def poll(self, timeout_ms: int = 0, max_records: int = 500) -> list[ConsumerRecord]:
        """Return up to ``max_records`` records from the unpaused partitions.

        Returns at once when records are available; otherwise waits up to
        ``timeout_ms`` for the first one and may return an empty list. A
        subscribed consumer joins its group here, applies assignment changes
        and runs the rebalance listener before reading.
        """
        self._check_open()
        if self._reconciling_task is not None and self._reconciling_task is asyncio.current_task():
            raise IllegalStateError(
                "poll() was called from a rebalance listener callback: return from the "
                "callback first, poll() runs the rest of the rebalance"
            )
        if self._group is None:
            await self._maybe_auto_commit()
            return await self._read(timeout_ms, max_records, None)
        membership = self._group.membership
        membership.poll_started()
        try:
            return await self._poll_group(self._group, timeout_ms, max_records)
        finally:
            membership.poll_finished()

    async def _poll_group(
        self, group: ConsumerGroup, timeout_ms: int, max_records: int
    ) -> list[ConsumerRecord]:
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            async with self._reconcile_lock:
                self._reconciling_task = asyncio.current_task()
                try:
                    await group.reconcile()
                finally:
                    self._reconciling_task = None
            await self._maybe_auto_commit()

            remaining_ms = max(0, int((deadline - time.monotonic()) * 1000))
            before = dict(self._positions)
            records = await self._read(remaining_ms, max_records, group.membership.changed)
            if records:
                if await group.confirm_ownership():
                    return records
                # Fenced while reading: the records may belong to another member now.
                self._restore_positions(before)
            if time.monotonic() >= deadline:
                return []

    def _restore_positions(self, before: dict[TopicPartition, int | None]) -> None:
        for tp in self._positions:
            if tp in before:
                self._positions[tp] = before[tp]

    async def _read(
        self, timeout_ms: int, max_records: int, wake: asyncio.Event | None
    ) -> list[ConsumerRecord]:
        # ``wake`` ends the wait early so that poll() applies a new assignment.
        active = [tp for tp in self._positions if tp not in self._paused]
        if not active:
            if wake is not None and timeout_ms > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), timeout_ms / 1000)
            return []
        for tp in active:
            await self._resolve_position(tp)

        records = await self._fetch_all(active, 0, max_records)
        deadline = time.monotonic() + timeout_ms / 1000
        while not records:
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            if remaining_ms <= 0 or (wake is not None and wake.is_set()):
                return []
            records = await self._long_poll(
                active, min(remaining_ms, MAX_WAIT_MS), max_records, wake
            )
        return records[:max_records]

    async def __aiter__(self) -> AsyncIterator[ConsumerRecord]:
        """Yield records forever, long-polling between batches."""
        while True:
            for record in await self.poll(timeout_ms=MAX_WAIT_MS):
                yield record

    # Offsets of the group.

    async def commit(self, offsets: OffsetsToCommit | None = None) -> None:
        """Commit offsets (the NEXT offset to read) for ``group_id``.

        Without ``offsets``, commits the current position of each assigned
        partition that has one. A subscribed consumer commits as a group
        member and raises CommitFailedError when the group fenced it or
        moved the partitions to another member.
        """
        group_id, chosen = self._offsets_to_commit(offsets)
        await self._commit_chosen(group_id, chosen)

    def commit_async(self, offsets: OffsetsToCommit | None = None) -> asyncio.Task[None]:
        """Start committing and return the task; the offsets are taken at the call.

        The task fails with the error :meth:`commit` would raise. Call it
        from a coroutine, because the task runs on the current event loop.
        """
        group_id, chosen = self._offsets_to_commit(offsets)
        return asyncio.get_running_loop().create_task(
            self._commit_chosen(group_id, chosen), name=f"kaflow-commit-{group_id}"
        )

    def _offsets_to_commit(
        self, offsets: OffsetsToCommit | None
    ) -> tuple[str, dict[TopicPartition, int]]:
        self._check_open()
        group_id = self._require_group()
        if offsets is None:
            chosen = {tp: pos for tp, pos in self._positions.items() if pos is not None}
        else:
            chosen = {TopicPartition(*p): offset for p, offset in offsets.items()}
        return group_id, chosen

    async def _commit_chosen(self, group_id: str, chosen: dict[TopicPartition, int]) -> None:
        if not chosen:
            return
        if self._group is not None:
            await self._group.commit(chosen)
        else:
            await post_commit(self._transport, group_id, chosen)

    async def _commit_partitions(self, partitions: set[TopicPartition]) -> None:
        chosen = {tp: pos for tp in partitions if (pos := self._positions.get(tp)) is not None}
        await self._commit_chosen(self._require_group(), chosen)

    async def _maybe_auto_commit(self) -> None:
        if not self.enable_auto_commit or time.monotonic() < self._next_auto_commit:
            return
        self._next_auto_commit = time.monotonic() + self.auto_commit_interval_ms / 1000
        try:
            await self.commit()
        except CommitFailedError as error:
            logger.warning("auto-commit failed group=%s error=%s", self.group_id, error)


def _check_group_options(
    group_id: str | None,
    group_instance_id: str | None,
    session_timeout_ms: int,
    heartbeat_interval_ms: int,
    max_poll_interval_ms: int,
    enable_auto_commit: bool,
    auto_commit_interval_ms: int,
) -> None:
    if group_id is None and group_instance_id is not None:
        raise ValueError(
            f"group_instance_id={group_instance_id!r} needs a group: pass group_id= as well"
        )
    if group_id is None and enable_auto_commit:
        raise ValueError("enable_auto_commit=True needs a group: pass group_id= as well")
    if group_instance_id is not None and not group_instance_id:
        raise ValueError("invalid group_instance_id '': use a non-empty string or None")
    for name, value in (
        ("session_timeout_ms", session_timeout_ms),
        ("heartbeat_interval_ms", heartbeat_interval_ms),
        ("max_poll_interval_ms", max_poll_interval_ms),
        ("auto_commit_interval_ms", auto_commit_interval_ms),
    ):
        if value < 1:
            raise ValueError(f"invalid {name}={value}: use a number of milliseconds of 1 or more")
    if heartbeat_interval_ms >= session_timeout_ms:
        raise ValueError(
            f"heartbeat_interval_ms={heartbeat_interval_ms} must be lower than "
            f"session_timeout_ms={session_timeout_ms}, or the broker fences the member between "
            "two heartbeats; use at most a third of the session timeout"
        )
