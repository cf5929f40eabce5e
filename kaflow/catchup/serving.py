"""Serve raw record batches to a peer that is filling a gap, and guard local reads.

:func:`read_batches_for_peer` returns whole batches from this node's log,
byte for byte as stored, starting with the batch that contains the
requested offset. It never returns a batch past this node's replicated end
offset or past its own local log end, so everything it sends is committed.

:func:`check_local_range` is the read-side rule: a read of offsets the
replicated state has but the local log does not yet hold fails with the
retriable ReplicaNotAvailableError, never with empty or wrong data.
"""

from __future__ import annotations

from dataclasses import dataclass

from kaflow.errors import (
    InvalidOffsetError,
    OffsetOutOfRangeError,
    ReplicaNotAvailableError,
    UnknownPartitionError,
    UnknownTopicError,
)
from kaflow.replication.state import PartitionState
from kaflow.replication.state_machine import StateMachine
from kaflow.storage.batch import BATCH_HEADER_SIZE, read_batch_header
from kaflow.storage.log import PartitionLog
from kaflow.storage.manager import LogManager
from kaflow.storage.scrub import check_batch_chain

__all__ = [
    "BATCHES_PATH",
    "HEADER_HIGH_WATERMARK",
    "HEADER_LOG_END_OFFSET",
    "HEADER_LOG_START_OFFSET",
    "HEADER_TOPIC_ID",
    "PeerBatches",
    "check_local_lookup",
    "check_local_range",
    "read_batches_for_peer",
]

# The internal endpoint's path and the response headers that carry PeerBatches' offsets.
BATCHES_PATH = "/internal/v1/partitions/{topic}/{partition}/batches"
HEADER_LOG_START_OFFSET = "Kaflow-Log-Start-Offset"
HEADER_LOG_END_OFFSET = "Kaflow-Log-End-Offset"
HEADER_HIGH_WATERMARK = "Kaflow-High-Watermark"
HEADER_TOPIC_ID = "Kaflow-Topic-Id"


@dataclass(frozen=True, slots=True)
class PeerBatches:
    """Batches for a peer, with this node's view of the partition.

    ``log_end_offset`` is the end of the local log, ``high_watermark`` the
    replicated end offset; the first is lower while this node has a gap.
    ``topic_id`` identifies the topic incarnation (the Raft index of its
    create_topic command), so a peer never copies records of another one.
    """

    data: bytes
    log_start_offset: int
    log_end_offset: int
    high_watermark: int
    topic_id: int


def read_batches_for_peer(
    state: StateMachine, logs: LogManager, topic: str, partition: int, offset: int, max_bytes: int
) -> PeerBatches:
    """Read whole batches from ``offset`` up to ``max_bytes`` (at least one batch).

    Returns empty data at or past the served end. Raises UnknownTopicError,
    UnknownPartitionError, InvalidOffsetError for a negative offset,
    OffsetOutOfRangeError (with ``log_start_offset`` in its details) below
    the local log start, and CorruptBatchError when a stored batch fails its
    CRC-32C or offset chain check.
    """
    found = state.topic(topic)
    if found is None:
        raise UnknownTopicError(f"topic {topic!r} not found on this node", topic=topic)
    offsets = state.partition(topic, partition)
    try:
        log = logs.get(topic, partition)
    except KeyError:
        log = None
    if offsets is None or log is None:
        raise UnknownPartitionError(
            f"partition {partition} of topic {topic!r} not found on this node",
            topic=topic,
            partition=partition,
        )
    if offset < 0:
        raise InvalidOffsetError(f"offset {offset} is negative", offset=offset)

    local_end = log.log_end_offset
    served_end = min(local_end, offsets.log_end_offset)
    log_start = log.log_start_offset
    if offset < log_start:
        raise OffsetOutOfRangeError(
            f"offset {offset} is below the log start offset {log_start} of partition "
            f"{topic}-{partition} on this node; copy from the log start offset instead",
            offset=offset,
            log_start_offset=log_start,
            high_watermark=offsets.log_end_offset,
        )
    data = b"" if offset >= served_end else _batches_below(log.read(offset, max_bytes), served_end)
    # The receiver verifies too, but damaged bytes must not leave this node at all.
    check_batch_chain(data, offset, f"{topic}-{partition}")
    return PeerBatches(data, log_start, local_end, offsets.log_end_offset, found.created_index)


def _batches_below(data: bytes, end_offset: int) -> bytes:
    """Cut ``data`` after the last whole batch that ends at or below ``end_offset``."""
    position = 0
    while len(data) - position >= BATCH_HEADER_SIZE:
        header = read_batch_header(data, position)
        if header.next_offset > end_offset or header.length > len(data) - position:
            break
        position += header.length
    return data[:position]


def check_local_range(
    topic: str, partition: int, offset: int, offsets: PartitionState, log: PartitionLog
) -> None:
    """Raise ReplicaNotAvailableError if ``offset`` is replicated but not yet in the local log.

    ``offsets`` is the replicated state of the partition and ``offset``
    already lies within it.
    """
    local_start = log.log_start_offset
    local_end = log.log_end_offset
    missing_tail = local_end <= offset < offsets.log_end_offset
    missing_head = offsets.log_start_offset <= offset < local_start
    if missing_tail or missing_head:
        raise ReplicaNotAvailableError(
            f"this node has not yet copied offset {offset} of partition {topic}-{partition} "
            f"from another member (its local log holds {local_start} to {local_end}, the "
            f"partition {offsets.log_start_offset} to {offsets.log_end_offset}); retry "
            "shortly or read from another member",
            topic=topic,
            partition=partition,
            offset=offset,
            local_log_start_offset=local_start,
            local_log_end_offset=local_end,
        )


def check_local_lookup(
    topic: str,
    partition: int,
    found: tuple[int, int] | None,
    offsets: PartitionState,
    log: PartitionLog,
) -> None:
    """Raise ReplicaNotAvailableError if a time lookup's answer may lie in missing records.

    ``found`` is the local log's answer. It is final only when no missing
    record could come before it: none is missing at the head, and it was
    found below the local log end or nothing is missing at the tail.
    """
    missing_head = log.log_start_offset > offsets.log_start_offset
    missing_tail = log.log_end_offset < offsets.log_end_offset
    found_locally = found is not None and found[0] < log.log_end_offset
    if missing_head or (missing_tail and not found_locally):
        raise ReplicaNotAvailableError(
            f"this node has not yet copied every record of partition {topic}-{partition} "
            "from another member, so it cannot answer a time lookup yet; retry shortly or "
            "ask another member",
            topic=topic,
            partition=partition,
            local_log_start_offset=log.log_start_offset,
            local_log_end_offset=log.log_end_offset,
        )
