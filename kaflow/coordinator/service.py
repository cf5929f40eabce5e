"""The group coordinator: serves heartbeats and fences members, on the Raft leader only.

Every node runs a :class:`GroupCoordinator`, but only the leader's acts.
Group records are replicated (kaflow.coordinator.model); heartbeat times
and revocation deadlines are local to the leader. When a node becomes
leader it first applies every entry its Raft status reports as committed.
Then it starts every member's timers afresh (now + timeout), so a failover
never fences a member that kept heartbeating.

A change is proposed as a ``group_update`` command computed from the
record at a version. If another update was applied first, apply rejects it,
and the coordinator computes the change again. A per-group asyncio.Lock
keeps this node's own updates of one group in order. A heartbeat that
changes nothing writes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
import uuid
from collections.abc import Callable
from typing import Final

from kaflow.broker import RaftRole
from kaflow.config import NodeConfig
from kaflow.coordinator.model import GroupRecord, GroupState, TopicPartition, group_state
from kaflow.coordinator.reconcile import (
    DEFAULT_SESSION_TIMEOUT_MS,
    JOIN_EPOCH,
    LEAVE_EPOCH,
    STATIC_LEAVE_EPOCH,
    GroupContext,
    HeartbeatOutcome,
    HeartbeatRequest,
    HeartbeatResponse,
    heartbeat,
    refresh_metadata,
    remove_members,
)
from kaflow.errors import (
    InvalidConfigError,
    InvalidRequestError,
    KaflowError,
    LeaderNotAvailableError,
    NotLeaderError,
    RequestTimedOutError,
)
from kaflow.replication.commands import GroupUpdate, encode_command
from kaflow.replication.group_apply import VERSION_CONFLICT
from kaflow.replication.replica import Replica
from kaflow.replication.state_machine import StateMachine

__all__ = ["DEFAULT_SESSION_TIMEOUT_MS", "GroupCoordinator", "HeartbeatResponse"]

logger = logging.getLogger(__name__)

# Kafka's consumer default of max.poll.interval.ms.
DEFAULT_REBALANCE_TIMEOUT_MS: Final = 300_000
# How often the timer task checks leadership, session timeouts and revocation deadlines.
TICK_INTERVAL_S: Final = 0.2
# Attempts of one change when other updates of the group keep being applied first.
_MAX_ATTEMPTS: Final = 8


class GroupCoordinator:
    """Serves consumer group heartbeats and fences expired members while this node leads."""

    def __init__(
        self,
        config: NodeConfig,
        replica: Replica,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if config.group_min_session_timeout_ms > config.group_max_session_timeout_ms:
            raise InvalidConfigError(
                f"group_min_session_timeout_ms {config.group_min_session_timeout_ms} is above "
                f"group_max_session_timeout_ms {config.group_max_session_timeout_ms}; set the "
                "minimum at or below the maximum"
            )
        self._config = config
        self._replica = replica
        self._clock = clock
        self._locks: dict[str, asyncio.Lock] = {}
        # (group, member_id) -> clock time of the last heartbeat / the revocation deadline.
        self._heartbeats: dict[tuple[str, str], float] = {}
        self._deadlines: dict[tuple[str, str], float] = {}
        self._leader_term: int | None = None
        self._active = False
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    # Lifecycle.

    def start(self) -> None:
        """Start the timer task on the running event loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @property
    def active(self) -> bool:
        """True while this node leads and has started the members' timers."""
        return self._active

    def require_leader(self) -> None:
        """Raise NotLeaderError unless this node is the Raft leader."""
        if not self._replica.raft.is_leader():
            raise NotLeaderError(
                "consumer group writes run on the Raft leader and this node is not the leader; "
                "send the request to the leader"
            )

    def last_heartbeat_ms_ago(self, group: str, member_id: str) -> int | None:
        """Return the time since the member's last heartbeat, or None unless this node leads."""
        if not self._active:
            return None
        seen = self._heartbeats.get((group, member_id))
        if seen is None:
            return None
        return max(0, round((self._clock() - seen) * 1000))

    # Heartbeats.

    def resolve_session_timeout(self, requested: int | None) -> int:
        """Return the session timeout a join gets; raise InvalidRequestError out of bounds."""
        timeout = DEFAULT_SESSION_TIMEOUT_MS if requested is None else requested
        low = self._config.group_min_session_timeout_ms
        high = self._config.group_max_session_timeout_ms
        if not low <= timeout <= high:
            raise InvalidRequestError(
                f"session_timeout_ms {timeout} is outside this node's bounds {low}..{high} "
                "(group_min_session_timeout_ms..group_max_session_timeout_ms); send a value "
                "in that range",
                field="session_timeout_ms",
                value=timeout,
                min=low,
                max=high,
            )
        return timeout

    async def heartbeat(self, group: str, request: HeartbeatRequest) -> HeartbeatResponse:
        """Serve one heartbeat (join, leave or regular) and return the member's assignment."""
        self._require_active()
        if request.member_epoch == JOIN_EPOCH:
            timeout = self.resolve_session_timeout(request.session_timeout_ms)
            request = dataclasses.replace(request, session_timeout_ms=timeout)
        async with self._lock(group):
            before, outcome = await self._update(
                group, lambda record, context: heartbeat(record, request, context)
            )
        self._after_heartbeat(group, request, before, outcome)
        member = outcome.record.members.get(outcome.member_id)
        session_timeout_ms = (
            member.session_timeout_ms
            if member is not None
            else request.session_timeout_ms or DEFAULT_SESSION_TIMEOUT_MS
        )
        return HeartbeatResponse(
            group=group,
            member_id=outcome.member_id,
            member_epoch=outcome.member_epoch,
            group_epoch=outcome.record.group_epoch,
            heartbeat_interval_ms=self.heartbeat_interval_ms(session_timeout_ms),
            session_timeout_ms=session_timeout_ms,
            assignment=outcome.assignment,
        )

    def heartbeat_interval_ms(self, session_timeout_ms: int) -> int:
        """Return the configured interval, at most a third of the session timeout."""
        return max(1, min(self._config.group_heartbeat_interval_ms, session_timeout_ms // 3))

    def require_active(self) -> None:
        """Raise unless this node leads and has applied what earlier leaders committed.

        NotLeaderError on a follower; the retriable LeaderNotAvailableError on a
        leader that is still applying the log.
        """
        self._require_active()

    def _require_active(self) -> None:
        self.require_leader()
        if not self._active:
            self._track_leadership()
        if not self._active:
            raise LeaderNotAvailableError(
                "this node was just elected Raft leader and is still applying the log before "
                "it serves consumer group heartbeats; retry shortly"
            )

    def _lock(self, group: str) -> asyncio.Lock:
        lock = self._locks.get(group)
        if lock is None:
            lock = self._locks[group] = asyncio.Lock()
        return lock

    async def _update(
        self,
        group: str,
        change: Callable[[GroupRecord, GroupContext], HeartbeatOutcome],
    ) -> tuple[GroupRecord, HeartbeatOutcome]:
        """Compute ``change`` on the stored record and propose it until it applies."""
        for _ in range(_MAX_ATTEMPTS):
            state, _ = self._replica.check_ready()
            record = state.group_record(group) or GroupRecord(group)
            outcome = change(record, self._context(state, record, group))
            if outcome.record == record:
                # NOTE: served without a Raft round trip, so a deposed leader that has not
                # noticed yet can confirm an assignment the new leader changed. Commits are
                # still fenced at apply.
                return record, outcome
            result = await self._replica.propose(
                encode_command(GroupUpdate(group, record.version, outcome.record))
            )
            if result.rejection is not None and result.rejection.code == VERSION_CONFLICT:
                continue
            result.raise_for_rejection()
            self._log_change(record, outcome.record)
            return record, outcome
        raise RequestTimedOutError(
            f"the update of consumer group {group!r} conflicted with other updates "
            f"{_MAX_ATTEMPTS} times; retry the request",
            group=group,
        )

    def _context(self, state: StateMachine, record: GroupRecord, group: str) -> GroupContext:
        counts = {topic.name: topic.partitions for topic in state.topics()}
        committed = state.group_offsets(group)
        lags: dict[TopicPartition, int] = {}
        for key, offsets in state.all_partitions().items():
            entry = committed.get(key)
            start = entry.offset if entry is not None else offsets.log_start_offset
            lags[key] = max(0, offsets.log_end_offset - start)
        return GroupContext(counts, lags, uuid.uuid4().hex)

    def _after_heartbeat(
        self,
        group: str,
        request: HeartbeatRequest,
        before: GroupRecord,
        outcome: HeartbeatOutcome,
    ) -> None:
        now = self._clock()
        key = (group, outcome.member_id)
        if outcome.replaced is not None:
            self._forget(group, outcome.replaced)
            logger.info(
                "group member replaced group=%s member_id=%s old_member_id=%s group_instance_id=%s",
                group,
                outcome.member_id,
                outcome.replaced,
                request.group_instance_id,
            )
        if request.member_epoch == JOIN_EPOCH:
            member = outcome.record.members[outcome.member_id]
            logger.info(
                "group member joined group=%s member_id=%s group_instance_id=%s client_id=%s "
                "topics=%s group_epoch=%d",
                group,
                outcome.member_id,
                member.group_instance_id,
                member.client_id,
                ",".join(member.topics),
                outcome.record.group_epoch,
            )
        if request.member_epoch == LEAVE_EPOCH:
            self._forget(group, outcome.member_id)
            logger.info(
                "group member left group=%s member_id=%s group_epoch=%d",
                group,
                outcome.member_id,
                outcome.record.group_epoch,
            )
            return
        if request.member_epoch == STATIC_LEAVE_EPOCH:
            logger.info(
                "group member left temporarily group=%s member_id=%s; it keeps its partitions "
                "until its session times out",
                group,
                outcome.member_id,
            )
            return
        self._heartbeats[key] = now
        self._track_revocations(group, outcome.record, now)

    def _track_revocations(self, group: str, record: GroupRecord, now: float) -> None:
        for member in record.members.values():
            key = (group, member.member_id)
            if not member.revoking:
                self._deadlines.pop(key, None)
            elif key not in self._deadlines:
                self._deadlines[key] = now + member.rebalance_timeout_ms / 1000

    def _forget(self, group: str, member_id: str) -> None:
        self._heartbeats.pop((group, member_id), None)
        self._deadlines.pop((group, member_id), None)

    def _log_change(self, before: GroupRecord, after: GroupRecord) -> None:
        if after.group_epoch != before.group_epoch:
            logger.info(
                "group rebalance started group=%s group_epoch=%d members=%d",
                after.group,
                after.group_epoch,
                len(after.members),
            )
        if group_state(after) is GroupState.STABLE and group_state(before) is not GroupState.STABLE:
            logger.info(
                "group rebalance done group=%s group_epoch=%d members=%d",
                after.group,
                after.group_epoch,
                len(after.members),
            )

    # Timers.

    async def _run(self) -> None:
        while True:
            try:
                await self._tick()
                if self._failing:
                    self._failing = False
                    logger.info(
                        "group coordinator timers recovered node_id=%s", self._config.node_id
                    )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not self._failing:
                    self._failing = True
                    logger.warning(
                        "group coordinator timer check failed node_id=%s error=%r; retrying "
                        "every %.1f s",
                        self._config.node_id,
                        exc,
                        TICK_INTERVAL_S,
                        exc_info=not isinstance(exc, KaflowError),
                    )
            await asyncio.sleep(TICK_INTERVAL_S)

    async def _tick(self) -> None:
        if not self._track_leadership():
            return
        state, _ = self._replica.check_ready()
        now = self._clock()
        # Lag matters only when the target is recomputed, which _fence does with lags.
        metadata = GroupContext({topic.name: topic.partitions for topic in state.topics()}, {})
        for group in state.groups():
            record = state.group_record(group)
            if record is None or not record.members:
                continue
            expired = self._expired_members(group, record, now)
            if expired or refresh_metadata(record, metadata) != record:
                await self._fence(group)

    def _track_leadership(self) -> bool:
        """Follow leader changes; return True while this node leads with its timers running."""
        status = self._replica.raft_status()
        try:
            leading = self._replica.raft.is_leader() and self._replica.is_ready()
        except KaflowError:
            leading = False
        if not leading or status is None:
            if self._leader_term is not None:
                logger.info("group coordinator inactive node_id=%s", self._config.node_id)
            self._leader_term = None
            self._active = False
            self._heartbeats.clear()
            self._deadlines.clear()
            return False
        if self._leader_term != status.term:
            self._leader_term = status.term
            self._active = False
        if not self._active:
            # A new leader first applies what the previous leaders committed.
            if status.role is not RaftRole.LEADER or status.applied_index < status.commit_index:
                return False
            self._start_timers()
        return True

    def _start_timers(self) -> None:
        state, _ = self._replica.check_ready()
        now = self._clock()
        self._heartbeats.clear()
        self._deadlines.clear()
        members = 0
        for group in state.groups():
            record = state.group_record(group)
            if record is None:
                continue
            for member in record.members.values():
                self._heartbeats[(group, member.member_id)] = now
                members += 1
            self._track_revocations(group, record, now)
        self._active = True
        logger.info(
            "group coordinator active node_id=%s term=%s members=%d",
            self._config.node_id,
            self._leader_term,
            members,
        )

    def _expired_members(self, group: str, record: GroupRecord, now: float) -> dict[str, str]:
        """Return member id -> fencing reason for members whose timers expired."""
        expired: dict[str, str] = {}
        for member in record.members.values():
            key = (group, member.member_id)
            seen = self._heartbeats.setdefault(key, now)
            if now - seen > member.session_timeout_ms / 1000:
                expired[member.member_id] = "session_timeout"
                continue
            if not member.revoking:
                self._deadlines.pop(key, None)
                continue
            deadline = self._deadlines.setdefault(key, now + member.rebalance_timeout_ms / 1000)
            if now > deadline:
                expired[member.member_id] = "rebalance_timeout"
        return expired

    async def _fence(self, group: str) -> None:
        """Remove expired members (and follow topic changes) in one group update."""
        expired: dict[str, str] = {}
        async with self._lock(group):

            def change(record: GroupRecord, context: GroupContext) -> HeartbeatOutcome:
                # Checked again under the lock: a heartbeat may have arrived meanwhile.
                expired.clear()
                expired.update(self._expired_members(group, record, self._clock()))
                updated = remove_members(refresh_metadata(record, context), expired, context)
                return HeartbeatOutcome(updated, "", 0, frozenset())

            before, outcome = await self._update(group, change)
        for member_id, reason in sorted(expired.items()):
            if member_id in before.members:
                logger.info(
                    "group member fenced group=%s member_id=%s reason=%s group_epoch=%d",
                    group,
                    member_id,
                    reason,
                    outcome.record.group_epoch,
                )
            self._forget(group, member_id)
        self._track_revocations(group, outcome.record, self._clock())
