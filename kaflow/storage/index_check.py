"""Consistency checks of segment indexes during recovery.

A closed segment gets only checks that cost a few reads whatever its size.
The active segment is read in full anyway, so every entry of its indexes is
compared with the batches the scan finds.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from kaflow.storage.batch import BatchHeader
from kaflow.storage.index import IndexFile
from kaflow.storage.segment import Segment

__all__ = ["ActiveIndexCheck", "IndexProblem", "closed_index_problem"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class IndexProblem:
    """The reason the indexes of a closed segment need a rebuild."""

    reason: str
    # The offset index points past the end of the .log file. Either the index
    # is corrupt or the segment lost data, and only a rebuild scan can tell.
    points_past_end: bool = False


def _file_problem(index: IndexFile) -> str | None:
    if not index.path.exists():
        return f"{index.path.name} is missing"
    size = index.size_on_disk()
    if size % index.entry.size:
        return f"{index.path.name} has {size} bytes, not a multiple of {index.entry.size}"
    return None


def closed_index_problem(segment: Segment, size: int, next_base: int) -> IndexProblem | None:
    """Return why the indexes of a closed segment need a rebuild, or None if they look sound."""
    for index in (segment.offset_index, segment.time_index):
        problem = _file_problem(index)
        if problem is not None:
            return IndexProblem(problem)

    count = segment.offset_index.entry_count_on_disk()
    if count:
        first_relative, first_position = segment.offset_index.read(0)
        last_relative, last_position = segment.offset_index.read(count - 1)
        if count > 1 and not (first_relative < last_relative and first_position < last_position):
            return IndexProblem(f"{segment.offset_index.path.name} entries are not increasing")
        if last_position >= size:
            return IndexProblem(
                f"{segment.offset_index.path.name} points to byte {last_position} but the "
                f"segment has {size} bytes",
                points_past_end=True,
            )
        if segment.base_offset + last_relative >= next_base:
            return IndexProblem(
                f"{segment.offset_index.path.name} has an entry for offset "
                f"{segment.base_offset + last_relative}, past the next segment's base "
                f"offset {next_base}"
            )

    count = segment.time_index.entry_count_on_disk()
    if count:
        first_timestamp, first_relative = segment.time_index.read(0)
        last_timestamp, last_relative = segment.time_index.read(count - 1)
        if count > 1 and not (first_timestamp < last_timestamp and first_relative < last_relative):
            return IndexProblem(f"{segment.time_index.path.name} entries are not increasing")
        if segment.base_offset + last_relative >= next_base:
            return IndexProblem(
                f"{segment.time_index.path.name} has an entry for offset "
                f"{segment.base_offset + last_relative}, past the next segment's base "
                f"offset {next_base}"
            )
    return None


class ActiveIndexCheck:
    """Compares the active segment's index entries with the batches found by its scan.

    Call :meth:`observe` for each valid batch in order, then :meth:`finish`,
    which returns the reason the indexes need a rebuild, or None.
    Entries must point at batch starts (offset index) or batch ends with
    the running max timestamp (time index). Entries past the last valid
    batch, left by a torn write, are counted as droppable rather than corrupt.
    """

    def __init__(self, segment: Segment) -> None:
        self._segment = segment
        self.problem: str | None = None
        self._offset_entries = self._load(segment.offset_index)
        self._time_entries = self._load(segment.time_index)
        self.offset_entries_kept = 0
        self.time_entries_kept = 0
        self.last_indexed_timestamp: int | None = None
        self.last_indexed_position = 0

    def _load(self, index: IndexFile) -> list[tuple[int, ...]]:
        if self.problem is not None:
            return []
        self.problem = _file_problem(index)
        if self.problem is not None:
            return []
        return index.read_all(index.entry_count_on_disk())

    def observe(self, position: int, header: BatchHeader, max_timestamp: int) -> None:
        """Check the entries that may refer to the batch at ``position``.

        ``max_timestamp`` is the largest record timestamp up to and including
        this batch.
        """
        if self.problem is None:
            self._observe_offset_entry(position, header)
        if self.problem is None:
            self._observe_time_entry(header, max_timestamp)

    def _observe_offset_entry(self, position: int, header: BatchHeader) -> None:
        index = self.offset_entries_kept
        if index >= len(self._offset_entries):
            return
        relative, entry_position = self._offset_entries[index]
        if entry_position < position:
            self.problem = (
                f"offset index entry {index} points to byte {entry_position}, "
                "which is not the start of a batch"
            )
        elif entry_position == position:
            if self._segment.base_offset + relative != header.base_offset:
                self.problem = (
                    f"offset index entry {index} maps offset "
                    f"{self._segment.base_offset + relative} to byte {position}, where "
                    f"offset {header.base_offset} starts"
                )
                return
            self.offset_entries_kept += 1
            self.last_indexed_position = position

    def _observe_time_entry(self, header: BatchHeader, max_timestamp: int) -> None:
        index = self.time_entries_kept
        if index >= len(self._time_entries):
            return
        timestamp, relative = self._time_entries[index]
        offset = self._segment.base_offset + relative
        if offset < header.last_offset:
            self.problem = (
                f"time index entry {index} names offset {offset}, "
                "which is not the last offset of a batch"
            )
        elif offset == header.last_offset:
            previous = self.last_indexed_timestamp
            if timestamp != max_timestamp or (previous is not None and timestamp <= previous):
                self.problem = (
                    f"time index entry {index} has timestamp {timestamp} at offset {offset}, "
                    f"where the max timestamp so far is {max_timestamp}"
                )
                return
            self.time_entries_kept += 1
            self.last_indexed_timestamp = timestamp

    def finish(self, valid_end: int, next_offset: int) -> str | None:
        """Check the entries no batch matched; return the reason for a rebuild, or None.

        Unmatched entries must all lie past the last valid batch: at or after
        byte ``valid_end`` (offset index) or offset ``next_offset`` (time index).
        """
        if self.problem is not None:
            return self.problem
        for relative, position in self._offset_entries[self.offset_entries_kept :]:
            if position < valid_end:
                return (
                    f"offset index entry for offset {self._segment.base_offset + relative} "
                    f"points to byte {position}, which is not the start of a batch"
                )
        for _, relative in self._time_entries[self.time_entries_kept :]:
            if self._segment.base_offset + relative < next_offset:
                return (
                    f"time index entry for offset {self._segment.base_offset + relative} "
                    "is out of order or not at the last offset of a batch"
                )
        return None

    def drop_entries_past_end(self) -> None:
        """Cut off the entries that point past the last valid batch."""
        dropped_offset = len(self._offset_entries) - self.offset_entries_kept
        dropped_time = len(self._time_entries) - self.time_entries_kept
        if not dropped_offset and not dropped_time:
            return
        logger.warning(
            "dropping index entries past the end of segment path=%s "
            "offset_index_entries=%d time_index_entries=%d",
            self._segment.log_path,
            dropped_offset,
            dropped_time,
        )
        self._segment.offset_index.truncate(self.offset_entries_kept)
        self._segment.time_index.truncate(self.time_entries_kept)
