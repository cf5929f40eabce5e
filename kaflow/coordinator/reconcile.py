"""Pure reconciliation rules: group record + heartbeat -> new group record + response.

Nothing here reads a clock or the network, so every rule is testable by
feeding records. The rules keep one invariant: a partition has at most one
member that owns it (``owned``, revoking included).

- The group epoch bumps on every change of membership or subscription, and
  when a subscribed topic's partition count changes or the topic is created
  or deleted. Each bump recomputes the target assignment.
- A member that owns partitions outside its target moves them to
  ``revoking`` and keeps its member epoch, so it can still commit them. Once
  it reports ``owned`` without them, they are released.
- A member with nothing to revoke gets the partitions of its target that no
  other member owns, and its member epoch becomes the group epoch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from kaflow.coordinator.assignor import assign
from kaflow.coordinator.model import GroupMember, GroupRecord, TopicPartition
from kaflow.errors import (
    FencedInstanceIdError,
    InvalidRequestError,
    StaleGenerationError,
    UnknownGroupMemberError,
)

__all__ = [
    "DEFAULT_SESSION_TIMEOUT_MS",
    "JOIN_EPOCH",
    "LEAVE_EPOCH",
    "STATIC_LEAVE_EPOCH",
    "GroupContext",
    "HeartbeatOutcome",
    "HeartbeatRequest",
    "HeartbeatResponse",
    "heartbeat",
    "refresh_metadata",
    "remove_members",
]

# Kafka's consumer default of session.timeout.ms.
DEFAULT_SESSION_TIMEOUT_MS = 45_000
JOIN_EPOCH = 0
LEAVE_EPOCH = -1
STATIC_LEAVE_EPOCH = -2


@dataclass(frozen=True, slots=True)
class HeartbeatRequest:
    """A validated heartbeat; ``session_timeout_ms`` None means Kafka's default, 45000."""

    member_id: str | None
    member_epoch: int
    group_instance_id: str | None = None
    topics: tuple[str, ...] | None = None
    session_timeout_ms: int | None = None
    rebalance_timeout_ms: int = 300_000
    owned: frozenset[TopicPartition] | None = None
    client_id: str | None = None


@dataclass(frozen=True, slots=True)
class HeartbeatResponse:
    """The body of a heartbeat's 200 response."""

    group: str
    member_id: str
    member_epoch: int
    group_epoch: int
    heartbeat_interval_ms: int
    session_timeout_ms: int
    assignment: frozenset[TopicPartition]


@dataclass(frozen=True, slots=True)
class GroupContext:
    """The cluster state a rule reads.

    ``partition_counts`` has every existing topic; ``lags`` the lag of each
    partition (read only when the target is recomputed); ``new_member_id``
    is the id a join gets.
    """

    partition_counts: Mapping[str, int]
    lags: Mapping[TopicPartition, int]
    new_member_id: str = ""


@dataclass(frozen=True, slots=True)
class HeartbeatOutcome:
    """The new record and the response fields of one heartbeat.

    ``replaced`` is the member id a static join fenced, if any.
    """

    record: GroupRecord
    member_id: str
    member_epoch: int
    assignment: frozenset[TopicPartition]
    replaced: str | None = None


def heartbeat(
    record: GroupRecord, request: HeartbeatRequest, context: GroupContext
) -> HeartbeatOutcome:
    """Apply one heartbeat to ``record``.

    Raises UnknownGroupMemberError when the member is not in the group,
    StaleGenerationError when its epoch is not the current one, and
    InvalidRequestError for a combination of fields the rules reject.
    """
    record = refresh_metadata(record, context)
    if request.member_epoch == JOIN_EPOCH:
        return _join(record, request, context)

    _check_not_replaced(record, request)
    member = _require_member(record, request.member_id)
    if request.member_epoch == LEAVE_EPOCH:
        left = remove_members(record, [member.member_id], context)
        return HeartbeatOutcome(left, member.member_id, LEAVE_EPOCH, frozenset())
    if request.member_epoch == STATIC_LEAVE_EPOCH:
        if member.group_instance_id is None:
            raise InvalidRequestError(
                f"member_epoch -2 (leave temporarily) is only for static members, and member "
                f"{member.member_id!r} has no group_instance_id; send -1 to leave the group",
                field="member_epoch",
                value=STATIC_LEAVE_EPOCH,
            )
        # The member keeps its partitions until its session times out.
        return HeartbeatOutcome(record, member.member_id, STATIC_LEAVE_EPOCH, frozenset())
    if request.member_epoch != member.member_epoch:
        raise StaleGenerationError(
            f"member {member.member_id!r} sent member_epoch {request.member_epoch}, but its "
            f"current epoch is {member.member_epoch}; join again with member_epoch 0",
            member_id=member.member_id,
            member_epoch=request.member_epoch,
            current_member_epoch=member.member_epoch,
        )

    if request.topics is not None and tuple(sorted(set(request.topics))) != member.topics:
        changed = dataclasses.replace(member, topics=tuple(sorted(set(request.topics))))
        record = _rebalance(_with_member(record, changed), context)
        member = changed
    if request.owned is not None:
        record = _release(record, member.member_id, request.owned)
    return _respond(_reconcile_member(record, member.member_id), member.member_id)


def refresh_metadata(record: GroupRecord, context: GroupContext) -> GroupRecord:
    """Drop owned partitions that no longer exist; rebalance if subscribed topics changed."""
    subscribed = {topic for member in record.members.values() for topic in member.topics}
    topics = {
        topic: context.partition_counts[topic]
        for topic in subscribed
        if topic in context.partition_counts
    }
    members = {
        member_id: _without_missing(member, context.partition_counts)
        for member_id, member in record.members.items()
    }
    if members != dict(record.members):
        record = dataclasses.replace(record, members=members)
    if topics != dict(record.topics):
        record = _rebalance(record, context)
    return record


def remove_members(
    record: GroupRecord, member_ids: Iterable[str], context: GroupContext
) -> GroupRecord:
    """Remove members (left or fenced): their partitions become free and the epoch bumps."""
    removed = set(member_ids) & set(record.members)
    if not removed:
        return record
    members = {
        member_id: member
        for member_id, member in record.members.items()
        if member_id not in removed
    }
    target = {member_id: p for member_id, p in record.target.items() if member_id not in removed}
    return _rebalance(dataclasses.replace(record, members=members, target=target), context)


def _join(
    record: GroupRecord, request: HeartbeatRequest, context: GroupContext
) -> HeartbeatOutcome:
    if request.topics is None:
        raise InvalidRequestError(
            "topics is required on join (member_epoch 0); send the list of topics to subscribe to",
            field="topics",
        )
    topics = tuple(sorted(set(request.topics)))
    member_id = context.new_member_id
    # A join that names a member still in the group replaces that incarnation.
    if request.member_id is not None and request.member_id in record.members:
        record = remove_members(record, [request.member_id], context)

    previous = (
        record.member_by_instance(request.group_instance_id)
        if request.group_instance_id is not None
        else None
    )
    if previous is not None:
        return _replace_static(record, previous, request, topics, context)

    member = GroupMember(
        member_id=member_id,
        group_instance_id=request.group_instance_id,
        client_id=request.client_id or "",
        topics=topics,
        session_timeout_ms=request.session_timeout_ms or DEFAULT_SESSION_TIMEOUT_MS,
        rebalance_timeout_ms=request.rebalance_timeout_ms,
        member_epoch=JOIN_EPOCH,
    )
    record = _rebalance(_with_member(record, member), context)
    return _respond(_reconcile_member(record, member_id), member_id)


def _replace_static(
    record: GroupRecord,
    previous: GroupMember,
    request: HeartbeatRequest,
    topics: tuple[str, ...],
    context: GroupContext,
) -> HeartbeatOutcome:
    """Give the static member's partitions, epoch and target to its new member id."""
    member_id = context.new_member_id
    member = dataclasses.replace(
        previous,
        member_id=member_id,
        client_id=request.client_id or previous.client_id,
        topics=topics,
        session_timeout_ms=request.session_timeout_ms or DEFAULT_SESSION_TIMEOUT_MS,
        rebalance_timeout_ms=request.rebalance_timeout_ms,
    )
    members = {k: v for k, v in record.members.items() if k != previous.member_id}
    members[member_id] = member
    target = {k: v for k, v in record.target.items() if k != previous.member_id}
    target[member_id] = record.target.get(previous.member_id, frozenset())
    record = dataclasses.replace(record, members=members, target=target)
    if topics != previous.topics:
        record = _rebalance(record, context)
    outcome = _respond(_reconcile_member(record, member_id), member_id)
    return dataclasses.replace(outcome, replaced=previous.member_id)


def _rebalance(record: GroupRecord, context: GroupContext) -> GroupRecord:
    """Bump the group epoch and recompute the target assignment."""
    subscribed = {topic for member in record.members.values() for topic in member.topics}
    topics = {
        topic: context.partition_counts[topic]
        for topic in subscribed
        if topic in context.partition_counts
    }
    target = assign(
        {member_id: set(member.topics) for member_id, member in record.members.items()},
        topics,
        record.target,
        context.lags,
    )
    return dataclasses.replace(
        record, group_epoch=record.group_epoch + 1, target=target, topics=topics
    )


def _reconcile_member(record: GroupRecord, member_id: str) -> GroupRecord:
    member = record.members[member_id]
    target = record.target.get(member_id, frozenset())
    # A revoking partition that is back in the target is simply kept.
    revoking = member.owned - target
    if revoking:
        changed = dataclasses.replace(member, revoking=frozenset(revoking))
        return _with_member(record, changed)

    taken = {
        partition
        for other in record.members.values()
        if other.member_id != member_id
        for partition in other.owned
    }
    owned = member.owned | (target - taken)
    changed = dataclasses.replace(
        member, owned=frozenset(owned), revoking=frozenset(), member_epoch=record.group_epoch
    )
    return _with_member(record, changed)


def _release(
    record: GroupRecord, member_id: str, reported: frozenset[TopicPartition]
) -> GroupRecord:
    """Release the revoking partitions the member no longer reports as owned."""
    member = record.members[member_id]
    released = member.revoking - reported
    if not released:
        return record
    changed = dataclasses.replace(
        member, owned=member.owned - released, revoking=member.revoking - released
    )
    return _with_member(record, changed)


def _respond(record: GroupRecord, member_id: str) -> HeartbeatOutcome:
    member = record.members[member_id]
    return HeartbeatOutcome(record, member_id, member.member_epoch, member.assignment)


def _with_member(record: GroupRecord, member: GroupMember) -> GroupRecord:
    members = dict(record.members)
    members[member.member_id] = member
    return dataclasses.replace(record, members=members)


def _without_missing(member: GroupMember, partition_counts: Mapping[str, int]) -> GroupMember:
    def exists(partition: TopicPartition) -> bool:
        return partition[1] < partition_counts.get(partition[0], 0)

    if all(exists(partition) for partition in member.owned):
        return member
    return dataclasses.replace(
        member,
        owned=frozenset(p for p in member.owned if exists(p)),
        revoking=frozenset(p for p in member.revoking if exists(p)),
    )


def _check_not_replaced(record: GroupRecord, request: HeartbeatRequest) -> None:
    """Raise FencedInstanceIdError if the sender's static identity now belongs to another member."""
    if request.group_instance_id is None or request.member_id in record.members:
        return
    holder = record.member_by_instance(request.group_instance_id)
    if holder is None:
        return
    raise FencedInstanceIdError(
        f"member {request.member_id!r} was replaced by member {holder.member_id!r}, which "
        f"joined consumer group {record.group!r} with the same group_instance_id "
        f"{request.group_instance_id!r}; two running consumers must not share a "
        "group_instance_id: give each its own, or stop the old one",
        group=record.group,
        member_id=request.member_id,
        group_instance_id=request.group_instance_id,
    )


def _require_member(record: GroupRecord, member_id: str | None) -> GroupMember:
    if member_id is None:
        raise InvalidRequestError(
            "member_id is required unless member_epoch is 0 (join); send the member_id from "
            "the join response",
            field="member_id",
        )
    member = record.members.get(member_id)
    if member is None:
        raise UnknownGroupMemberError(
            f"member {member_id!r} is not in consumer group {record.group!r}: it left, was "
            "fenced after a session or rebalance timeout, or was replaced by a static member; "
            "drop its partitions and join again with member_epoch 0",
            group=record.group,
            member_id=member_id,
        )
    return member
