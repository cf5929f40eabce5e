"""Reconciliation rules, fed group records without a node."""

from __future__ import annotations

import pytest

from kaflow.coordinator.model import GroupRecord, decode_group_record, encode_group_record
from kaflow.coordinator.reconcile import (
    GroupContext,
    HeartbeatOutcome,
    HeartbeatRequest,
    heartbeat,
    remove_members,
)
from kaflow.errors import (
    FencedInstanceIdError,
    InvalidRequestError,
    StaleGenerationError,
    UnknownGroupMemberError,
)

COUNTS = {"t": 4}


def context(member_id: str = "") -> GroupContext:
    return GroupContext(COUNTS, {}, member_id)


def join(record: GroupRecord, member_id: str, instance: str | None = None) -> HeartbeatOutcome:
    request = HeartbeatRequest(None, 0, group_instance_id=instance, topics=("t",))
    return heartbeat(record, request, context(member_id))


def beat(record: GroupRecord, member_id: str, owned: object = None) -> HeartbeatOutcome:
    epoch = record.members[member_id].member_epoch
    request = HeartbeatRequest(member_id, epoch, owned=owned)  # type: ignore[arg-type]
    return heartbeat(record, request, context())


def assert_single_owner(record: GroupRecord) -> None:
    seen: set[tuple[str, int]] = set()
    for member in record.members.values():
        assert not (member.owned & seen)
        seen |= member.owned


def test_reconcile_revokes_before_handover() -> None:
    record = join(GroupRecord("g"), "a").record
    second = join(record, "b")
    record = second.record

    assert second.assignment == frozenset()
    first = beat(record, "a")
    assert len(first.assignment) == 2
    assert len(first.record.members["a"].revoking) == 2
    assert first.member_epoch == 1
    record = first.record
    assert beat(record, "b").assignment == frozenset()
    assert_single_owner(record)

    released = beat(record, "a", owned=first.assignment)
    assert released.member_epoch == 2
    record = released.record
    handed = beat(record, "b")
    assert handed.assignment == frozenset({("t", p) for p in range(4)}) - first.assignment
    assert handed.member_epoch == 2
    assert_single_owner(handed.record)


def test_reconcile_stale_epoch_rejected() -> None:
    record = join(GroupRecord("g"), "a").record

    with pytest.raises(StaleGenerationError, match="member_epoch 5"):
        heartbeat(record, HeartbeatRequest("a", 5), context())


def test_reconcile_unknown_member_rejected() -> None:
    with pytest.raises(UnknownGroupMemberError, match="'x' is not in consumer group"):
        heartbeat(GroupRecord("g"), HeartbeatRequest("x", 1), context())


def test_reconcile_join_without_topics_rejected() -> None:
    with pytest.raises(InvalidRequestError, match="topics is required"):
        heartbeat(GroupRecord("g"), HeartbeatRequest(None, 0), context("a"))


def test_reconcile_static_replacement_keeps_epoch() -> None:
    old = join(GroupRecord("g"), "a", instance="host").record
    new = join(old, "b", instance="host")

    assert new.replaced == "a"
    assert new.record.group_epoch == old.group_epoch
    assert new.assignment == old.members["a"].owned
    assert "a" not in new.record.members


def test_reconcile_replaced_static_member_fenced_by_instance() -> None:
    old = join(GroupRecord("g"), "a", instance="host").record
    new = join(old, "b", instance="host").record
    request = HeartbeatRequest("a", old.members["a"].member_epoch, group_instance_id="host")

    with pytest.raises(FencedInstanceIdError, match="replaced by member 'b'"):
        heartbeat(new, request, context())


def test_reconcile_static_leave_needs_instance_id() -> None:
    record = join(GroupRecord("g"), "a").record

    with pytest.raises(InvalidRequestError, match="only for static members"):
        heartbeat(record, HeartbeatRequest("a", -2), context())


def test_reconcile_fencing_frees_partitions() -> None:
    record = join(GroupRecord("g"), "a").record
    record = join(record, "b").record

    fenced = remove_members(record, ["a"], context())
    assert fenced.group_epoch == record.group_epoch + 1
    assert beat(fenced, "b").assignment == frozenset({("t", p) for p in range(4)})


def test_reconcile_deleted_topic_drops_partitions() -> None:
    record = join(GroupRecord("g"), "a").record

    outcome = heartbeat(
        record, HeartbeatRequest("a", record.members["a"].member_epoch), GroupContext({}, {})
    )
    assert outcome.assignment == frozenset()
    assert outcome.record.group_epoch == record.group_epoch + 1


def test_reconcile_unchanged_heartbeat_keeps_record() -> None:
    record = join(GroupRecord("g"), "a").record

    assert beat(record, "a").record == record


def test_group_record_round_trips() -> None:
    record = join(join(GroupRecord("g"), "a", instance="i").record, "b").record

    assert decode_group_record(encode_group_record(record)) == record
