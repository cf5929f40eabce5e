"""Consumer group membership: join, heartbeats, leave, and the latest assignment.

The broker computes assignments (``POST /v1/groups/{group}/heartbeat``). A
member joins with member epoch 0 and its topics, then heartbeats with the
member epoch of the last response. Each response carries the full set of
partitions the member should own now; :class:`GroupMembership` stores it
and sets :attr:`GroupMembership.changed`, and the consumer applies it inside
``poll()`` (see :mod:`kaflow.client.rebalance`).

A background task heartbeats every heartbeat interval. It never calls user
code: when the broker has no such member (``unknown_member``), or
its epoch is stale (``stale_generation``), the task marks the member
fenced, and the next ``poll()`` reports its partitions as lost and joins
again. When ``poll()`` was not called for ``max_poll_interval_ms``, the task
leaves the group so other members can take over the partitions.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from kaflow.client.errors import ClientClosedError, NodeUnreachableError
from kaflow.client.records import TopicPartition
from kaflow.client.transport import Transport, quote
from kaflow.errors import KaflowError

__all__ = ["ConsumerGroupMetadata", "GroupMembership", "MemberState"]

logger = logging.getLogger(__name__)

JOIN_EPOCH = 0
LEAVE_EPOCH = -1
# A static member that leaves with -2 keeps its partitions until its session times out.
STATIC_LEAVE_EPOCH = -2
# Error codes after which the member must drop its partitions and join again.
_FENCING_CODES = ("unknown_member", "stale_generation")
# Another member joined with this member's group_instance_id: fatal, never rejoined.
_REPLACED_CODE = "fenced_instance_id"
# The shortest time between heartbeats, whatever the broker returns.
_MIN_HEARTBEAT_INTERVAL_S = 0.05


class MemberState(enum.Enum):
    """The member's state in its group."""

    UNJOINED = "unjoined"
    JOINED = "joined"
    FENCED = "fenced"
    LEFT = "left"


@dataclass(frozen=True)
class ConsumerGroupMetadata:
    """A snapshot of a consumer's group membership.

    ``member_id`` is None before the first join and after leaving or being
    fenced; ``member_epoch`` is the generation its commits carry.
    """

    group_id: str
    member_id: str | None
    member_epoch: int
    group_epoch: int | None
    group_instance_id: str | None
    state: MemberState
    assignment: frozenset[TopicPartition]


class GroupMembership:
    """One consumer's membership in ``group_id``, kept alive by a heartbeat task.

    ``assignment`` is the set of partitions the last heartbeat response assigned.
    ``last_heartbeat_ok`` is the monotonic time at which the last successful
    heartbeat was sent.
    """

    def __init__(
        self,
        transport: Transport,
        group_id: str,
        *,
        group_instance_id: str | None,
        client_id: str | None,
        session_timeout_ms: int,
        heartbeat_interval_ms: int,
        max_poll_interval_ms: int,
    ) -> None:
        self._transport = transport
        self.group_id = group_id
        self.group_instance_id = group_instance_id
        self.client_id = client_id
        self.session_timeout_ms = session_timeout_ms
        self._client_interval_ms = heartbeat_interval_ms
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.max_poll_interval_ms = max_poll_interval_ms

        self.state = MemberState.UNJOINED
        self.member_id: str | None = None
        self.member_epoch = JOIN_EPOCH
        self.group_epoch: int | None = None
        self.assignment: frozenset[TopicPartition] = frozenset()
        self.topics: tuple[str, ...] = ()
        self.changed = asyncio.Event()
        self.last_heartbeat_ok = 0.0

        self._topics_changed = False
        # An owned set not yet acknowledged; every heartbeat sends it until one succeeds.
        self._owned_to_report: list[dict[str, Any]] | None = None
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._loop_error: KaflowError | None = None
        self._failing = False
        self._last_poll = time.monotonic()
        self._polls_running = 0

    # Subscription and poll bookkeeping.

    def set_topics(self, topics: Iterable[str]) -> None:
        """Replace the subscribed topics; a joined member sends them with its next heartbeat."""
        new_topics = tuple(sorted(set(topics)))
        if new_topics != self.topics:
            self.topics = new_topics
            self._topics_changed = True

    def poll_started(self) -> None:
        self._polls_running += 1
        self._last_poll = time.monotonic()

    def poll_finished(self) -> None:
        self._polls_running -= 1
        self._last_poll = time.monotonic()

    def poll_overdue(self) -> bool:
        """Return True when no poll() runs and the last one ended over max_poll_interval_ms ago."""
        idle_s = time.monotonic() - self._last_poll
        return self._polls_running == 0 and idle_s * 1000 > self.max_poll_interval_ms

    def session_expired(self) -> bool:
        """Return True when the last successful heartbeat is older than the session timeout."""
        return (time.monotonic() - self.last_heartbeat_ok) * 1000 > self.session_timeout_ms

    def metadata(self) -> ConsumerGroupMetadata:
        return ConsumerGroupMetadata(
            group_id=self.group_id,
            member_id=self.member_id,
            member_epoch=self.member_epoch,
            group_epoch=self.group_epoch,
            group_instance_id=self.group_instance_id,
            state=self.state,
            assignment=self.assignment,
        )

    def raise_loop_error(self) -> None:
        """Raise a non-retriable error that stopped the heartbeat task.

        Raised once, except ``fenced_instance_id``: another consumer runs with
        this member's group_instance_id, and joining again would only replace
        it in turn, so every later poll() raises it until the consumer closes.
        """
        error = self._loop_error
        if error is None:
            return
        if error.code != _REPLACED_CODE:
            self._loop_error = None
        raise error

    # Requests.

    async def join(self) -> None:
        """Join the group with member epoch 0 and start the heartbeat task."""
        async with self._lock:
            # NOTE: a join retried after a lost response can leave an extra member on the
            # broker until its session times out, because a join has no idempotency key.
            try:
                response = await self._send(self._join_body())
            except KaflowError as error:
                if error.code != "unknown_member" or self.member_id is None:
                    raise
                # The broker forgot the member id kept for a rejoin: join as a new member.
                self.member_id = None
                response = await self._send(self._join_body())
            self.state = MemberState.JOINED
            self._topics_changed = False
            self._apply(response)
        logger.info(
            "joined group group=%s member_id=%s member_epoch=%d group_epoch=%s instance_id=%s",
            self.group_id,
            self.member_id,
            self.member_epoch,
            self.group_epoch,
            self.group_instance_id,
        )
        self._start_task()

    def _join_body(self) -> dict[str, Any]:
        return {
            "member_id": self.member_id,
            "member_epoch": JOIN_EPOCH,
            "group_instance_id": self.group_instance_id,
            "topics": list(self.topics),
            "session_timeout_ms": self.session_timeout_ms,
            "rebalance_timeout_ms": self.max_poll_interval_ms,
            "owned": None,
            "client_id": self.client_id,
        }

    async def heartbeat(self, owned: Iterable[TopicPartition] | None = None) -> None:
        """Send one heartbeat (reporting ``owned`` when given) and store the response.

        Fencing errors mark the member fenced instead of raising; other
        errors are raised. Does nothing unless the member is joined.
        """
        async with self._lock:
            if owned is not None:
                self._owned_to_report = _render_partitions(owned)
            if self.state is not MemberState.JOINED:
                return
            body: dict[str, Any] = {
                "member_id": self.member_id,
                "member_epoch": self.member_epoch,
                "group_instance_id": self.group_instance_id,
                "topics": list(self.topics) if self._topics_changed else None,
                "owned": self._owned_to_report,
            }
            try:
                response = await self._send(body, quick=True)
            except KaflowError as error:
                if error.code == _REPLACED_CODE:
                    self._stop_for_error(error)
                    raise
                if error.code not in _FENCING_CODES:
                    raise
                self._fence(error)
                return
            self._topics_changed = False
            self._owned_to_report = None
            self._apply(response)

    async def leave(self, *, static: bool) -> None:
        """Leave the group (member epoch -1, or -2 for a static member) and stop heartbeating."""
        await self._stop_task()
        async with self._lock:
            joined = self.state is MemberState.JOINED and self.member_id is not None
            epoch = STATIC_LEAVE_EPOCH if static else LEAVE_EPOCH
            if joined:
                await self._send_leave(epoch)
            self.reset_for_rejoin()
            self.member_id = None

    async def _send_leave(self, epoch: int) -> None:
        body = {
            "member_id": self.member_id,
            "member_epoch": epoch,
            "group_instance_id": self.group_instance_id,
        }
        try:
            await self._send(body, quick=True)
        except (KaflowError, NodeUnreachableError) as error:
            # The session timeout removes the member anyway; leaving only makes it sooner.
            logger.warning(
                "leaving group failed group=%s member_id=%s error=%r",
                self.group_id,
                self.member_id,
                error,
            )
            return
        logger.info(
            "left group group=%s member_id=%s member_epoch=%d",
            self.group_id,
            self.member_id,
            epoch,
        )

    def reset_for_rejoin(self) -> None:
        """Clear the assignment so that the next poll() joins with member epoch 0.

        The member id stays. After ``stale_generation`` the join sends it, so
        the broker replaces that member instead of counting a second one.
        """
        self.state = MemberState.UNJOINED
        self.member_epoch = JOIN_EPOCH
        self.assignment = frozenset()
        self._owned_to_report = None

    async def _send(self, body: dict[str, Any], *, quick: bool = False) -> Any:
        path = f"/v1/groups/{quote(self.group_id)}/heartbeat"
        sent_at = time.monotonic()
        if quick:
            # A heartbeat that takes longer than the session cannot keep the member alive.
            session_s = max(self.session_timeout_ms / 1000, 1.0)
            response = await self._transport.request(
                "POST", path, body=body, retry_timeout_s=session_s, request_timeout_s=session_s
            )
        else:
            response = await self._transport.request("POST", path, body=body)
        self.last_heartbeat_ok = sent_at
        return response

    def _apply(self, response: dict[str, Any]) -> None:
        previous_epoch = self.member_epoch
        self.member_id = str(response["member_id"])
        self.member_epoch = int(response["member_epoch"])
        self.group_epoch = int(response["group_epoch"])
        self.session_timeout_ms = int(response.get("session_timeout_ms") or self.session_timeout_ms)
        broker_interval = int(response.get("heartbeat_interval_ms") or self._client_interval_ms)
        self.heartbeat_interval_ms = min(
            broker_interval, self._client_interval_ms, self.session_timeout_ms // 3
        )
        assignment = frozenset(
            TopicPartition(str(entry["topic"]), int(partition))
            for entry in response.get("assignment") or []
            for partition in entry["partitions"]
        )
        if assignment != self.assignment:
            self.assignment = assignment
            self.changed.set()
        if self.member_epoch != previous_epoch:
            logger.info(
                "member epoch changed group=%s member_id=%s member_epoch=%d group_epoch=%d "
                "assigned=%d",
                self.group_id,
                self.member_id,
                self.member_epoch,
                self.group_epoch,
                len(assignment),
            )

    def _fence(self, error: KaflowError) -> None:
        logger.warning(
            "member fenced, its partitions are lost until the next poll() joins again "
            "group=%s member_id=%s member_epoch=%d error=%s",
            self.group_id,
            self.member_id,
            self.member_epoch,
            error.code,
        )
        self.state = MemberState.FENCED
        if error.code == "unknown_member":
            self.member_id = None
        self.changed.set()

    # The heartbeat task.

    def _start_task(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._heartbeat_forever(), name=f"kaflow-heartbeat-{self.group_id}"
            )

    async def _stop_task(self) -> None:
        task, self._task = self._task, None
        if task is None or task is asyncio.current_task():
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def close(self) -> None:
        """Stop the heartbeat task without leaving the group."""
        await self._stop_task()

    async def _heartbeat_forever(self) -> None:
        while self.state is MemberState.JOINED:
            await asyncio.sleep(max(self.heartbeat_interval_ms / 1000, _MIN_HEARTBEAT_INTERVAL_S))
            if self.state is not MemberState.JOINED:
                return
            if self.poll_overdue():
                await self._leave_for_poll_timeout()
                return
            try:
                await self.heartbeat()
            except ClientClosedError:
                return
            except (KaflowError, NodeUnreachableError) as error:
                if isinstance(error, KaflowError) and not error.retriable:
                    self._stop_for_error(error)
                    return
                self._note_failure(error)
                continue
            if self._failing:
                logger.info(
                    "heartbeat recovered group=%s member_id=%s", self.group_id, self.member_id
                )
                self._failing = False

    def _note_failure(self, error: Exception) -> None:
        if not self._failing:
            logger.warning(
                "heartbeat failed, retrying every heartbeat interval group=%s member_id=%s "
                "error=%r",
                self.group_id,
                self.member_id,
                error,
            )
            self._failing = True

    def _stop_for_error(self, error: KaflowError) -> None:
        if self._loop_error is error:
            return
        logger.error(
            "heartbeat rejected, the member stops and the next poll() raises the error "
            "group=%s member_id=%s error=%r",
            self.group_id,
            self.member_id,
            error,
        )
        self._loop_error = error
        self.state = MemberState.FENCED
        self.changed.set()

    async def _leave_for_poll_timeout(self) -> None:
        logger.warning(
            "poll() was not called for max_poll_interval_ms=%d, leaving the group; the next "
            "poll() joins again group=%s member_id=%s",
            self.max_poll_interval_ms,
            self.group_id,
            self.member_id,
        )
        async with self._lock:
            if self.state is MemberState.JOINED:
                await self._send_leave(LEAVE_EPOCH)
                self.state = MemberState.LEFT
                self.member_id = None
                self.changed.set()


def _render_partitions(partitions: Iterable[TopicPartition]) -> list[dict[str, Any]]:
    by_topic: dict[str, list[int]] = {}
    for tp in partitions:
        by_topic.setdefault(tp.topic, []).append(tp.partition)
    return [
        {"topic": topic, "partitions": sorted(numbers)}
        for topic, numbers in sorted(by_topic.items())
    ]
