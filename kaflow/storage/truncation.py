"""Cut positions and cut states for truncate_to, computed before any file changes."""

from __future__ import annotations

from dataclasses import replace

from kaflow.errors import StorageError
from kaflow.storage.segment import Segment, SegmentState

__all__ = ["cut_position", "state_cut_at"]


def cut_position(segment: Segment, end_offset: int, log_name: str) -> int:
    """Return the byte position in ``segment`` where offset ``end_offset`` starts.

    Raises StorageError when ``end_offset`` falls inside a batch, because
    cutting there would leave a partial batch.
    """
    state = segment.state
    if end_offset >= state.next_offset:
        return state.size
    located = segment.find_batch(end_offset, state)
    if located is not None and located[1].base_offset == end_offset:
        return located[0]
    where = f"the batch at base offset {located[1].base_offset}" if located else "no batch"
    raise StorageError(
        f"cannot truncate partition log {log_name} to offset {end_offset}: it falls inside "
        f"{where}; truncate to a batch boundary",
        offset=end_offset,
    )


def state_cut_at(segment: Segment, end_offset: int, size: int) -> SegmentState:
    """Return ``segment``'s state cut to ``size`` bytes and to the index entries below
    ``end_offset``.

    Only the size and the entry counts are right; the caller truncates the
    files to them and then rescans the segment for the rest.
    """
    state = segment.state
    relative_end = end_offset - segment.base_offset
    index_entries = segment.offset_index.search(
        state.index_entries, lambda entry: entry[0] < relative_end
    )
    time_index_entries = segment.time_index.search(
        state.time_index_entries, lambda entry: entry[1] < relative_end
    )
    return replace(
        state, size=size, index_entries=index_entries, time_index_entries=time_index_entries
    )
