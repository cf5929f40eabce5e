"""Verify batches copied from a peer and append them to a partition log with a gap.

A peer responds to a back-fill request with whole record batches, byte for
byte as its log stores them (see :mod:`.serving`). Before any of them is
appended, every batch must pass two checks:

- its CRC-32C (:func:`kaflow.storage.batch.verify_batch`), which covers
  every byte after the CRC field;
- offset continuity: the first batch starts at the local log end and each
  later one starts where the one before it ended. The CRC does not cover
  the base offset, so only this check catches a skipped or repeated batch.

A response that fails either check is rejected as a whole and nothing is
appended. Batches that end past the replicated end offset are left for a
later request, because this node has not applied them yet.

The one exception to "the first batch starts at the local log end" is an
empty log whose log start lies inside a batch, which happens after a
delete-records request: the log then restarts at that batch's base offset,
and the log start is moved back to where it was after the append.
"""

from __future__ import annotations

from dataclasses import dataclass

from kaflow.catchup.reconcile import restart_log_at
from kaflow.errors import CorruptBatchError, StorageError
from kaflow.storage.batch import BatchHeader, read_batch_header, verify_batch
from kaflow.storage.manager import LogManager

__all__ = ["BackfillProgress", "append_fetched_batches", "split_fetched_batches"]


@dataclass(frozen=True, slots=True)
class BackfillProgress:
    """Counts of one back-fill step; ``next_offset`` is the local log end afterwards."""

    batches: int
    records: int
    bytes: int
    next_offset: int


def split_fetched_batches(
    data: bytes, from_offset: int, end_offset: int, realign: bool = False
) -> list[tuple[BatchHeader, bytes]]:
    """Check ``data`` from a peer and return its batches that end at or below ``end_offset``.

    With ``realign`` the first batch may start below ``from_offset`` if it
    contains it. Raises CorruptBatchError when a batch is cut off, fails
    its CRC-32C, or does not continue the offsets before it.
    """
    accepted: list[tuple[BatchHeader, bytes]] = []
    expected = from_offset
    position = 0
    while position < len(data):
        header = read_batch_header(data, position)
        if header.length > len(data) - position:
            raise CorruptBatchError(
                f"the peer's response ends inside a batch: {len(data) - position} of "
                f"{header.length} bytes at offset {header.base_offset}; the request is retried",
                base_offset=header.base_offset,
            )
        starts_ok = header.base_offset == expected or (
            realign and not accepted and header.base_offset < expected <= header.last_offset
        )
        if not starts_ok:
            raise CorruptBatchError(
                f"the peer sent a batch at offset {header.base_offset} but the next offset "
                f"expected is {expected}; batches must follow each other without a gap",
                base_offset=header.base_offset,
                expected_offset=expected,
            )
        if header.next_offset > end_offset:
            break
        batch = data[position : position + header.length]
        verify_batch(batch)
        accepted.append((header, batch))
        expected = header.next_offset
        position += header.length
    return accepted


def append_fetched_batches(
    logs: LogManager, topic: str, partition: int, data: bytes, end_offset: int
) -> BackfillProgress:
    """Verify ``data`` and append its batches at the partition's local log end.

    ``end_offset`` is the replicated end offset; batches past it are not
    appended. The caller holds the gap tracker's lock. Raises
    CorruptBatchError (nothing appended) for data that fails the checks.
    """
    log = logs.get(topic, partition)
    from_offset = log.log_end_offset
    realign = log.log_start_offset == from_offset
    accepted = split_fetched_batches(data, from_offset, end_offset, realign)
    if not accepted:
        return BackfillProgress(0, 0, 0, from_offset)

    first_base = accepted[0][0].base_offset
    if first_base != from_offset:
        log = restart_log_at(logs, topic, partition, log.config, first_base)

    records = 0
    size = 0
    for header, batch in accepted:
        base_offset, _ = log.append(batch)
        if base_offset != header.base_offset:
            raise StorageError(
                f"partition {topic}-{partition} stored a copied batch at offset {base_offset} "
                f"instead of {header.base_offset}",
                topic=topic,
                partition=partition,
            )
        records += header.record_count
        size += header.length

    if first_base != from_offset:
        log.advance_log_start(from_offset)
    return BackfillProgress(len(accepted), records, size, log.log_end_offset)
