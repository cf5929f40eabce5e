"""The replicated consumer group record and its msgpack encoding.

A :class:`GroupRecord` is what every Raft member stores for one consumer
group: the group epoch (Kafka's generation), the members with their
subscriptions, epochs and owned partitions, the target assignment, and the
partition counts of the subscribed topics when the target was computed.
Heartbeat times and revocation deadlines are not in it: only the Raft
leader keeps them (kaflow.coordinator.service).

Encoding (a msgpack map, used in the ``group_update`` command and in state
snapshots)::

    group          str
    version        int    Raft index of the command that wrote this record
    group_epoch    int
    members        array of member maps, sorted by member_id:
        member_id            str
        group_instance_id    str or nil
        client_id            str
        topics               array of str, sorted
        session_timeout_ms   int
        rebalance_timeout_ms int
        member_epoch         int
        owned                array of [topic str, partition int], sorted;
                             includes the partitions being revoked
        revoking             array of [topic str, partition int], sorted
    target         array of [member_id str, array of [topic, partition]]
    topics         map topic str -> partition count int
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "GroupMember",
    "GroupRecord",
    "GroupRecordFormatError",
    "GroupState",
    "TopicPartition",
    "decode_group_record",
    "encode_group_record",
    "group_state",
    "render_partitions",
]

TopicPartition = tuple[str, int]


class GroupRecordFormatError(ValueError):
    """The msgpack value is not a group record this version can read."""


class GroupState(enum.Enum):
    """A group's state as ``GET /v1/groups/{group}`` reports it (Kafka's names)."""

    EMPTY = "empty"
    ASSIGNING = "assigning"
    RECONCILING = "reconciling"
    STABLE = "stable"
    DEAD = "dead"


@dataclass(frozen=True, slots=True)
class GroupMember:
    """One member of a consumer group.

    ``owned`` contains every partition the member may hold now, including
    ``revoking``: the partitions it must release before anyone else gets them.
    """

    member_id: str
    group_instance_id: str | None
    client_id: str
    topics: tuple[str, ...]
    session_timeout_ms: int
    rebalance_timeout_ms: int
    member_epoch: int
    owned: frozenset[TopicPartition] = frozenset()
    revoking: frozenset[TopicPartition] = frozenset()

    @property
    def assignment(self) -> frozenset[TopicPartition]:
        """The partitions the member should consume now: owned minus revoking."""
        return self.owned - self.revoking


@dataclass(frozen=True, slots=True)
class GroupRecord:
    """A consumer group's replicated coordination state."""

    group: str
    version: int = 0
    group_epoch: int = 0
    members: Mapping[str, GroupMember] = field(default_factory=dict)
    target: Mapping[str, frozenset[TopicPartition]] = field(default_factory=dict)
    topics: Mapping[str, int] = field(default_factory=dict)

    def owner_of(self, partition: TopicPartition) -> str | None:
        """Return the member that owns (or is revoking) ``partition``, or None."""
        for member in self.members.values():
            if partition in member.owned:
                return member.member_id
        return None

    def member_by_instance(self, group_instance_id: str) -> GroupMember | None:
        for member in self.members.values():
            if member.group_instance_id == group_instance_id:
                return member
        return None


def group_state(record: GroupRecord | None) -> GroupState:
    """Return the group's state: empty without members, stable once all are reconciled."""
    if record is None or not record.members:
        return GroupState.EMPTY
    if set(record.target) != set(record.members):
        return GroupState.ASSIGNING
    for member in record.members.values():
        if (
            member.member_epoch != record.group_epoch
            or member.revoking
            or member.owned != record.target.get(member.member_id, frozenset())
        ):
            return GroupState.RECONCILING
    return GroupState.STABLE


def render_partitions(partitions: Iterable[TopicPartition]) -> list[dict[str, Any]]:
    """Return ``[{topic, partitions: [int]}]`` sorted by topic and partition."""
    by_topic: dict[str, list[int]] = {}
    for topic, partition in sorted(partitions):
        by_topic.setdefault(topic, []).append(partition)
    return [{"topic": topic, "partitions": numbers} for topic, numbers in by_topic.items()]


def _encode_partitions(partitions: Iterable[TopicPartition]) -> list[list[Any]]:
    return [[topic, partition] for topic, partition in sorted(partitions)]


def encode_group_record(record: GroupRecord) -> dict[str, Any]:
    """Encode ``record`` as the msgpack-ready map documented in this module."""
    return {
        "group": record.group,
        "version": record.version,
        "group_epoch": record.group_epoch,
        "members": [
            {
                "member_id": member.member_id,
                "group_instance_id": member.group_instance_id,
                "client_id": member.client_id,
                "topics": sorted(member.topics),
                "session_timeout_ms": member.session_timeout_ms,
                "rebalance_timeout_ms": member.rebalance_timeout_ms,
                "member_epoch": member.member_epoch,
                "owned": _encode_partitions(member.owned),
                "revoking": _encode_partitions(member.revoking),
            }
            for _, member in sorted(record.members.items())
        ],
        "target": [
            [member_id, _encode_partitions(partitions)]
            for member_id, partitions in sorted(record.target.items())
        ],
        "topics": dict(sorted(record.topics.items())),
    }


def _expect(value: Any, kind: type | tuple[type, ...], name: str) -> Any:
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise GroupRecordFormatError(f"group record field {name!r} has invalid value {value!r}")
    return value


def _decode_partitions(value: Any, name: str) -> frozenset[TopicPartition]:
    found: set[TopicPartition] = set()
    for entry in _expect(value, list, name):
        if not isinstance(entry, list) or len(entry) != 2:
            raise GroupRecordFormatError(f"group record field {name!r} has entry {entry!r}")
        found.add((_expect(entry[0], str, name), _expect(entry[1], int, name)))
    return frozenset(found)


def _decode_member(fields: Any) -> GroupMember:
    fields = _expect(fields, dict, "members")
    instance_id = fields.get("group_instance_id")
    if instance_id is not None:
        _expect(instance_id, str, "group_instance_id")
    topics = _expect(fields.get("topics"), list, "topics")
    return GroupMember(
        member_id=_expect(fields.get("member_id"), str, "member_id"),
        group_instance_id=instance_id,
        client_id=_expect(fields.get("client_id"), str, "client_id"),
        topics=tuple(sorted(_expect(topic, str, "topics") for topic in topics)),
        session_timeout_ms=_expect(fields.get("session_timeout_ms"), int, "session_timeout_ms"),
        rebalance_timeout_ms=_expect(
            fields.get("rebalance_timeout_ms"), int, "rebalance_timeout_ms"
        ),
        member_epoch=_expect(fields.get("member_epoch"), int, "member_epoch"),
        owned=_decode_partitions(fields.get("owned"), "owned"),
        revoking=_decode_partitions(fields.get("revoking"), "revoking"),
    )


def decode_group_record(fields: Any) -> GroupRecord:
    """Decode a map written by :func:`encode_group_record`; raise GroupRecordFormatError."""
    fields = _expect(fields, dict, "record")
    members = [_decode_member(member) for member in _expect(fields.get("members"), list, "members")]
    target: dict[str, frozenset[TopicPartition]] = {}
    for entry in _expect(fields.get("target"), list, "target"):
        if not isinstance(entry, list) or len(entry) != 2:
            raise GroupRecordFormatError(f"group record field 'target' has entry {entry!r}")
        target[_expect(entry[0], str, "target")] = _decode_partitions(entry[1], "target")
    topics = _expect(fields.get("topics"), dict, "topics")
    return GroupRecord(
        group=_expect(fields.get("group"), str, "group"),
        version=_expect(fields.get("version"), int, "version"),
        group_epoch=_expect(fields.get("group_epoch"), int, "group_epoch"),
        members={member.member_id: member for member in members},
        target=target,
        topics={
            _expect(topic, str, "topics"): _expect(count, int, "topics")
            for topic, count in topics.items()
        },
    )
