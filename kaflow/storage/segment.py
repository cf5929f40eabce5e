"""One segment of a partition log: a ``.log`` file of batches and its two indexes.

A segment is named by its base offset, the offset of its first record,
written as 20 zero-padded digits (``00000000000000000042.log``), so file
names sort in offset order. Its ``.index`` and ``.timeindex`` files are
described in :mod:`kaflow.storage.index`.

The mutable facts about a segment (its size, next offset, index entry
counts) live in one immutable :class:`SegmentState`. The writer builds a new
state after its writes complete, and the log publishes it by replacing
``Segment.state``. A reader that reads ``state`` once therefore gets sizes and
counts that only cover bytes already written.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from kaflow.storage.batch import BATCH_HEADER_SIZE, BatchHeader, read_batch_header
from kaflow.storage.errors import CorruptLogError
from kaflow.storage.files import FileCache
from kaflow.storage.index import OFFSET_ENTRY, TIME_ENTRY, IndexFile
from kaflow.storage.scan import scan_headers

__all__ = [
    "INDEX_SUFFIX",
    "LOG_SUFFIX",
    "MAX_RELATIVE_OFFSET",
    "TIME_INDEX_SUFFIX",
    "IndexEntries",
    "Segment",
    "SegmentState",
    "plan_index_entries",
    "segment_name",
]

LOG_SUFFIX = ".log"
INDEX_SUFFIX = ".index"
TIME_INDEX_SUFFIX = ".timeindex"
# Index entries store offsets relative to the base offset as u32.
MAX_RELATIVE_OFFSET = 2**32 - 1


def segment_name(base_offset: int) -> str:
    return f"{base_offset:020d}"


@dataclass(frozen=True, slots=True)
class SegmentState:
    """A consistent snapshot of a segment's size, offsets and index counts."""

    # Bytes of whole batches in the .log file.
    size: int
    # Offset after the segment's last record; the base offset when empty.
    next_offset: int
    # first_timestamp of the first batch, None when empty.
    first_timestamp: int | None
    # Largest record timestamp in the segment, None when empty.
    max_timestamp: int | None
    index_entries: int
    time_index_entries: int
    # Timestamp of the last time index entry, None when the time index is empty.
    last_indexed_timestamp: int | None
    # Bytes appended since the last offset index entry (since byte 0 if none).
    bytes_since_index: int

    @classmethod
    def empty(cls, base_offset: int) -> SegmentState:
        return cls(
            size=0,
            next_offset=base_offset,
            first_timestamp=None,
            max_timestamp=None,
            index_entries=0,
            time_index_entries=0,
            last_indexed_timestamp=None,
            bytes_since_index=0,
        )


@dataclass(frozen=True, slots=True)
class IndexEntries:
    """The index entries to write for one appended batch, if any."""

    offset_entry: tuple[int, int] | None
    time_entry: tuple[int, int] | None


def plan_index_entries(
    state: SegmentState,
    base_offset: int,
    position: int,
    header: BatchHeader,
    index_interval_bytes: int,
) -> tuple[SegmentState, IndexEntries]:
    """Return the state after appending ``header``'s batch at ``position``, and its index entries.

    Appends and index rebuilds both use this function, so a rebuilt index
    has the entries the appends would have written under the same interval.
    """
    max_timestamp = header.max_timestamp
    if state.max_timestamp is not None:
        max_timestamp = max(max_timestamp, state.max_timestamp)

    offset_entry: tuple[int, int] | None = None
    time_entry: tuple[int, int] | None = None
    bytes_since_index = state.bytes_since_index + header.length
    if position > 0 and state.bytes_since_index >= index_interval_bytes:
        offset_entry = (header.base_offset - base_offset, position)
        bytes_since_index = header.length
        if state.last_indexed_timestamp is None or max_timestamp > state.last_indexed_timestamp:
            time_entry = (max_timestamp, header.last_offset - base_offset)

    new_state = SegmentState(
        size=position + header.length,
        next_offset=header.next_offset,
        first_timestamp=(
            header.first_timestamp if state.first_timestamp is None else state.first_timestamp
        ),
        max_timestamp=max_timestamp,
        index_entries=state.index_entries + (offset_entry is not None),
        time_index_entries=state.time_index_entries + (time_entry is not None),
        last_indexed_timestamp=(
            time_entry[0] if time_entry is not None else state.last_indexed_timestamp
        ),
        bytes_since_index=bytes_since_index,
    )
    return new_state, IndexEntries(offset_entry, time_entry)


def final_time_entry(state: SegmentState, base_offset: int) -> tuple[int, int] | None:
    """Return the time index entry that records a closed segment's max timestamp, if needed."""
    if state.max_timestamp is None:
        return None
    if state.last_indexed_timestamp is not None and (
        state.max_timestamp <= state.last_indexed_timestamp
    ):
        return None
    return (state.max_timestamp, state.next_offset - 1 - base_offset)


class Segment:
    """The files of one segment and its published :class:`SegmentState`."""

    def __init__(
        self, directory: Path, base_offset: int, files: FileCache, state: SegmentState
    ) -> None:
        self.base_offset = base_offset
        self.files = files
        name = segment_name(base_offset)
        self.log_path = directory / (name + LOG_SUFFIX)
        self.offset_index = IndexFile(directory / (name + INDEX_SUFFIX), OFFSET_ENTRY, files)
        self.time_index = IndexFile(directory / (name + TIME_INDEX_SUFFIX), TIME_ENTRY, files)
        self.state = state

    def __repr__(self) -> str:
        return f"Segment({self.log_path}, next_offset={self.state.next_offset})"

    @property
    def paths(self) -> tuple[Path, Path, Path]:
        return (self.log_path, self.offset_index.path, self.time_index.path)

    @classmethod
    def create(cls, directory: Path, base_offset: int, files: FileCache) -> Segment:
        """Create the empty files of a new segment, replacing any stale ones."""
        segment = cls(directory, base_offset, files, SegmentState.empty(base_offset))
        for path in segment.paths:
            with files.lease(path, writable=True) as fd:
                os.ftruncate(fd, 0)
        return segment

    def append(self, batch: bytes, header: BatchHeader, index_interval_bytes: int) -> SegmentState:
        """Write ``batch`` after the published end and return the state to publish.

        The caller publishes the returned state once this returns, so
        readers never see the batch before it is completely written.
        """
        state = self.state
        with self.files.lease(self.log_path, writable=True) as fd:
            view = memoryview(batch)
            written = 0
            while written < len(view):
                count = os.pwrite(fd, view[written:], state.size + written)
                if count == 0:
                    raise OSError(f"pwrite to {self.log_path} wrote 0 bytes")
                written += count

        new_state, entries = plan_index_entries(
            state, self.base_offset, state.size, header, index_interval_bytes
        )
        if entries.offset_entry is not None:
            self.offset_index.append(state.index_entries, *entries.offset_entry)
        if entries.time_entry is not None:
            self.time_index.append(state.time_index_entries, *entries.time_entry)
        return new_state

    def close_for_roll(self) -> SegmentState:
        """Record the max timestamp in the time index; return the state to publish."""
        state = self.state
        entry = final_time_entry(state, self.base_offset)
        if entry is None:
            return state
        self.time_index.append(state.time_index_entries, *entry)
        return replace(
            state,
            time_index_entries=state.time_index_entries + 1,
            last_indexed_timestamp=entry[0],
        )

    def read_header(self, position: int) -> BatchHeader:
        with self.files.lease(self.log_path) as fd:
            data = os.pread(fd, BATCH_HEADER_SIZE, position)
        return read_batch_header(data)

    def index_position(self, offset: int, state: SegmentState) -> tuple[int, int]:
        """Return (base offset, position) of an indexed batch at or before ``offset``.

        Falls back to the segment start when no entry is at or below
        ``offset``. The batch header at the returned position is checked, so
        a corrupt index raises CorruptLogError instead of misplacing a read.
        """
        relative = offset - self.base_offset
        if relative <= 0 or state.index_entries == 0:
            return self.base_offset, 0
        found = self.offset_index.search(state.index_entries, lambda entry: entry[0] <= relative)
        if found == 0:
            return self.base_offset, 0

        entry_relative, position = self.offset_index.read(found - 1)
        entry_offset = self.base_offset + entry_relative
        if position >= state.size or self.read_header(position).base_offset != entry_offset:
            raise CorruptLogError(
                f"offset index {self.offset_index.path} maps offset {entry_offset} to byte "
                f"{position}, where no batch with that base offset starts; delete the index "
                "file and reopen the log to rebuild it",
                path=str(self.offset_index.path),
            )
        return entry_offset, position

    def find_batch(self, offset: int, state: SegmentState) -> tuple[int, BatchHeader] | None:
        """Return the position and header of the first batch whose records reach ``offset``.

        That is the batch containing ``offset``, or the next one when no batch
        contains it. None when the segment has no such batch.
        """
        _, start = self.index_position(offset, state)
        for position, header in scan_headers(self.files, self.log_path, start, state.size):
            if header.next_offset > offset:
                return position, header
        return None

    def iter_headers(self, start: int, state: SegmentState) -> Iterator[tuple[int, BatchHeader]]:
        return scan_headers(self.files, self.log_path, start, state.size)

    def start_offset_for_timestamp(self, timestamp: int, state: SegmentState) -> int:
        """Return an offset such that no record before it has a timestamp >= ``timestamp``."""
        found = self.time_index.search(state.time_index_entries, lambda entry: entry[0] < timestamp)
        if found == 0:
            return self.base_offset
        _, relative = self.time_index.read(found - 1)
        return self.base_offset + relative + 1

    def read_bytes(self, start: int, end: int) -> bytes:
        with self.files.lease(self.log_path) as fd:
            data = os.pread(fd, end - start, start)
        if len(data) != end - start:
            raise CorruptLogError(
                f"segment {self.log_path} ends at byte {start + len(data)}, before byte {end} "
                "that the log has published",
                path=str(self.log_path),
            )
        return data

    def truncate_files(self, state: SegmentState) -> None:
        """Cut the files down to ``state``'s size and entry counts."""
        with self.files.lease(self.log_path, writable=True) as fd:
            os.ftruncate(fd, state.size)
        self.offset_index.truncate(state.index_entries)
        self.time_index.truncate(state.time_index_entries)

    def delete_files(self) -> None:
        """Delete the segment's files; a file that is already gone is skipped."""
        for path in self.paths:
            path.unlink(missing_ok=True)
            self.files.evict(path)
