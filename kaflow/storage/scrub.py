"""Verify stored batches by CRC-32C and offset chain, to find damage that recovery trusts.

Recovery on open reads only the active segment in full, so a flipped byte
in a closed segment stays unnoticed until something reads that batch. This
module checks what was written:

- :func:`find_damage` walks every batch of a captured list of segments and
  returns the first one that fails its CRC-32C, its structure checks or the
  offset chain. The chain requires each batch to start where the previous
  one ended, and each segment where the previous segment ended. The CRC
  does not cover the base offset, so only the chain check catches a
  damaged base offset.
- :func:`check_batch_chain` applies the same checks to bytes about to be
  served, so damaged bytes never leave the node.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kaflow.errors import CorruptBatchError
from kaflow.storage.batch import BATCH_HEADER_SIZE, read_batch_header, verify_batch
from kaflow.storage.scan import scan_batches
from kaflow.storage.segment import Segment, SegmentState

__all__ = ["Damage", "check_batch_chain", "find_damage"]


@dataclass(frozen=True, slots=True)
class Damage:
    """The first damaged batch of a log: every record below ``offset`` passed the checks."""

    # The offset the damaged batch should start at: the end of the verified records.
    offset: int
    # The segment holding the damaged batch and the batch's byte position in it.
    segment_base_offset: int
    position: int
    path: Path
    reason: str


def find_damage(segments: Sequence[Segment], log_start_offset: int) -> Damage | None:
    """Return the first batch in ``segments`` that fails verification, or None.

    Batches wholly below ``log_start_offset`` are chain-checked but not
    CRC-checked, because no read returns them.
    """
    if not segments:
        return None
    expected = segments[0].base_offset
    previous: Segment | None = None
    previous_size = 0
    for segment in segments:
        # The state is read once: appends may publish a newer one meanwhile.
        state = segment.state
        if segment.base_offset != expected and previous is not None:
            return Damage(
                expected,
                previous.base_offset,
                previous_size,
                previous.log_path,
                f"the segment ends at offset {expected} but the next one starts at offset "
                f"{segment.base_offset}",
            )
        damage = _find_segment_damage(segment, state, expected, log_start_offset)
        if damage is not None:
            return damage
        expected = state.next_offset
        previous = segment
        previous_size = state.size
    return None


def _find_segment_damage(
    segment: Segment, state: SegmentState, expected: int, log_start_offset: int
) -> Damage | None:
    end = 0
    index = _IndexWalk(segment, state)
    try:
        for position, batch in scan_batches(segment.files, segment.log_path, 0, state.size):
            header = read_batch_header(batch)
            index_problem = index.check(position, header.base_offset)
            if index_problem is not None:
                return _index_damage(segment, index_problem)
            if header.base_offset != expected:
                return _damage(
                    segment,
                    expected,
                    position,
                    f"batch has base offset {header.base_offset}, expected {expected}",
                )
            if header.next_offset > log_start_offset:
                verify_batch(batch)
            expected = header.next_offset
            end = position + header.length
    except CorruptBatchError as exc:
        return _damage(segment, expected, end, exc.message)
    if end != state.size:
        return _damage(
            segment,
            expected,
            end,
            f"{state.size - end} bytes at the end of the segment are not a whole batch",
        )
    index_problem = index.finish()
    if index_problem is not None:
        return _index_damage(segment, index_problem)
    if expected != state.next_offset:
        return _damage(
            segment,
            expected,
            end,
            f"the batches end at offset {expected} but the segment should end at "
            f"offset {state.next_offset}",
        )
    return None


def _damage(segment: Segment, offset: int, position: int, reason: str) -> Damage:
    return Damage(offset, segment.base_offset, position, segment.log_path, reason)


def _index_damage(segment: Segment, reason: str) -> Damage:
    # A bad index loses no record, but reads through it fail. Cutting the log
    # at the segment start drops the index with the segment, and the catch-up
    # copies the segment's records again with a fresh index.
    return Damage(segment.base_offset, segment.base_offset, 0, segment.offset_index.path, reason)


class _IndexWalk:
    """Checks, in step with a batch walk, that each offset index entry names a batch start."""

    def __init__(self, segment: Segment, state: SegmentState) -> None:
        self._base_offset = segment.base_offset
        self._entries = segment.offset_index.read_all(state.index_entries)
        self._next = 0

    def check(self, position: int, base_offset: int) -> str | None:
        """Return a problem with the entries up to the batch at ``position``, or None."""
        while self._next < len(self._entries):
            relative, entry_position = self._entries[self._next]
            if entry_position > position:
                return None
            self._next += 1
            if entry_position < position or self._base_offset + relative != base_offset:
                return (
                    f"offset index entry {self._next - 1} maps offset "
                    f"{self._base_offset + relative} to byte {entry_position}, where no batch "
                    "with that base offset starts"
                )
        return None

    def finish(self) -> str | None:
        """Return a problem if entries point past the last batch, or None."""
        if self._next < len(self._entries):
            return f"offset index entry {self._next} points past the last batch of the segment"
        return None


def check_batch_chain(data: bytes, offset: int, log_name: str) -> None:
    """Raise CorruptBatchError unless ``data`` is whole, CRC-valid batches covering ``offset`` on.

    The first batch must contain ``offset`` and each later batch must start
    where the one before it ended. Empty ``data`` passes.
    """
    view = memoryview(data)
    position = 0
    expected: int | None = None
    while position < len(view):
        if len(view) - position < BATCH_HEADER_SIZE:
            raise CorruptBatchError(
                f"stored data of partition log {log_name} ends inside a batch header at "
                f"byte {position}",
                offset=offset,
            )
        header = read_batch_header(view, position)
        if expected is None and not header.base_offset <= offset < header.next_offset:
            raise CorruptBatchError(
                f"partition log {log_name} returned a batch with offsets {header.base_offset} "
                f"to {header.last_offset} for a read at offset {offset}",
                offset=offset,
                base_offset=header.base_offset,
            )
        if expected is not None and header.base_offset != expected:
            raise CorruptBatchError(
                f"partition log {log_name} has a batch with base offset {header.base_offset} "
                f"where offset {expected} should start",
                offset=expected,
                base_offset=header.base_offset,
            )
        if header.length > len(view) - position:
            raise CorruptBatchError(
                f"stored data of partition log {log_name} ends inside the batch at offset "
                f"{header.base_offset}",
                offset=header.base_offset,
            )
        verify_batch(view[position : position + header.length])
        expected = header.next_offset
        position += header.length
