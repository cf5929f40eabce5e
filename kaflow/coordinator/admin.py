"""Group administration read from applied state: describe, list, reset-offsets planning.

Any node can run these from its applied state. Heartbeat ages come from the
coordinator, which tracks them only on the Raft leader.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from kaflow.broker import (
    GroupDescription,
    GroupMemberDescription,
    GroupOffsetDescription,
    GroupSummary,
    OffsetReset,
)
from kaflow.coordinator.model import GroupState, TopicPartition, group_state
from kaflow.errors import (
    InvalidRequestError,
    UnknownGroupError,
    UnknownPartitionError,
    UnknownTopicError,
)
from kaflow.replication.state import PartitionState
from kaflow.replication.state_machine import StateMachine

__all__ = ["RESET_TARGETS", "describe_group", "group_summaries", "plan_offset_reset"]

RESET_TARGETS: Final = ("earliest", "latest", "offset", "timestamp", "shift")

# Returns the first offset whose timestamp is >= the argument, or None.
OffsetForTimestamp = Callable[[str, int, int], int | None]
HeartbeatAge = Callable[[str, str], int | None]


def group_summaries(state: StateMachine) -> list[GroupSummary]:
    summaries = []
    for group in state.groups():
        record = state.group_record(group)
        summaries.append(
            GroupSummary(
                group=group,
                state=group_state(record).value,
                members=len(record.members) if record is not None else 0,
                group_epoch=record.group_epoch if record is not None else 0,
            )
        )
    return summaries


def describe_group(state: StateMachine, group: str, age: HeartbeatAge) -> GroupDescription:
    """Describe the group's members and partitions; raise UnknownGroupError if it has neither."""
    record = state.group_record(group)
    committed = state.group_offsets(group)
    if record is None and not committed:
        raise UnknownGroupError(
            f"consumer group {group!r} not found: it has no members and no committed offsets",
            group=group,
        )

    members = []
    owners: dict[TopicPartition, str] = {}
    keys: set[TopicPartition] = set(committed)
    if record is not None:
        for member in sorted(record.members.values(), key=lambda m: m.member_id):
            for partition in member.owned:
                owners[partition] = member.member_id
            members.append(
                GroupMemberDescription(
                    member_id=member.member_id,
                    group_instance_id=member.group_instance_id,
                    client_id=member.client_id,
                    member_epoch=member.member_epoch,
                    topics=list(member.topics),
                    assignment=sorted(member.assignment),
                    revoking=sorted(member.revoking),
                    session_timeout_ms=member.session_timeout_ms,
                    rebalance_timeout_ms=member.rebalance_timeout_ms,
                    last_heartbeat_ms_ago=age(group, member.member_id),
                )
            )
        for topic, count in record.topics.items():
            keys.update((topic, number) for number in range(count))

    offsets = []
    for key in sorted(keys):
        found = state.partition(*key)
        if found is None:
            continue
        entry = committed.get(key)
        start = entry.offset if entry is not None else found.log_start_offset
        offsets.append(
            GroupOffsetDescription(
                topic=key[0],
                partition=key[1],
                committed_offset=entry.offset if entry is not None else None,
                log_start_offset=found.log_start_offset,
                high_watermark=found.log_end_offset,
                lag=max(0, found.log_end_offset - start),
                owner=owners.get(key),
                metadata=entry.metadata if entry is not None else None,
            )
        )
    state_name = group_state(record) if record is not None else GroupState.EMPTY
    return GroupDescription(
        group=group,
        state=state_name.value,
        group_epoch=record.group_epoch if record is not None else 0,
        members=members,
        offsets=offsets,
    )


def plan_offset_reset(
    state: StateMachine,
    group: str,
    topic: str,
    partitions: list[int] | None,
    to: str,
    value: int | None,
    offset_for_timestamp: OffsetForTimestamp,
) -> list[OffsetReset]:
    """Compute each partition's new committed offset, clamped to [log start, high watermark]."""
    if to not in RESET_TARGETS:
        raise InvalidRequestError(
            f"to is {to!r}; use one of {', '.join(RESET_TARGETS)}", field="to", value=to
        )
    if to in ("offset", "timestamp", "shift") and value is None:
        raise InvalidRequestError(
            f"to {to!r} needs a value (an offset, a timestamp in ms, or a shift N)",
            field="value",
        )
    if to in ("offset", "timestamp") and value is not None and value < 0:
        raise InvalidRequestError(
            f"value {value} is negative; to {to!r} needs a value >= 0", field="value", value=value
        )
    found = state.topic(topic)
    if found is None:
        raise UnknownTopicError(f"topic {topic!r} not found; check the name", topic=topic)
    numbers = sorted(set(partitions)) if partitions is not None else list(range(found.partitions))
    committed = state.group_offsets(group)
    results = []
    for number in numbers:
        offsets = state.partition(topic, number)
        if offsets is None or not 0 <= number < found.partitions:
            raise UnknownPartitionError(
                f"partition {number} of topic {topic!r} not found; valid partitions are "
                f"0..{found.partitions - 1}",
                topic=topic,
                partition=number,
            )
        entry = committed.get((topic, number))
        current = entry.offset if entry is not None else None
        requested_offset = _target_offset(
            to, value, current, offsets, topic, number, offset_for_timestamp
        )
        new_offset = min(max(requested_offset, offsets.log_start_offset), offsets.log_end_offset)
        results.append(OffsetReset(topic, number, current, new_offset))
    return results


def _target_offset(
    to: str,
    value: int | None,
    current: int | None,
    offsets: PartitionState,
    topic: str,
    partition: int,
    offset_for_timestamp: OffsetForTimestamp,
) -> int:
    if to == "earliest":
        return offsets.log_start_offset
    if to == "latest":
        return offsets.log_end_offset
    assert value is not None
    if to == "offset":
        return value
    if to == "timestamp":
        found = offset_for_timestamp(topic, partition, value)
        return offsets.log_end_offset if found is None else found
    # shift: from the committed offset, or from the log start when nothing is committed.
    base = current if current is not None else offsets.log_start_offset
    return base + value
