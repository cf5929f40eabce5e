"""The consumer's side of a consumer group: subscription, reconciliation and fenced commits.

:class:`ConsumerGroup` ties a :class:`GroupMembership` (heartbeats) to a
:class:`Reconciler` (listener steps inside ``poll()``) and sends commits
with the member id and member epoch, so that the broker rejects commits of
a member that was fenced or no longer owns the partitions.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from kaflow.client.errors import CommitFailedError
from kaflow.client.membership import GroupMembership, MemberState
from kaflow.client.rebalance import (
    CallbackInvoker,
    ConsumerRebalanceListener,
    PartitionSet,
    Reconciler,
    call_listener,
)
from kaflow.client.records import TopicPartition
from kaflow.client.transport import Transport, quote
from kaflow.errors import KaflowError

__all__ = ["ConsumerGroup", "post_commit"]

logger = logging.getLogger(__name__)

CommitCallable = Callable[[PartitionSet], Awaitable[None]]


async def post_commit(
    transport: Transport,
    group_id: str,
    offsets: Mapping[TopicPartition, int],
    member: tuple[str, int] | None = None,
) -> None:
    """Send one offset commit, with ``(member_id, member_epoch)`` when the consumer is a member."""
    body: dict[str, Any] = {
        "offsets": [
            {"topic": tp.topic, "partition": tp.partition, "offset": offset}
            for tp, offset in sorted(offsets.items())
        ]
    }
    if member is not None:
        body["member_id"], body["member_epoch"] = member
    await transport.request("POST", f"/v1/groups/{quote(group_id)}/offsets", body=body)


class ConsumerGroup:
    """Group membership of one subscribed consumer.

    ``owned``, ``release`` and ``acquire`` read and change the consumer's
    partitions; ``auto_commit`` commits the positions of given partitions
    or is None when auto-commit is off.
    """

    def __init__(
        self,
        transport: Transport,
        membership: GroupMembership,
        *,
        owned: Callable[[], PartitionSet],
        release: Callable[[PartitionSet], None],
        acquire: Callable[[PartitionSet], None],
        auto_commit: CommitCallable | None,
    ) -> None:
        self._transport = transport
        self.membership = membership
        self._owned = owned
        self.reconciler = Reconciler(
            membership,
            ConsumerRebalanceListener(),
            owned=owned,
            release=release,
            acquire=acquire,
            auto_commit=auto_commit,
        )

    @property
    def group_id(self) -> str:
        return self.membership.group_id

    def subscribe(self, topics: Iterable[str], listener: ConsumerRebalanceListener | None) -> None:
        self.membership.set_topics(topics)
        self.reconciler.listener = listener or ConsumerRebalanceListener()

    def set_invoker(self, invoker: CallbackInvoker | None) -> None:
        self.reconciler.invoker = invoker or call_listener

    async def reconcile(self) -> None:
        """Join if needed and apply lost, revoked and added partitions."""
        await self.reconciler.reconcile()

    async def confirm_ownership(self) -> bool:
        """Return True if the member may hand out records of its partitions now.

        After a pause longer than the session timeout (a stopped process, a
        long garbage collection) the broker may have given the partitions
        to another member, so the member heartbeats first to find out.
        """
        membership = self.membership
        if membership.state is MemberState.JOINED and membership.session_expired():
            logger.info(
                "last heartbeat is older than the session timeout, checking membership "
                "group=%s member_id=%s",
                membership.group_id,
                membership.member_id,
            )
            await membership.heartbeat()
        return membership.state is MemberState.JOINED

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Commit ``offsets`` as the current member; raise CommitFailedError if fenced.

        On ``stale_generation`` the commit is sent once more when the member
        epoch changed meanwhile and the member still owns the partitions.
        """
        membership = self.membership
        for attempt in (1, 2):
            member_id, member_epoch = membership.member_id, membership.member_epoch
            if member_id is None:
                raise CommitFailedError(
                    f"commit failed: this consumer is not a member of group "
                    f"{self.group_id!r} now (state {membership.state.value}); its partitions "
                    "may belong to another member, and the next poll() joins the group again"
                )
            try:
                await post_commit(
                    self._transport, self.group_id, offsets, (member_id, member_epoch)
                )
                return
            except KaflowError as error:
                if error.code not in ("stale_generation", "unknown_member"):
                    raise
                if attempt == 1 and self._may_retry(error, member_id, member_epoch, offsets):
                    logger.info(
                        "commit retried with the new member epoch group=%s member_id=%s "
                        "member_epoch=%d",
                        self.group_id,
                        member_id,
                        membership.member_epoch,
                    )
                    continue
                raise CommitFailedError(
                    f"commit failed for group {self.group_id!r}: {error.message}; the "
                    f"partitions {_describe(offsets)} may be processed again by their new "
                    "owner, and the next poll() applies the new assignment",
                    cause=error,
                ) from error
        raise AssertionError("unreachable: the second attempt returns or raises")

    def _may_retry(
        self,
        error: KaflowError,
        member_id: str,
        member_epoch: int,
        offsets: Mapping[TopicPartition, int],
    ) -> bool:
        membership = self.membership
        return (
            error.code == "stale_generation"
            and membership.state is MemberState.JOINED
            and membership.member_id == member_id
            and membership.member_epoch != member_epoch
            and set(offsets) <= self._owned()
        )

    async def leave(self, *, static: bool) -> None:
        """Revoke every partition (listener, auto-commit) and leave the group."""
        await self.reconciler.leave(static=static)


def _describe(offsets: Mapping[TopicPartition, int]) -> str:
    return ",".join(f"{tp.topic}-{tp.partition}" for tp in sorted(offsets))
