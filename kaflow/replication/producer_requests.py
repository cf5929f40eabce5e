"""The proposing node's side of idempotent produce.

Before a request is proposed, :func:`check_producer_sequences` checks that
its producer fields fit its records, and :func:`attach_producer` puts the
producer id, epoch, base sequence and accept time on each partition's append
item. The state machine decides at apply time whether a batch is new or a
retry (see kaflow.replication.producers); :func:`record_timestamp` then
gives a retried record the timestamp it was stored with.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from kaflow.broker import ProduceRecord, ProducerSequences
from kaflow.errors import InvalidRecordError, InvalidRequestError
from kaflow.replication.commands import AppendItem, ProducerBatch
from kaflow.replication.producers import MAX_PRODUCER_EPOCH, MAX_PRODUCER_ID, SEQUENCE_MODULUS
from kaflow.replication.results import AppendedBatch

__all__ = [
    "attach_producer",
    "check_producer_id",
    "check_producer_sequences",
    "record_timestamp",
]


def check_producer_id(producer_id: int | None) -> None:
    """Raise InvalidRequestError unless ``producer_id`` is None or a valid producer id."""
    if producer_id is not None:
        _check_range("producer_id", producer_id, MAX_PRODUCER_ID)


def check_producer_sequences(records: Sequence[ProduceRecord], producer: ProducerSequences) -> None:
    """Check that ``producer`` fits ``records``.

    Raises InvalidRecordError for a record without a partition, and
    InvalidRequestError for an id, epoch or sequence out of range or when
    the partitions of ``base_sequences`` differ from those of the records.
    """
    _check_range("producer_id", producer.producer_id, MAX_PRODUCER_ID)
    _check_range("producer_epoch", producer.producer_epoch, MAX_PRODUCER_EPOCH)

    partitions: set[int] = set()
    for index, record in enumerate(records):
        if record.partition is None:
            raise InvalidRecordError(
                f"record {index} has no partition; an idempotent produce request must name "
                "the partition of every record, because its sequence numbers count per "
                "partition",
                index=index,
                field=f"records[{index}].partition",
            )
        partitions.add(record.partition)

    sequenced = set(producer.base_sequences)
    if sequenced != partitions:
        raise InvalidRequestError(
            f"base_sequences names partitions {sorted(sequenced)} but the records go to "
            f"partitions {sorted(partitions)}; send one base sequence for each partition "
            "the request writes to, and no other",
            field="base_sequences",
            sequenced_partitions=sorted(sequenced),
            record_partitions=sorted(partitions),
        )
    for partition, base_sequence in sorted(producer.base_sequences.items()):
        _check_range(f"base_sequences[{partition}]", base_sequence, SEQUENCE_MODULUS - 1)


def attach_producer(
    items: list[AppendItem], producer: ProducerSequences, accept_timestamp: int
) -> list[AppendItem]:
    """Return ``items`` with the producer fields for each item's partition set."""
    return [
        dataclasses.replace(
            item,
            producer=ProducerBatch(
                producer.producer_id,
                producer.producer_epoch,
                producer.base_sequences[item.partition],
                accept_timestamp,
            ),
        )
        for item in items
    ]


def record_timestamp(requested: ProduceRecord, planned: int, outcome: AppendedBatch) -> int:
    """Return the timestamp a produced record was stored with.

    ``planned`` is the timestamp this request stamped on the record. A
    record without its own timestamp that turned out to be a retry of a
    stored batch has the timestamp the original request stamped instead.
    """
    if requested.timestamp is None and outcome.original_timestamp is not None:
        return outcome.original_timestamp
    return planned


def _check_range(name: str, value: int, maximum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        raise InvalidRequestError(
            f"{name} is {value!r}, outside 0..{maximum}",
            field=name,
            value=value,
            min=0,
            max=maximum,
        )
