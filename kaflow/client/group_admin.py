"""Result types of the consumer group admin calls, decoded from the HTTP API's JSON.

``GET /v1/groups`` becomes a list of :class:`GroupListing`, ``GET
/v1/groups/{group}`` a :class:`GroupDescription`, and ``POST
/v1/groups/{group}/reset-offsets`` an :class:`OffsetResetPlan`. A response
that lacks a field or has one of the wrong type raises a plain
:class:`~kaflow.errors.KaflowError` that names the field, because it means
the node speaks another version of the API.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from kaflow.client.records import TopicPartition
from kaflow.errors import KaflowError

__all__ = [
    "GroupDescription",
    "GroupListing",
    "GroupMember",
    "GroupOffset",
    "GroupState",
    "OffsetReset",
    "OffsetResetPlan",
    "OffsetResetStrategy",
]

T = TypeVar("T")


class GroupState(enum.StrEnum):
    """The state of a consumer group, as the broker reports it."""

    # No members; the group may still have committed offsets.
    EMPTY = "empty"
    # The target assignment does not yet cover every member.
    ASSIGNING = "assigning"
    # A member has not reached its target yet: it still has to release partitions,
    # receive partitions, or catch up with the group epoch.
    RECONCILING = "reconciling"
    # Every member owns exactly its target assignment at the current group epoch.
    STABLE = "stable"
    # Kafka's state of a group that is being deleted.
    DEAD = "dead"


class OffsetResetStrategy(enum.StrEnum):
    """The position that ``reset_group_offsets`` moves each committed offset to.

    The new offset is clamped to the partition's range from the log start
    offset to the high watermark, as Kafka's reset tool does.
    """

    # The log start offset.
    EARLIEST = "earliest"
    # The high watermark.
    LATEST = "latest"
    # The offset given as ``value``.
    OFFSET = "offset"
    # The first offset whose record timestamp is at or after ``value`` (ms since the
    # Unix epoch), or the high watermark when no record is that new.
    TIMESTAMP = "timestamp"
    # The committed offset plus ``value``, which may be negative. Without a committed
    # offset the shift starts at the log start offset.
    SHIFT = "shift"

    @property
    def takes_value(self) -> bool:
        """Whether the strategy needs a ``value`` (an offset, a timestamp or a shift)."""
        return self in (
            OffsetResetStrategy.OFFSET,
            OffsetResetStrategy.TIMESTAMP,
            OffsetResetStrategy.SHIFT,
        )


@dataclass(frozen=True)
class GroupListing:
    """One entry of the group list: a group's state, member count and generation."""

    group: str
    state: GroupState
    members: int
    group_epoch: int

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> GroupListing:
        reader = _Reader(body, "groups[]")
        return cls(
            group=reader.required("group", str),
            state=reader.state(),
            members=reader.required("members", int),
            group_epoch=reader.required("group_epoch", int),
        )


@dataclass(frozen=True)
class GroupMember:
    """One member of a group, with its subscription, assignment and timeouts.

    ``assignment`` lists the partitions the member owns and keeps, and
    ``revoking`` lists those it still owns but must release.
    ``last_heartbeat_ms_ago`` is None unless the Raft leader served the
    request, because only the leader tracks heartbeats.
    """

    member_id: str
    group_instance_id: str | None
    client_id: str | None
    member_epoch: int
    topics: tuple[str, ...]
    assignment: tuple[TopicPartition, ...]
    revoking: tuple[TopicPartition, ...]
    session_timeout_ms: int
    rebalance_timeout_ms: int
    last_heartbeat_ms_ago: int | None

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> GroupMember:
        reader = _Reader(body, "members[]")
        return cls(
            member_id=reader.required("member_id", str),
            group_instance_id=reader.optional("group_instance_id", str),
            client_id=reader.optional("client_id", str),
            member_epoch=reader.required("member_epoch", int),
            topics=tuple(reader.required_list("topics", str)),
            assignment=reader.partitions("assignment"),
            revoking=reader.partitions("revoking"),
            session_timeout_ms=reader.required("session_timeout_ms", int),
            rebalance_timeout_ms=reader.required("rebalance_timeout_ms", int),
            last_heartbeat_ms_ago=reader.optional("last_heartbeat_ms_ago", int),
        )


@dataclass(frozen=True)
class GroupOffset:
    """A group's position in one partition.

    ``committed_offset`` is None for a partition that a member owns but the
    group has not committed yet. ``lag`` is the high watermark minus the
    committed offset, or minus the log start offset when nothing is
    committed. ``owner`` is the member_id of the member that owns the
    partition, or None.
    """

    topic: str
    partition: int
    committed_offset: int | None
    log_start_offset: int
    high_watermark: int
    lag: int
    owner: str | None
    metadata: str | None

    @property
    def topic_partition(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> GroupOffset:
        reader = _Reader(body, "offsets[]")
        return cls(
            topic=reader.required("topic", str),
            partition=reader.required("partition", int),
            committed_offset=reader.optional("committed_offset", int),
            log_start_offset=reader.required("log_start_offset", int),
            high_watermark=reader.required("high_watermark", int),
            lag=reader.required("lag", int),
            owner=reader.optional("owner", str),
            metadata=reader.optional("metadata", str),
        )


@dataclass(frozen=True)
class GroupDescription:
    """A group's state, generation (``group_epoch``), members and offsets."""

    group: str
    state: GroupState
    group_epoch: int
    members: tuple[GroupMember, ...]
    offsets: tuple[GroupOffset, ...]

    @property
    def total_lag(self) -> int:
        """The sum of the lag over the group's partitions."""
        return sum(offset.lag for offset in self.offsets)

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> GroupDescription:
        reader = _Reader(body, "group")
        return cls(
            group=reader.required("group", str),
            state=reader.state(),
            group_epoch=reader.required("group_epoch", int),
            members=tuple(GroupMember.from_json(m) for m in reader.required_list("members", dict)),
            offsets=tuple(GroupOffset.from_json(o) for o in reader.required_list("offsets", dict)),
        )


@dataclass(frozen=True)
class OffsetReset:
    """One partition of a reset plan: the committed offset before and after."""

    topic: str
    partition: int
    current_offset: int | None
    new_offset: int

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> OffsetReset:
        reader = _Reader(body, "offsets[]")
        return cls(
            topic=reader.required("topic", str),
            partition=reader.required("partition", int),
            current_offset=reader.optional("current_offset", int),
            new_offset=reader.required("new_offset", int),
        )


@dataclass(frozen=True)
class OffsetResetPlan:
    """The new offsets of a reset, and whether it was a dry run that committed nothing."""

    group: str
    dry_run: bool
    offsets: tuple[OffsetReset, ...]

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> OffsetResetPlan:
        reader = _Reader(body, "reset")
        return cls(
            group=reader.required("group", str),
            dry_run=reader.required("dry_run", bool),
            offsets=tuple(OffsetReset.from_json(o) for o in reader.required_list("offsets", dict)),
        )


class _Reader:
    """Typed access to the fields of one JSON object of a response."""

    def __init__(self, body: Any, path: str) -> None:
        if not isinstance(body, Mapping):
            raise KaflowError(f"response {path} is {body!r} where a JSON object was expected")
        self._body = body
        self._path = path

    def required(self, name: str, kind: type[T]) -> T:
        value = self._body.get(name)
        if not _is_instance(value, kind):
            raise self._wrong_type(name, value, kind)
        return cast(T, value)

    def optional(self, name: str, kind: type[T]) -> T | None:
        value = self._body.get(name)
        if value is None:
            return None
        return self.required(name, kind)

    def required_list(self, name: str, kind: type[T]) -> list[T]:
        values = self.required(name, list)
        for value in values:
            if not _is_instance(value, kind):
                raise self._wrong_type(f"{name}[]", value, kind)
        return values

    def state(self) -> GroupState:
        text = self.required("state", str)
        try:
            return GroupState(text)
        except ValueError:
            raise KaflowError(
                f"response field {self._path}.state is {text!r}, which is not a known group "
                f"state ({', '.join(state.value for state in GroupState)}); upgrade the client",
                field="state",
                value=text,
            ) from None

    def partitions(self, name: str) -> tuple[TopicPartition, ...]:
        """Flatten ``[{topic, partitions: [int]}]`` into sorted topic-partitions."""
        found: list[TopicPartition] = []
        for entry in self.required_list(name, dict):
            inner = _Reader(entry, f"{self._path}.{name}[]")
            topic = inner.required("topic", str)
            found.extend(TopicPartition(topic, p) for p in inner.required_list("partitions", int))
        return tuple(sorted(found))

    def _wrong_type(self, name: str, value: Any, kind: type[Any]) -> KaflowError:
        return KaflowError(
            f"response field {self._path}.{name} is {value!r} where a {kind.__name__} was "
            "expected; the node may run another version of Kaflow",
            field=name,
        )


def _is_instance(value: Any, kind: type[Any]) -> bool:
    # JSON true and false decode to bool, which is a subclass of int.
    if kind is int and isinstance(value, bool):
        return False
    return isinstance(value, kind)
