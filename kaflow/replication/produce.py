"""Turn one produce request into the append items a Raft command carries.

Values that would differ between members if apply chose them are fixed
here, on the proposing node. They are the partition of each record, the
timestamp of records sent without one, and the encoded batches (one per
partition, with base offset 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from kaflow.broker import ProduceRecord
from kaflow.errors import (
    EmptyRecordsError,
    InvalidRecordError,
    RecordTooLargeError,
    RequestTooLargeError,
    UnknownPartitionError,
)
from kaflow.partitioner import Partitioner
from kaflow.replication.commands import AppendItem
from kaflow.replication.state import TopicState
from kaflow.storage.batch import BatchRecord, encode_batch, record_size_estimate
from kaflow.topics import MAX_MESSAGE_BYTES, effective_config

__all__ = ["PlannedRecord", "ProducePlan", "plan_produce"]

_INT64_MAX = 2**63 - 1


@dataclass(frozen=True, slots=True)
class PlannedRecord:
    """Placement of one request record: ``position`` records into the batch of item ``item``."""

    item: int
    position: int
    partition: int
    timestamp: int


@dataclass(frozen=True, slots=True)
class ProducePlan:
    items: list[AppendItem]
    # One entry per request record, in request order.
    records: list[PlannedRecord]


def _check_record(topic: TopicState, index: int, record: ProduceRecord, max_bytes: int) -> None:
    for field_name, data in (("key", record.key), ("value", record.value)):
        if data is not None and not isinstance(data, bytes):
            raise InvalidRecordError(
                f"record {index}: {field_name} must be bytes or None, got {type(data).__name__}",
                index=index,
                field=field_name,
            )
    if record.timestamp is not None and (
        isinstance(record.timestamp, bool)
        or not isinstance(record.timestamp, int)
        or not 0 <= record.timestamp <= _INT64_MAX
    ):
        raise InvalidRecordError(
            f"record {index}: timestamp {record.timestamp!r} must be milliseconds since the "
            "Unix epoch, an integer from 0 to 2**63 - 1",
            index=index,
            timestamp=record.timestamp,
        )
    partition = record.partition
    if partition is not None and (
        isinstance(partition, bool)
        or not isinstance(partition, int)
        or not 0 <= partition < topic.partitions
    ):
        raise UnknownPartitionError(
            f"record {index}: partition {partition!r} of topic {topic.name!r} not found; "
            f"valid partitions are 0..{topic.partitions - 1}",
            index=index,
            topic=topic.name,
            partition=partition,
            partitions=topic.partitions,
        )
    size = record_size_estimate(record.key, record.value, record.headers)
    if size > max_bytes:
        raise RecordTooLargeError(
            f"record {index} takes {size} bytes, more than max.message.bytes={max_bytes} of "
            f"topic {topic.name!r}; send a smaller record or raise the topic's "
            "max.message.bytes",
            index=index,
            size=size,
            limit=max_bytes,
            topic=topic.name,
        )


def plan_produce(
    topic: TopicState,
    records: Sequence[ProduceRecord],
    partitioner: Partitioner,
    now_ms: int,
    max_request_bytes: int,
) -> ProducePlan:
    """Validate ``records``, choose partitions, stamp timestamps and encode the batches.

    Raises EmptyRecordsError, InvalidRecordError, UnknownPartitionError,
    RecordTooLargeError, or RequestTooLargeError when the batches together
    exceed ``max_request_bytes``.
    """
    if not records:
        raise EmptyRecordsError(f"produce request to topic {topic.name!r} has no records")
    max_message_bytes = effective_config(topic.config)[MAX_MESSAGE_BYTES]
    for index, record in enumerate(records):
        _check_record(topic, index, record, max_message_bytes)

    by_partition: dict[int, list[BatchRecord]] = {}
    placed: list[tuple[int, int, int]] = []
    for record in records:
        partition = record.partition
        if partition is None:
            partition = partitioner.partition(topic.name, record.key, topic.partitions)
        timestamp = now_ms if record.timestamp is None else record.timestamp
        batch = by_partition.setdefault(partition, [])
        placed.append((partition, len(batch), timestamp))
        batch.append(BatchRecord(timestamp, record.key, record.value, tuple(record.headers)))

    item_of_partition: dict[int, int] = {}
    items: list[AppendItem] = []
    for partition in sorted(by_partition):
        item_of_partition[partition] = len(items)
        batch_records = by_partition[partition]
        items.append(
            AppendItem(
                topic=topic.name,
                topic_id=topic.created_index,
                partition=partition,
                batch=encode_batch(batch_records),
                record_count=len(batch_records),
            )
        )

    size = sum(len(item.batch) for item in items)
    if size > max_request_bytes:
        raise RequestTooLargeError(
            f"produce request encodes to {size} bytes of record batches, more than the "
            f"node's limit of {max_request_bytes}; split it into smaller requests",
            size=size,
            max_request_bytes=max_request_bytes,
        )
    planned = [
        PlannedRecord(item_of_partition[partition], position, partition, timestamp)
        for partition, position, timestamp in placed
    ]
    return ProducePlan(items, planned)
