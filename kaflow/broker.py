"""The broker interface the HTTP frontend calls, and the values it exchanges.

:class:`Broker` is what :mod:`kaflow.server` needs from a node. The real
implementation is :class:`kaflow.node.Node`; keeping the protocol here lets
the server be read, typed and tested without the replication layer.

Every method raises a :class:`kaflow.errors.KaflowError` subclass on failure.
Timestamps are milliseconds since the Unix epoch. Offsets are 64-bit.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Protocol

from kaflow.coordinator.reconcile import HeartbeatRequest, HeartbeatResponse

__all__ = [
    "Broker",
    "ClusterStatus",
    "CommittedOffset",
    "FetchResult",
    "GroupDescription",
    "GroupMemberDescription",
    "GroupOffsetDescription",
    "GroupSummary",
    "MemberStatus",
    "OffsetCommit",
    "OffsetLookup",
    "OffsetReset",
    "PartitionInfo",
    "ProduceRecord",
    "ProducerIdAndEpoch",
    "ProducerSequences",
    "RaftRole",
    "RecordMetadata",
    "StoredRecord",
    "TopicInfo",
]

Header = tuple[str, bytes]


@dataclass(frozen=True, slots=True)
class ProduceRecord:
    """One record of a produce request.

    ``partition`` None means the broker picks it: murmur2 of the key, or
    round robin for keyless records. ``timestamp`` None means the broker
    stamps the record when it accepts the request.
    """

    key: bytes | None
    value: bytes | None
    headers: tuple[Header, ...] = ()
    partition: int | None = None
    timestamp: int | None = None


@dataclass(frozen=True, slots=True)
class ProducerIdAndEpoch:
    """The identity of an idempotent producer, allocated by the cluster."""

    producer_id: int
    producer_epoch: int


@dataclass(frozen=True, slots=True)
class ProducerSequences:
    """The producer fields of an idempotent produce request.

    ``base_sequences`` maps each partition the request writes to the
    sequence number of its first record there; the partition's other records
    follow in request order. Every record must name its partition.
    """

    producer_id: int
    producer_epoch: int
    base_sequences: dict[int, int]


@dataclass(frozen=True, slots=True)
class RecordMetadata:
    """Partition, offset and timestamp of one produced record."""

    partition: int
    offset: int
    timestamp: int


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """A record read back from a partition log."""

    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[Header, ...] = ()


@dataclass(frozen=True, slots=True)
class FetchResult:
    """Records read from one partition.

    ``next_offset`` is the offset to fetch next: one past the last returned
    record, or the requested offset when nothing was returned.
    """

    records: list[StoredRecord]
    next_offset: int
    high_watermark: int
    log_start_offset: int


@dataclass(frozen=True, slots=True)
class PartitionInfo:
    partition: int
    log_start_offset: int
    high_watermark: int


@dataclass(frozen=True, slots=True)
class TopicInfo:
    name: str
    partitions: list[PartitionInfo]
    # Effective configuration with Kafka's dotted names, defaults included.
    config: dict[str, int]


@dataclass(frozen=True, slots=True)
class OffsetLookup:
    """The result of an offset lookup at earliest, latest or time T.

    ``offset`` is None when no record has a timestamp at or after T
    (Kafka returns -1 there). ``timestamp`` is the found record's timestamp
    for time lookups and None otherwise.
    """

    partition: int
    offset: int | None
    timestamp: int | None


@dataclass(frozen=True, slots=True)
class OffsetCommit:
    """A consumer group's position: ``offset`` is the next offset to read."""

    topic: str
    partition: int
    offset: int
    metadata: str = ""


@dataclass(frozen=True, slots=True)
class CommittedOffset:
    topic: str
    partition: int
    offset: int
    metadata: str
    commit_timestamp: int
    high_watermark: int
    log_start_offset: int

    @property
    def lag(self) -> int:
        """Records between the committed offset and the high watermark."""
        return max(0, self.high_watermark - self.offset)


@dataclass(frozen=True, slots=True)
class GroupSummary:
    """One entry of ``GET /v1/groups``."""

    group: str
    state: str
    members: int
    group_epoch: int


@dataclass(frozen=True, slots=True)
class GroupMemberDescription:
    member_id: str
    group_instance_id: str | None
    client_id: str
    member_epoch: int
    topics: list[str]
    assignment: list[tuple[str, int]]
    revoking: list[tuple[str, int]]
    session_timeout_ms: int
    rebalance_timeout_ms: int
    # Known only on the Raft leader; None elsewhere.
    last_heartbeat_ms_ago: int | None


@dataclass(frozen=True, slots=True)
class GroupOffsetDescription:
    """A partition of the group: committed offset (None if none), lag and owner."""

    topic: str
    partition: int
    committed_offset: int | None
    log_start_offset: int
    high_watermark: int
    lag: int
    owner: str | None
    metadata: str | None


@dataclass(frozen=True, slots=True)
class GroupDescription:
    group: str
    state: str
    group_epoch: int
    members: list[GroupMemberDescription]
    offsets: list[GroupOffsetDescription]


@dataclass(frozen=True, slots=True)
class OffsetReset:
    """One partition of a reset-offsets result; ``current_offset`` None if nothing committed."""

    topic: str
    partition: int
    current_offset: int | None
    new_offset: int


class RaftRole(enum.Enum):
    FOLLOWER = "follower"
    CANDIDATE = "candidate"
    LEADER = "leader"


@dataclass(frozen=True, slots=True)
class MemberStatus:
    node_id: str
    raft_address: str
    http_address: str | None
    role: RaftRole | None
    connected: bool
    # Leader's view of this member's replication lag in Raft log entries.
    lag_entries: int | None = None


@dataclass(frozen=True, slots=True)
class ClusterStatus:
    node_id: str
    role: RaftRole
    term: int
    leader_id: str | None
    commit_index: int
    applied_index: int
    ready: bool
    members: list[MemberStatus] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


class Broker(Protocol):
    """Node interface that the HTTP frontend calls."""

    @property
    def node_id(self) -> str: ...

    def is_ready(self) -> bool:
        """Return True once the node has replayed its log and can serve requests."""
        ...

    # Topics.
    def list_topics(self) -> list[TopicInfo]: ...

    def describe_topic(self, name: str) -> TopicInfo: ...

    async def create_topic(self, name: str, partitions: int, config: dict[str, Any]) -> TopicInfo:
        """Create a topic; ``config`` uses Kafka's dotted names and raw JSON values."""
        ...

    async def alter_topic(
        self, name: str, partitions: int | None, config: dict[str, Any]
    ) -> TopicInfo:
        """Grow the partition count and/or update config entries.

        A config value of None resets that entry to its default.
        """
        ...

    async def delete_topic(self, name: str) -> None: ...

    # Records.
    async def produce(
        self,
        topic: str,
        records: list[ProduceRecord],
        producer: ProducerSequences | None = None,
    ) -> list[RecordMetadata]:
        """Append records; returns after they are committed and applied, in request order.

        With ``producer``, a batch the cluster already stored is not stored
        again, and the result has the offsets of the stored records.
        """
        ...

    async def init_producer(self, producer_id: int | None) -> ProducerIdAndEpoch:
        """Allocate a producer id with epoch 0, or bump the epoch of ``producer_id``.

        Bumping the epoch fences the previous epoch: its produce requests are
        rejected with InvalidProducerEpochError from then on.
        """
        ...

    async def fetch(
        self,
        topic: str,
        partition: int,
        offset: int,
        max_records: int,
        max_bytes: int,
        max_wait_ms: int,
    ) -> FetchResult:
        """Read from ``offset``; at the high watermark, wait up to ``max_wait_ms`` for data."""
        ...

    def lookup_offset(self, topic: str, partition: int, at: str | int) -> OffsetLookup:
        """Resolve ``"earliest"``, ``"latest"`` or a timestamp in ms to an offset."""
        ...

    # Consumer groups.
    async def commit_offsets(
        self,
        group: str,
        commits: list[OffsetCommit],
        member_id: str | None = None,
        member_epoch: int | None = None,
    ) -> None:
        """Store offsets; a member's commit needs its current epoch and owned partitions."""
        ...

    async def heartbeat(self, group: str, request: HeartbeatRequest) -> HeartbeatResponse:
        """Join, leave or heartbeat; raises NotLeaderError on a node that is not the leader."""
        ...

    def describe_group(self, group: str) -> GroupDescription:
        """Return members and offsets; raises UnknownGroupError if neither exists."""
        ...

    def group_summaries(self) -> list[GroupSummary]: ...

    async def delete_group(self, group: str) -> None:
        """Delete the group's offsets; raises GroupNotEmptyError while it has members."""
        ...

    async def reset_group_offsets(
        self,
        group: str,
        topic: str,
        partitions: list[int] | None,
        to: str,
        value: int | None,
        execute: bool,
    ) -> list[OffsetReset]:
        """Compute (and with ``execute``, store) new committed offsets for an empty group."""
        ...

    def committed_offsets(self, group: str) -> list[CommittedOffset]:
        """Return the group's committed offsets; raises UnknownGroupError if it has none."""
        ...

    def require_group_coordinator(self) -> None:
        """Raise NotLeaderError unless this node coordinates groups (the up-to-date leader).

        A leader still applying what earlier leaders committed raises the
        retriable LeaderNotAvailableError instead.
        """
        ...

    def list_groups(self) -> list[str]: ...

    # Cluster.
    def cluster_status(self) -> ClusterStatus: ...
