"""Rebalance listeners and the steps that apply a group assignment to a consumer.

The heartbeat task (:mod:`kaflow.client.membership`) only stores the
assignment the broker sends. :class:`Reconciler` applies it inside
``poll()``, in the caller's task, so listener callbacks never run
concurrently with the caller's own record processing:

1. partitions lost (the member was fenced or left): stop reading them, call
   ``on_partitions_lost``, then join again with member epoch 0;
2. partitions revoked (owned but no longer assigned): stop reading them,
   auto-commit them if enabled, call ``on_partitions_revoked``, then report
   the smaller owned set to the broker at once so the next owner can start;
3. partitions added: read them from the committed offset (or
   ``auto_offset_reset``) and call ``on_partitions_assigned``.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from kaflow.client.errors import CommitFailedError
from kaflow.client.membership import GroupMembership, MemberState
from kaflow.client.records import TopicPartition
from kaflow.errors import KaflowError

__all__ = [
    "CallbackInvoker",
    "ConsumerRebalanceListener",
    "PartitionSet",
    "Reconciler",
    "call_listener",
]

logger = logging.getLogger(__name__)

PartitionSet = set[TopicPartition]
ListenerCallback = Callable[[PartitionSet], Any]
# Runs one listener callback with its partitions; the blocking Consumer
# replaces the default so callbacks run in the thread that called poll().
CallbackInvoker = Callable[[ListenerCallback, PartitionSet], Awaitable[None]]


class ConsumerRebalanceListener:
    """Callbacks that ``poll()`` runs when the group moves partitions to or from this member.

    Override any of the methods, as plain functions or coroutines (the
    blocking ``Consumer`` accepts plain functions only). Each receives the
    set of partitions concerned; the consumer's methods, ``commit()``
    included, may be called from them. A callback's exception is raised from
    ``poll()`` after the step finished.
    """

    def on_partitions_revoked(self, revoked: PartitionSet) -> Awaitable[None] | None:
        """Run before the member gives up ``revoked``; the member may still commit them here."""
        return None

    def on_partitions_assigned(self, assigned: PartitionSet) -> Awaitable[None] | None:
        """Run after the member got ``assigned``, before records of them are returned."""
        return None

    def on_partitions_lost(self, lost: PartitionSet) -> Awaitable[None] | None:
        """Run after the member lost ``lost`` without a revocation; commits would fail.

        The default calls :meth:`on_partitions_revoked`, as Kafka's listener does.
        """
        return self.on_partitions_revoked(lost)


async def call_listener(callback: ListenerCallback, partitions: PartitionSet) -> None:
    """Call ``callback`` with ``partitions`` and await its result if it is awaitable."""
    result = callback(partitions)
    if inspect.isawaitable(result):
        await result


class Reconciler:
    """Apply the assignment that the heartbeats stored to the consumer's partitions.

    ``owned`` returns the partitions the consumer reads now; ``release``
    drops the positions of partitions and ``acquire`` adds partitions without
    a position. ``auto_commit`` commits the positions of the given
    partitions, or is None when auto-commit is off.
    """

    def __init__(
        self,
        membership: GroupMembership,
        listener: ConsumerRebalanceListener,
        *,
        owned: Callable[[], PartitionSet],
        release: Callable[[PartitionSet], None],
        acquire: Callable[[PartitionSet], None],
        auto_commit: Callable[[PartitionSet], Awaitable[None]] | None,
        invoker: CallbackInvoker = call_listener,
    ) -> None:
        self.membership = membership
        self.listener = listener
        self.invoker = invoker
        self._owned = owned
        self._release = release
        self._acquire = acquire
        self._auto_commit = auto_commit

    async def reconcile(self) -> None:
        """Apply lost, revoked and added partitions in that order, joining first if needed."""
        membership = self.membership
        membership.changed.clear()
        try:
            membership.raise_loop_error()
        except KaflowError as error:
            if error.code == "fenced_instance_id" and self._owned():
                # Another consumer uses this static identity now: drop all, never rejoin.
                await self._lose_all()
            raise
        if membership.state in (MemberState.FENCED, MemberState.LEFT):
            await self._lose_all()
        if membership.state is MemberState.UNJOINED:
            await membership.join()

        target = membership.assignment
        revoked = self._owned() - target
        if revoked:
            await self._revoke(revoked)
            target = membership.assignment

        added = set(target) - self._owned()
        if added and membership.state is MemberState.JOINED:
            # NOTE: the committed offsets of added partitions are read from any node, and a
            # follower that lags behind the leader can return an older offset.
            self._acquire(added)
            logger.info(
                "partitions assigned group=%s member_id=%s partitions=%s",
                membership.group_id,
                membership.member_id,
                _describe(added),
            )
            await self.invoker(self.listener.on_partitions_assigned, added)

    async def _lose_all(self) -> None:
        lost = self._owned()
        self._release(lost)
        self.membership.reset_for_rejoin()
        if lost:
            logger.warning(
                "partitions lost group=%s partitions=%s",
                self.membership.group_id,
                _describe(lost),
            )
            await self.invoker(self.listener.on_partitions_lost, lost)

    async def _revoke(self, revoked: PartitionSet) -> None:
        try:
            await self._commit_before_release(revoked)
            await self.invoker(self.listener.on_partitions_revoked, revoked)
        finally:
            self._release(revoked)
            logger.info(
                "partitions revoked group=%s member_id=%s partitions=%s",
                self.membership.group_id,
                self.membership.member_id,
                _describe(revoked),
            )
            # Reporting the smaller owned set releases the partitions to their next owner.
            await self.membership.heartbeat(owned=self._owned())

    async def _commit_before_release(self, partitions: PartitionSet) -> None:
        if self._auto_commit is None:
            return
        try:
            await self._auto_commit(partitions)
        except CommitFailedError as error:
            logger.warning(
                "auto-commit of revoked partitions failed group=%s partitions=%s error=%s",
                self.membership.group_id,
                _describe(partitions),
                error,
            )

    async def leave(self, *, static: bool) -> None:
        """Give up every partition and leave the group.

        A joined member revokes its partitions (auto-commit, then
        ``on_partitions_revoked``) and leaves with member epoch -1, or -2
        when ``static`` so that the broker keeps its partitions for a
        restart with the same ``group_instance_id``. A fenced member
        reports its partitions as lost.
        """
        membership = self.membership
        owned = self._owned()
        try:
            if membership.state is MemberState.JOINED and owned:
                try:
                    await self._commit_before_release(owned)
                    await self.invoker(self.listener.on_partitions_revoked, owned)
                finally:
                    self._release(owned)
            elif owned:
                self._release(owned)
                await self.invoker(self.listener.on_partitions_lost, owned)
        finally:
            await membership.leave(static=static)


def _describe(partitions: PartitionSet) -> str:
    return ",".join(f"{tp.topic}-{tp.partition}" for tp in sorted(partitions))
