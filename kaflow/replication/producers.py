"""Idempotent producer state: producer ids, epochs and per-partition sequences.

The scheme follows Kafka's idempotent producer. A producer requests a
producer id from the cluster (an ``init_producer`` command) and numbers the
records it sends to each partition 0, 1, 2, ... A produce request carries the producer
id, its epoch, and for each partition the sequence number of its first
record there. When the state machine applies an append item with those
fields, :meth:`ProducerTable.check_batch` compares the batch's sequence range
with the last batches stored for that producer and partition:

- the same range as a cached batch: a retry of a stored batch, so nothing is
  appended and the original offsets are returned;
- the range that starts right after the last stored batch: appended;
- anything else: ``out_of_order_sequence``.

The table is part of the replicated state, so it is the same on every member,
survives restarts through snapshots, and is rebuilt identically when the
Raft log is replayed. Apply never reads the wall clock: the table's clock is
the largest timestamp any producer command carried, and the proposing node
fixed that timestamp before the command entered the log.

Limits, all taken from Kafka so that a Kafka client's numbering fits:

- sequence numbers are 31-bit and wrap from 2**31 - 1 to 0 (Kafka's int32
  sequence);
- epochs are 0..32767 (Kafka's int16 epoch). Bumping the last epoch
  allocates a new producer id with epoch 0, as Kafka does;
- the last 5 batches per producer and partition are cached, which is
  Kafka's ``max.in.flight.requests.per.connection`` limit for idempotence;
- a producer idle for more than 1 day is forgotten (Kafka's
  ``producer.id.expiration.ms`` default). Its next request fails with
  ``unknown_producer_id``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Final

from kaflow.broker import ProducerIdAndEpoch
from kaflow.errors import (
    InvalidProducerEpochError,
    InvalidRecordError,
    OutOfOrderSequenceError,
    UnknownProducerIdError,
)
from kaflow.replication.commands import ProducerBatch

__all__ = [
    "BATCHES_PER_PARTITION",
    "MAX_PRODUCER_EPOCH",
    "MAX_PRODUCER_ID",
    "PRODUCER_ID_EXPIRATION_MS",
    "SEQUENCE_MODULUS",
    "BatchSequence",
    "ProducerEntry",
    "ProducerTable",
    "decode_producers",
    "encode_producers",
    "last_sequence",
]

logger = logging.getLogger(__name__)

SEQUENCE_MODULUS: Final = 2**31
MAX_PRODUCER_EPOCH: Final = 2**15 - 1
MAX_PRODUCER_ID: Final = 2**63 - 1
BATCHES_PER_PARTITION: Final = 5
PRODUCER_ID_EXPIRATION_MS: Final = 24 * 60 * 60 * 1000
# Expired producers are removed when the clock enters a new interval of this
# length. A lookup checks expiry itself, so this only bounds memory.
_EXPIRY_SWEEP_INTERVAL_MS: Final = 60 * 1000

PartitionKey = tuple[str, int]


def last_sequence(base_sequence: int, record_count: int) -> int:
    """Return the sequence number of a batch's last record, wrapping at 2**31."""
    return (base_sequence + record_count - 1) % SEQUENCE_MODULUS


@dataclass(frozen=True, slots=True)
class BatchSequence:
    """A stored batch of one producer on one partition (Kafka's batch metadata).

    ``timestamp`` is the time the node accepted the request that carried the
    batch; records sent without a timestamp have it.
    """

    first_sequence: int
    last_sequence: int
    base_offset: int
    last_offset: int
    timestamp: int


@dataclass(slots=True)
class ProducerEntry:
    """One producer's epoch and its recent batches, oldest first, per partition."""

    producer_id: int
    producer_epoch: int
    # The table's clock when the producer last initialised or wrote.
    last_timestamp: int
    batches: dict[PartitionKey, list[BatchSequence]] = field(default_factory=dict)


@dataclass(slots=True)
class ProducerTable:
    """Every live producer, owned and mutated by the state machine's apply thread.

    Every method is deterministic: its outcome depends only on the table and
    its arguments, so members that apply the same commands agree.
    """

    next_producer_id: int = 0
    # Largest timestamp of any applied producer command, in ms.
    clock_ms: int = 0
    producers: dict[int, ProducerEntry] = field(default_factory=dict)

    def init_producer(self, producer_id: int | None, timestamp: int) -> ProducerIdAndEpoch:
        """Allocate a producer id with epoch 0, or bump the epoch of ``producer_id``.

        A bump drops the producer's cached batches, because a new epoch
        numbers every partition from sequence 0 again. Raises
        UnknownProducerIdError when ``producer_id`` is not live.
        """
        self._advance_clock(timestamp)
        if producer_id is None:
            return self._allocate()

        entry = self._live(producer_id)
        if entry is None:
            raise _unknown_producer(producer_id)
        if entry.producer_epoch >= MAX_PRODUCER_EPOCH:
            del self.producers[producer_id]
            allocated = self._allocate()
            logger.info(
                "producer epoch exhausted producer_id=%d new_producer_id=%d",
                producer_id,
                allocated.producer_id,
            )
            return allocated

        entry.producer_epoch += 1
        entry.batches.clear()
        entry.last_timestamp = self.clock_ms
        logger.info(
            "producer epoch bumped producer_id=%d producer_epoch=%d",
            producer_id,
            entry.producer_epoch,
        )
        return ProducerIdAndEpoch(producer_id, entry.producer_epoch)

    def check_batch(
        self, producer: ProducerBatch, topic: str, partition: int, record_count: int
    ) -> BatchSequence | None:
        """Decide what to do with an idempotent batch before it is appended.

        Returns the cached batch when this one is a retry of it, or None when
        it is the next batch and must be appended (then call
        :meth:`record_batch`). Raises UnknownProducerIdError,
        InvalidProducerEpochError, OutOfOrderSequenceError, or
        InvalidRecordError for a field outside its range.
        """
        _check_ranges(producer, record_count)
        self._advance_clock(producer.timestamp)
        entry = self._live(producer.producer_id)
        if entry is None:
            raise _unknown_producer(producer.producer_id)
        if producer.producer_epoch != entry.producer_epoch:
            raise _wrong_epoch(producer, entry)

        first = producer.base_sequence
        last = last_sequence(first, record_count)
        cached = entry.batches.get((topic, partition), [])
        for batch in cached:
            if batch.first_sequence == first and batch.last_sequence == last:
                entry.last_timestamp = self.clock_ms
                return batch

        expected = 0 if not cached else (cached[-1].last_sequence + 1) % SEQUENCE_MODULUS
        if first != expected:
            raise _out_of_order(producer, topic, partition, expected, cached)
        return None

    def record_batch(
        self,
        producer: ProducerBatch,
        topic: str,
        partition: int,
        record_count: int,
        offsets: tuple[int, int],
    ) -> None:
        """Remember a batch that :meth:`check_batch` accepted and the log stored at ``offsets``."""
        entry = self.producers[producer.producer_id]
        cached = entry.batches.setdefault((topic, partition), [])
        cached.append(
            BatchSequence(
                producer.base_sequence,
                last_sequence(producer.base_sequence, record_count),
                offsets[0],
                offsets[1],
                producer.timestamp,
            )
        )
        del cached[:-BATCHES_PER_PARTITION]
        entry.last_timestamp = self.clock_ms

    def forget_topic(self, topic: str) -> None:
        """Drop every cached batch of ``topic``, whose partitions were deleted."""
        for entry in self.producers.values():
            for key in [key for key in entry.batches if key[0] == topic]:
                del entry.batches[key]

    def _allocate(self) -> ProducerIdAndEpoch:
        if self.next_producer_id > MAX_PRODUCER_ID:
            raise UnknownProducerIdError(
                f"every producer id up to {MAX_PRODUCER_ID} has been allocated; no new "
                "producer can be initialised"
            )
        producer_id = self.next_producer_id
        self.next_producer_id += 1
        self.producers[producer_id] = ProducerEntry(producer_id, 0, self.clock_ms)
        logger.info("producer id allocated producer_id=%d producer_epoch=0", producer_id)
        return ProducerIdAndEpoch(producer_id, 0)

    def _live(self, producer_id: int) -> ProducerEntry | None:
        entry = self.producers.get(producer_id)
        if entry is not None and self._expired(entry):
            self._expire(entry)
            return None
        return entry

    def _expired(self, entry: ProducerEntry) -> bool:
        return self.clock_ms - entry.last_timestamp > PRODUCER_ID_EXPIRATION_MS

    def _expire(self, entry: ProducerEntry) -> None:
        del self.producers[entry.producer_id]
        logger.info(
            "producer expired producer_id=%d idle_ms=%d",
            entry.producer_id,
            self.clock_ms - entry.last_timestamp,
        )

    def _advance_clock(self, timestamp: int) -> None:
        previous = self.clock_ms
        # Members' clocks differ, so a new leader may propose an earlier time;
        # the clock never goes back.
        self.clock_ms = max(previous, timestamp)
        if self.clock_ms // _EXPIRY_SWEEP_INTERVAL_MS != previous // _EXPIRY_SWEEP_INTERVAL_MS:
            for entry in [entry for entry in self.producers.values() if self._expired(entry)]:
                self._expire(entry)


def _check_ranges(producer: ProducerBatch, record_count: int) -> None:
    limits = (
        ("producer_id", producer.producer_id, MAX_PRODUCER_ID),
        ("producer_epoch", producer.producer_epoch, MAX_PRODUCER_EPOCH),
        ("base_sequence", producer.base_sequence, SEQUENCE_MODULUS - 1),
        ("record count", record_count, SEQUENCE_MODULUS - 1),
    )
    for name, value, maximum in limits:
        if not 0 <= value <= maximum:
            raise InvalidRecordError(
                f"{name} {value} is outside 0..{maximum}", field=name, value=value, max=maximum
            )


def _unknown_producer(producer_id: int) -> UnknownProducerIdError:
    return UnknownProducerIdError(
        f"producer id {producer_id} is unknown: it was never allocated, or it expired after "
        f"more than {PRODUCER_ID_EXPIRATION_MS} ms without a write; request a new one with "
        "POST /v1/producers",
        producer_id=producer_id,
    )


def _wrong_epoch(producer: ProducerBatch, entry: ProducerEntry) -> InvalidProducerEpochError:
    if producer.producer_epoch < entry.producer_epoch:
        reason = "a newer instance of this producer re-initialised the id and fenced this one"
    else:
        reason = "that epoch was never issued"
    return InvalidProducerEpochError(
        f"producer epoch {producer.producer_epoch} of producer id {producer.producer_id} is "
        f"invalid, the current epoch is {entry.producer_epoch}: {reason}",
        producer_id=producer.producer_id,
        producer_epoch=producer.producer_epoch,
        current_epoch=entry.producer_epoch,
    )


def _out_of_order(
    producer: ProducerBatch,
    topic: str,
    partition: int,
    expected: int,
    cached: list[BatchSequence],
) -> OutOfOrderSequenceError:
    return OutOfOrderSequenceError(
        f"base sequence {producer.base_sequence} of producer id {producer.producer_id} on "
        f"partition {topic}-{partition} is out of order: the next expected sequence is "
        f"{expected}, and only the last {BATCHES_PER_PARTITION} batches are recognised as "
        "retries; resend the missing records or re-initialise the producer",
        producer_id=producer.producer_id,
        topic=topic,
        partition=partition,
        base_sequence=producer.base_sequence,
        expected_sequence=expected,
        cached_sequences=[[batch.first_sequence, batch.last_sequence] for batch in cached],
    )


# Snapshot encoding, added to the state body by kaflow.replication.state:
#
# ``next_producer_id``  int, the id the next init_producer allocates.
# ``producer_clock``    int, ProducerTable.clock_ms.
# ``producers``         array of ``[producer_id, producer_epoch, last_timestamp]``.
# ``producer_batches``  array of ``[producer_id, topic, partition, first_sequence,
#                       last_sequence, base_offset, last_offset, timestamp]``, each
#                       producer's batches on one partition oldest first.


def encode_producers(table: ProducerTable) -> dict[str, Any]:
    """Return the snapshot fields of ``table``; equal tables give equal values."""
    entries = sorted(table.producers.values(), key=lambda entry: entry.producer_id)
    return {
        "next_producer_id": table.next_producer_id,
        "producer_clock": table.clock_ms,
        "producers": [
            [entry.producer_id, entry.producer_epoch, entry.last_timestamp] for entry in entries
        ],
        "producer_batches": [
            [
                entry.producer_id,
                topic,
                partition,
                batch.first_sequence,
                batch.last_sequence,
                batch.base_offset,
                batch.last_offset,
                batch.timestamp,
            ]
            for entry in entries
            for (topic, partition), batches in sorted(entry.batches.items())
            for batch in batches
        ],
    }


def decode_producers(body: dict[str, Any]) -> ProducerTable:
    """Rebuild the table :func:`encode_producers` encoded; raise ValueError if malformed."""
    table = ProducerTable(
        next_producer_id=_int(body.get("next_producer_id"), "next_producer_id"),
        clock_ms=_int(body.get("producer_clock"), "producer_clock"),
    )
    for row in _typed_rows(body.get("producers"), "producers", (int, int, int)):
        producer_id, producer_epoch, last_timestamp = row
        table.producers[producer_id] = ProducerEntry(producer_id, producer_epoch, last_timestamp)

    batch_row = (int, str, int, int, int, int, int, int)
    for row in _typed_rows(body.get("producer_batches"), "producer_batches", batch_row):
        producer_id, topic, partition, *numbers = row
        entry = table.producers.get(producer_id)
        if entry is None:
            raise ValueError(f"producer_batches names producer id {producer_id} with no entry")
        entry.batches.setdefault((topic, partition), []).append(BatchSequence(*numbers))
    return table


def _int(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"state field {name!r} must be an int, got {value!r}")
    return value


def _typed_rows(value: Any, name: str, types: tuple[type, ...]) -> list[list[Any]]:
    if not isinstance(value, list):
        raise ValueError(f"state field {name!r} must be an array, got {type(value).__name__}")
    for row in value:
        if not (
            isinstance(row, list)
            and len(row) == len(types)
            and all(
                isinstance(item, kind) and not isinstance(item, bool)
                for item, kind in zip(row, types, strict=True)
            )
        ):
            raise ValueError(f"state field {name!r} has a malformed row {row!r}")
    return value
