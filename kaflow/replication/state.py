"""The replicated metadata: what every member agrees on, and its snapshot encoding.

Record payloads live in the partition logs, never here. The state contains
topics, each partition's log start and end offsets, consumer groups'
committed offsets, and idempotent producers' recent sequence numbers, so a
snapshot stays small however much data is stored.

Snapshot encoding, version 3::

    offset  size  field    meaning
    0       4     crc      CRC-32C (Castagnoli) of every byte after this field, big-endian
    4       n     body     msgpack map, below

Body keys (msgpack types):

``v``           int, format version, 3.
``index``       int, the Raft log index this state reflects.
``topics``      array of ``[name str, partitions int, config map str -> int,
                created_index int]``.
``partitions``  array of ``[topic str, partition int, log_start_offset int,
                log_end_offset int]``.
``groups``      array of ``[group str, topic str, partition int, offset int,
                metadata str, commit_timestamp int]``.
``members``     the member registry, documented in kaflow.cluster.registry;
                optional, and empty when absent.
``group_records``  array of consumer group records, sorted by group, each
                the map documented in kaflow.coordinator.model; version 3.

Version 2 adds the producer table with the keys ``next_producer_id``,
``producer_clock``, ``producers`` and ``producer_batches``, documented in
kaflow.replication.producers. A version 1 snapshot is read with an empty
producer table, and a version 1 or 2 snapshot with no group records.
Arrays are sorted, so two members with equal state produce
equal bytes. Decoders reject versions they do not know.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

import crc32c
import msgpack

from kaflow.cluster.registry import MemberInfo, decode_members, encode_members
from kaflow.coordinator.model import GroupRecord, decode_group_record, encode_group_record
from kaflow.replication.producers import ProducerTable, decode_producers, encode_producers

__all__ = [
    "STATE_FORMAT_VERSION",
    "GroupOffset",
    "PartitionState",
    "ReplicatedState",
    "StateFormatError",
    "TopicState",
    "decode_state",
    "encode_state",
]

STATE_FORMAT_VERSION = 3
# Versions this node decodes; version 1 has no producer table, versions 1 and 2 no
# group records.
_READABLE_VERSIONS = frozenset({1, 2, STATE_FORMAT_VERSION})
_CRC = struct.Struct(">I")


class StateFormatError(ValueError):
    """The bytes are not a state snapshot this version can read."""


@dataclass(frozen=True, slots=True)
class TopicState:
    """A topic as the replicated state records it.

    ``config`` holds only the overrides a user set; ``created_index`` is the
    Raft index of the create_topic command and identifies this incarnation
    of the name.
    """

    name: str
    partitions: int
    config: dict[str, int]
    created_index: int


@dataclass(frozen=True, slots=True)
class PartitionState:
    """A partition's offsets; ``log_end_offset`` is also its high watermark."""

    log_start_offset: int
    log_end_offset: int


@dataclass(frozen=True, slots=True)
class GroupOffset:
    offset: int
    metadata: str
    commit_timestamp: int


@dataclass(slots=True)
class ReplicatedState:
    """Everything a snapshot holds; owned and mutated by the state machine only."""

    index: int = 0
    topics: dict[str, TopicState] = field(default_factory=dict)
    partitions: dict[tuple[str, int], PartitionState] = field(default_factory=dict)
    groups: dict[str, dict[tuple[str, int], GroupOffset]] = field(default_factory=dict)
    producers: ProducerTable = field(default_factory=ProducerTable)
    # Raft address -> registered member.
    members: dict[str, MemberInfo] = field(default_factory=dict)
    # Consumer group -> its coordination record (members, epochs, assignment).
    group_records: dict[str, GroupRecord] = field(default_factory=dict)


def encode_state(state: ReplicatedState) -> bytes:
    """Encode ``state`` as documented in this module; equal states give equal bytes."""
    body = {
        "v": STATE_FORMAT_VERSION,
        "index": state.index,
        "topics": [
            [topic.name, topic.partitions, dict(sorted(topic.config.items())), topic.created_index]
            for topic in sorted(state.topics.values(), key=lambda topic: topic.name)
        ],
        "partitions": [
            [topic, partition, offsets.log_start_offset, offsets.log_end_offset]
            for (topic, partition), offsets in sorted(state.partitions.items())
        ],
        "groups": [
            [group, topic, partition, entry.offset, entry.metadata, entry.commit_timestamp]
            for group, offsets in sorted(state.groups.items())
            for (topic, partition), entry in sorted(offsets.items())
        ],
        **encode_producers(state.producers),
        **encode_members(state.members),
        "group_records": [
            encode_group_record(record) for _, record in sorted(state.group_records.items())
        ],
    }
    packed: bytes = msgpack.packb(body, use_bin_type=True)
    return _CRC.pack(crc32c.crc32c(packed)) + packed


def _rows(body: dict[str, Any], name: str, width: int) -> list[list[Any]]:
    rows = body.get(name)
    if not isinstance(rows, list) or not all(
        isinstance(row, list) and len(row) == width for row in rows
    ):
        raise StateFormatError(f"state field {name!r} must be an array of {width}-element arrays")
    return rows


def _decode_body(body: dict[str, Any]) -> ReplicatedState:
    index = body.get("index")
    if not isinstance(index, int):
        raise StateFormatError(f"state field 'index' must be an int, got {index!r}")
    state = ReplicatedState(index=index)
    for name, partitions, config, created_index in _rows(body, "topics", 4):
        state.topics[name] = TopicState(name, partitions, dict(config), created_index)
    for topic, partition, log_start, log_end in _rows(body, "partitions", 4):
        state.partitions[(topic, partition)] = PartitionState(log_start, log_end)
    for group, topic, partition, offset, metadata, timestamp in _rows(body, "groups", 6):
        state.groups.setdefault(group, {})[(topic, partition)] = GroupOffset(
            offset, metadata, timestamp
        )
    if body.get("v") != 1:
        state.producers = decode_producers(body)
    state.members = decode_members(body)
    records = body.get("group_records", [])
    if not isinstance(records, list):
        raise StateFormatError("state field 'group_records' must be an array")
    for fields in records:
        record = decode_group_record(fields)
        state.group_records[record.group] = record
    return state


def decode_state(data: bytes) -> ReplicatedState:
    """Decode a state snapshot; raise StateFormatError if it is damaged or of another version."""
    if len(data) < _CRC.size:
        raise StateFormatError(f"state snapshot of {len(data)} bytes is shorter than its CRC")
    (stored_crc,) = _CRC.unpack_from(data)
    packed = data[_CRC.size :]
    actual_crc = crc32c.crc32c(packed)
    if actual_crc != stored_crc:
        raise StateFormatError(
            f"state snapshot CRC-32C mismatch: stored {stored_crc:#010x}, "
            f"computed {actual_crc:#010x}"
        )
    try:
        body = msgpack.unpackb(packed, raw=False, strict_map_key=False)
    except (ValueError, msgpack.UnpackException) as exc:
        raise StateFormatError(f"state snapshot is not valid msgpack: {exc}") from exc
    if not isinstance(body, dict):
        raise StateFormatError("state snapshot body must be a msgpack map")
    version = body.get("v")
    if version not in _READABLE_VERSIONS:
        raise StateFormatError(
            f"state snapshot format version {version!r} is not supported; this node reads "
            f"versions 1 to {STATE_FORMAT_VERSION}"
        )
    try:
        return _decode_body(body)
    except (TypeError, ValueError) as exc:
        raise StateFormatError(f"state snapshot has a malformed entry: {exc}") from exc
