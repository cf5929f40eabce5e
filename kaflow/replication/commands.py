"""Replicated commands: what the Raft log carries, one command per entry.

A command is a msgpack map with two fixed keys and per-operation fields.
Every non-deterministic value (timestamps, partition choice, base offset 0
batch encoding) is fixed by the proposer before the command enters the log,
so applying it gives the same result on every member.

Common keys:

``v``   int, format version, currently 1. A decoder rejects other versions.
``op``  str, one of the operations below.

Operations and their fields (msgpack types):

``create_topic``
    ``name`` str, ``partitions`` int, ``config`` map str -> int (overrides only).
``delete_topic``
    ``name`` str.
``alter_topic``
    ``name`` str, ``partitions`` int or nil (nil leaves the count unchanged),
    ``set`` map str -> int (entries to set), ``reset`` array of str (entries
    to reset to their defaults).
``append``
    ``items`` array of maps, each with ``topic`` str, ``topic_id`` int,
    ``partition`` int, ``batch`` bin and ``records`` int. ``topic_id`` is the
    Raft index that created the topic, so a topic deleted and created again
    between propose and apply is not written to. ``batch`` is a record batch
    encoded with base offset 0, and the state machine assigns the real base
    offset. ``records`` is the batch's record count.
``commit_offsets``
    ``group`` str, ``timestamp`` int (commit time in ms, fixed by the
    proposer), ``offsets`` array of maps, each ``topic`` str, ``partition``
    int, ``offset`` int, ``metadata`` str. Optional ``member_id`` str and
    ``member_epoch`` int: a commit from a group member, checked at apply
    against the group record (kaflow.replication.group_apply).
``reset_offsets``
    the fields of ``commit_offsets`` without the member fields; applied
    only while the group has no members.
``group_update``
    ``group`` str, ``base_version`` int (the ``version`` of the group record
    the update was computed from, 0 for none), ``record`` map (the whole new
    record, kaflow.coordinator.model). Apply rejects a base version that is
    not the stored one, and the coordinator computes the update again.
``group_delete``
    ``group`` str: deletes the group's record and committed offsets; applied
    only while the group has no members.
``delete_records``
    ``topic`` str, ``partition`` int, ``offset`` int (the new log start
    offset; records below it are deleted).
``init_producer``
    ``producer_id`` int or nil (nil allocates a new id with epoch 0, an int
    bumps that id's epoch), ``timestamp`` int (ms, fixed by the proposer).
``register_member``
    ``node_id`` str, ``raft_address`` str, ``http_url`` str: adds or
    replaces a member registry entry (kaflow.cluster.registry).
``unregister_member``
    ``raft_address`` str: removes that member's registry entry.

An ``append`` item of an idempotent produce request also has
``producer_id`` int, ``producer_epoch`` int, ``base_sequence`` int (the
sequence number of the batch's first record) and ``timestamp`` int (the
time in ms the node accepted the request, which it stamped on records sent
without a timestamp). An item has all four keys or none of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias

import msgpack

from kaflow.coordinator.model import (
    GroupRecord,
    GroupRecordFormatError,
    decode_group_record,
    encode_group_record,
)

__all__ = [
    "FORMAT_VERSION",
    "AlterTopic",
    "Append",
    "AppendItem",
    "Command",
    "CommandFormatError",
    "CommitOffsets",
    "CreateTopic",
    "DeleteRecords",
    "DeleteTopic",
    "GroupDelete",
    "GroupUpdate",
    "InitProducer",
    "OffsetEntry",
    "ProducerBatch",
    "RegisterMember",
    "ResetOffsets",
    "UnregisterMember",
    "decode_command",
    "encode_command",
]

FORMAT_VERSION = 1


class CommandFormatError(ValueError):
    """The bytes are not a command this version can apply."""


@dataclass(frozen=True, slots=True)
class CreateTopic:
    name: str
    partitions: int
    config: dict[str, int]


@dataclass(frozen=True, slots=True)
class DeleteTopic:
    name: str


@dataclass(frozen=True, slots=True)
class AlterTopic:
    name: str
    partitions: int | None
    config_set: dict[str, int]
    config_reset: list[str]


@dataclass(frozen=True, slots=True)
class ProducerBatch:
    """The producer fields of one idempotent append item."""

    producer_id: int
    producer_epoch: int
    base_sequence: int
    timestamp: int


@dataclass(frozen=True, slots=True)
class AppendItem:
    """One partition's batch inside an append command."""

    topic: str
    topic_id: int
    partition: int
    batch: bytes
    record_count: int
    # Set for an idempotent produce request; None for a plain one.
    producer: ProducerBatch | None = None


@dataclass(frozen=True, slots=True)
class Append:
    items: list[AppendItem]


@dataclass(frozen=True, slots=True)
class OffsetEntry:
    topic: str
    partition: int
    offset: int
    metadata: str


@dataclass(frozen=True, slots=True)
class CommitOffsets:
    group: str
    offsets: list[OffsetEntry]
    timestamp: int
    # Set together for a commit from a group member; None for a standalone consumer.
    member_id: str | None = None
    member_epoch: int | None = None


@dataclass(frozen=True, slots=True)
class ResetOffsets:
    group: str
    offsets: list[OffsetEntry]
    timestamp: int


@dataclass(frozen=True, slots=True)
class GroupUpdate:
    group: str
    base_version: int
    record: GroupRecord


@dataclass(frozen=True, slots=True)
class GroupDelete:
    group: str


@dataclass(frozen=True, slots=True)
class DeleteRecords:
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class InitProducer:
    producer_id: int | None
    timestamp: int


@dataclass(frozen=True, slots=True)
class RegisterMember:
    node_id: str
    raft_address: str
    http_url: str


@dataclass(frozen=True, slots=True)
class UnregisterMember:
    raft_address: str


Command: TypeAlias = (
    CreateTopic
    | DeleteTopic
    | AlterTopic
    | Append
    | CommitOffsets
    | DeleteRecords
    | InitProducer
    | RegisterMember
    | UnregisterMember
    | ResetOffsets
    | GroupUpdate
    | GroupDelete
)


def _to_map(command: Command) -> dict[str, Any]:
    match command:
        case CreateTopic(name, partitions, config):
            return {"op": "create_topic", "name": name, "partitions": partitions, "config": config}
        case DeleteTopic(name):
            return {"op": "delete_topic", "name": name}
        case AlterTopic(name, partitions, config_set, config_reset):
            return {
                "op": "alter_topic",
                "name": name,
                "partitions": partitions,
                "set": config_set,
                "reset": config_reset,
            }
        case Append(items):
            return {"op": "append", "items": [_item_to_map(item) for item in items]}
        case CommitOffsets(group, offsets, timestamp, member_id, member_epoch):
            fields = {
                "op": "commit_offsets",
                "group": group,
                "timestamp": timestamp,
                "offsets": _offsets_to_maps(offsets),
            }
            if member_id is not None:
                fields["member_id"] = member_id
                fields["member_epoch"] = member_epoch
            return fields
        case ResetOffsets(group, offsets, timestamp):
            return {
                "op": "reset_offsets",
                "group": group,
                "timestamp": timestamp,
                "offsets": _offsets_to_maps(offsets),
            }
        case GroupUpdate(group, base_version, record):
            return {
                "op": "group_update",
                "group": group,
                "base_version": base_version,
                "record": encode_group_record(record),
            }
        case GroupDelete(group):
            return {"op": "group_delete", "group": group}
        case DeleteRecords(topic, partition, offset):
            return {
                "op": "delete_records",
                "topic": topic,
                "partition": partition,
                "offset": offset,
            }
        case InitProducer(producer_id, timestamp):
            return {"op": "init_producer", "producer_id": producer_id, "timestamp": timestamp}
        case RegisterMember(node_id, raft_address, http_url):
            return {
                "op": "register_member",
                "node_id": node_id,
                "raft_address": raft_address,
                "http_url": http_url,
            }
        case UnregisterMember(raft_address):
            return {"op": "unregister_member", "raft_address": raft_address}
    raise TypeError(f"not a command: {command!r}")


def _offsets_to_maps(offsets: list[OffsetEntry]) -> list[dict[str, Any]]:
    return [
        {
            "topic": entry.topic,
            "partition": entry.partition,
            "offset": entry.offset,
            "metadata": entry.metadata,
        }
        for entry in offsets
    ]


def _offsets_from_maps(fields: dict[str, Any]) -> list[OffsetEntry]:
    return [
        OffsetEntry(
            _field(entry, "topic", str),
            _field(entry, "partition", int),
            _field(entry, "offset", int),
            _field(entry, "metadata", str),
        )
        for entry in _maps(fields.get("offsets"), "offsets")
    ]


def _item_to_map(item: AppendItem) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "topic": item.topic,
        "topic_id": item.topic_id,
        "partition": item.partition,
        "batch": item.batch,
        "records": item.record_count,
    }
    if item.producer is not None:
        fields["producer_id"] = item.producer.producer_id
        fields["producer_epoch"] = item.producer.producer_epoch
        fields["base_sequence"] = item.producer.base_sequence
        fields["timestamp"] = item.producer.timestamp
    return fields


def encode_command(command: Command) -> bytes:
    """Encode ``command`` as the msgpack map documented in this module."""
    fields = {"v": FORMAT_VERSION, **_to_map(command)}
    packed: bytes = msgpack.packb(fields, use_bin_type=True)
    return packed


def _field(fields: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = fields.get(name)
    # bool is a subclass of int, but a boolean is never a valid count or offset.
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise CommandFormatError(f"command field {name!r} must be {kind}, got {value!r}")
    return value


def _str_int_map(value: Any, name: str) -> dict[str, int]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
        for k, v in value.items()
    ):
        raise CommandFormatError(f"command field {name!r} must map strings to ints")
    return dict(value)


def _maps(value: Any, name: str) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise CommandFormatError(f"command field {name!r} must be an array of maps")
    return value


def _from_map(fields: dict[str, Any]) -> Command:
    op = fields.get("op")
    if op == "create_topic":
        return CreateTopic(
            _field(fields, "name", str),
            _field(fields, "partitions", int),
            _str_int_map(fields.get("config"), "config"),
        )
    if op == "delete_topic":
        return DeleteTopic(_field(fields, "name", str))
    if op == "alter_topic":
        partitions = fields.get("partitions")
        if partitions is not None:
            partitions = _field(fields, "partitions", int)
        reset = fields.get("reset")
        if not isinstance(reset, list) or not all(isinstance(key, str) for key in reset):
            raise CommandFormatError("command field 'reset' must be an array of strings")
        return AlterTopic(
            _field(fields, "name", str), partitions, _str_int_map(fields.get("set"), "set"), reset
        )
    if op == "append":
        return Append([_item_from_map(item) for item in _maps(fields.get("items"), "items")])
    if op == "commit_offsets":
        member_id: str | None = None
        member_epoch: int | None = None
        if "member_id" in fields:
            member_id = _field(fields, "member_id", str)
            member_epoch = _field(fields, "member_epoch", int)
        return CommitOffsets(
            _field(fields, "group", str),
            _offsets_from_maps(fields),
            _field(fields, "timestamp", int),
            member_id,
            member_epoch,
        )
    if op == "reset_offsets":
        return ResetOffsets(
            _field(fields, "group", str),
            _offsets_from_maps(fields),
            _field(fields, "timestamp", int),
        )
    if op == "group_update":
        try:
            record = decode_group_record(fields.get("record"))
        except GroupRecordFormatError as exc:
            raise CommandFormatError(str(exc)) from exc
        return GroupUpdate(
            _field(fields, "group", str), _field(fields, "base_version", int), record
        )
    if op == "group_delete":
        return GroupDelete(_field(fields, "group", str))
    if op == "delete_records":
        return DeleteRecords(
            _field(fields, "topic", str),
            _field(fields, "partition", int),
            _field(fields, "offset", int),
        )
    if op == "init_producer":
        producer_id = fields.get("producer_id")
        if producer_id is not None:
            producer_id = _field(fields, "producer_id", int)
        return InitProducer(producer_id, _field(fields, "timestamp", int))
    if op == "register_member":
        return RegisterMember(
            _field(fields, "node_id", str),
            _field(fields, "raft_address", str),
            _field(fields, "http_url", str),
        )
    if op == "unregister_member":
        return UnregisterMember(_field(fields, "raft_address", str))
    raise CommandFormatError(f"unknown command op {op!r}")


def _item_from_map(item: dict[str, Any]) -> AppendItem:
    producer: ProducerBatch | None = None
    if "producer_id" in item:
        producer = ProducerBatch(
            _field(item, "producer_id", int),
            _field(item, "producer_epoch", int),
            _field(item, "base_sequence", int),
            _field(item, "timestamp", int),
        )
    return AppendItem(
        _field(item, "topic", str),
        _field(item, "topic_id", int),
        _field(item, "partition", int),
        _field(item, "batch", bytes),
        _field(item, "records", int),
        producer,
    )


def decode_command(data: bytes) -> Command:
    """Decode a command; raise CommandFormatError for bytes this version cannot apply."""
    try:
        fields = msgpack.unpackb(data, raw=False)
    except (ValueError, msgpack.UnpackException) as exc:
        raise CommandFormatError(f"command is not valid msgpack: {exc}") from exc
    if not isinstance(fields, dict):
        raise CommandFormatError(f"command must be a msgpack map, got {type(fields).__name__}")
    version = fields.get("v")
    if version != FORMAT_VERSION:
        raise CommandFormatError(
            f"command format version {version!r} is not supported; this node applies "
            f"version {FORMAT_VERSION}"
        )
    return _from_map(fields)
