"""Load the segments of a partition directory, repairing what is safe to repair.

Start-up time must not grow with the amount of data, so closed segments are
trusted. Their index files only get cheap checks: a size that is a multiple
of the entry size, and first and last entries that increase and lie inside
the segment. Then the batches after the last offset index entry are walked
to find where the segment ends. Only the last (active) segment is read in
full and CRC-checked, because it is the one a crash can leave half-written.

What recovery repairs, and what it refuses:

- A torn or corrupt tail of the active segment is cut off and logged at
  WARNING with the bytes kept and dropped.
- A missing or corrupt index is rebuilt from its segment. An offset index
  that points past the end of its closed segment is rebuilt only when the
  segment's batches turn out whole and reach the next segment.
- A gap between one segment's end and the next segment's base offset
  raises CorruptLogError naming the file. So does a closed segment that is
  shorter than its index or ends in a partial batch. Serving such a log
  would hide lost records, so its index files are left as they were.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
from dataclasses import replace
from pathlib import Path

from kaflow.storage.batch import BatchHeader, read_batch_header, verify_batch
from kaflow.storage.checkpoint import CHECKPOINT_FILE
from kaflow.storage.errors import CorruptBatchError, CorruptLogError
from kaflow.storage.files import FileCache
from kaflow.storage.index_check import ActiveIndexCheck, closed_index_problem
from kaflow.storage.scan import scan_batches, scan_headers
from kaflow.storage.segment import (
    LOG_SUFFIX,
    Segment,
    SegmentState,
    final_time_entry,
    plan_index_entries,
)

__all__ = ["list_segment_bases", "load_segments", "rebuild_indexes", "recover_segment"]

logger = logging.getLogger(__name__)

_SEGMENT_FILE = re.compile(r"^(\d{20})(\.log|\.index|\.timeindex)$")


def list_segment_bases(directory: Path) -> list[int]:
    """Return the base offsets of the ``.log`` files in ``directory``, sorted.

    Leftover ``*.tmp`` files of interrupted atomic writes and index files
    without a ``.log`` file are deleted. Unknown files are left alone and
    logged.
    """
    logs: set[int] = set()
    indexes: list[tuple[int, Path]] = []
    for path in directory.iterdir():
        match = _SEGMENT_FILE.match(path.name)
        if match is not None and match.group(2) == LOG_SUFFIX:
            logs.add(int(match.group(1)))
        elif match is not None:
            indexes.append((int(match.group(1)), path))
        elif path.name.endswith(".tmp"):
            logger.info("deleting leftover temporary file path=%s", path)
            path.unlink()
        elif path.name != CHECKPOINT_FILE:
            logger.warning("ignoring unexpected file in partition directory path=%s", path)

    for base_offset, path in indexes:
        if base_offset not in logs:
            logger.warning("deleting index file without a segment path=%s", path)
            path.unlink()
    return sorted(logs)


def load_segments(
    directory: Path, files: FileCache, index_interval_bytes: int, *, cut_damaged: bool = False
) -> list[Segment]:
    """Load every segment in ``directory``; the last one is recovered as the active segment.

    A closed segment that fails its checks raises CorruptLogError, unless
    ``cut_damaged`` is set. Then every later segment is deleted and the
    damaged one is recovered like an active segment, which cuts it at its
    first invalid batch, so the log ends before the damage.
    """
    bases = list_segment_bases(directory)
    segments: list[Segment] = []
    for position, (base_offset, next_base) in enumerate(itertools.pairwise(bases)):
        try:
            segments.append(
                _load_closed(directory, base_offset, next_base, files, index_interval_bytes)
            )
        except CorruptLogError as exc:
            if not cut_damaged:
                raise
            _delete_later_segments(directory, files, bases[position + 1 :], exc)
            bases = bases[: position + 1]
            break
    if bases:
        active = Segment(directory, bases[-1], files, SegmentState.empty(bases[-1]))
        active.state = recover_segment(active, index_interval_bytes)
        segments.append(active)
    return segments


def _delete_later_segments(
    directory: Path, files: FileCache, bases: list[int], exc: CorruptLogError
) -> None:
    logger.warning(
        "cutting partition log before a damaged segment, the lost records are copied from "
        "another member path=%s deleted_segments=%d reason=%s",
        exc.details.get("path", directory),
        len(bases),
        exc.message,
    )
    for base_offset in bases:
        Segment(directory, base_offset, files, SegmentState.empty(base_offset)).delete_files()


def rebuild_indexes(
    segment: Segment,
    size: int,
    index_interval_bytes: int,
    *,
    closed: bool,
    next_base: int | None = None,
) -> SegmentState:
    """Rewrite both indexes of ``segment`` from its first ``size`` bytes; return its state.

    A closed segment also gets the final time index entry with its max
    timestamp. Raises CorruptLogError, before writing anything, when the
    bytes are not a chain of whole batches with consecutive offsets, or when
    they do not end at ``next_base`` (the next segment's base offset).
    """
    state = SegmentState.empty(segment.base_offset)
    offset_data = bytearray()
    time_data = bytearray()
    try:
        for position, header in scan_headers(segment.files, segment.log_path, 0, size):
            _check_chain(segment, position, header, state.next_offset)
            state, entries = plan_index_entries(
                state, segment.base_offset, position, header, index_interval_bytes
            )
            if entries.offset_entry is not None:
                offset_data += segment.offset_index.entry.pack(*entries.offset_entry)
            if entries.time_entry is not None:
                time_data += segment.time_index.entry.pack(*entries.time_entry)
    except CorruptBatchError as exc:
        raise CorruptLogError(
            f"segment {segment.log_path} has an invalid batch after byte {state.size}: {exc}",
            path=str(segment.log_path),
        ) from exc
    _check_whole(segment, state.size, size)
    if next_base is not None:
        _check_reaches(segment, state.next_offset, next_base)

    if closed:
        entry = final_time_entry(state, segment.base_offset)
        if entry is not None:
            time_data += segment.time_index.entry.pack(*entry)
            state = replace(
                state,
                time_index_entries=state.time_index_entries + 1,
                last_indexed_timestamp=entry[0],
            )

    segment.offset_index.replace_all(bytes(offset_data))
    segment.time_index.replace_all(bytes(time_data))
    return state


def _check_chain(segment: Segment, position: int, header: BatchHeader, expected: int) -> None:
    if header.base_offset != expected:
        raise CorruptLogError(
            f"segment {segment.log_path} has a batch with base offset {header.base_offset} "
            f"at byte {position}, expected {expected}",
            path=str(segment.log_path),
        )


def _check_whole(segment: Segment, end: int, size: int) -> None:
    if end != size:
        raise CorruptLogError(
            f"closed segment {segment.log_path} ends with {size - end} bytes of a partial "
            f"batch at byte {end}; restore the file from a replica or delete this and every "
            "later segment to truncate the log there",
            path=str(segment.log_path),
        )


def _load_closed(
    directory: Path, base_offset: int, next_base: int, files: FileCache, interval: int
) -> Segment:
    segment = Segment(directory, base_offset, files, SegmentState.empty(base_offset))
    size = segment.log_path.stat().st_size
    problem = closed_index_problem(segment, size, next_base)
    state = _load_closed_tail(segment, size) if problem is None else None
    if state is not None:
        _check_reaches(segment, state.next_offset, next_base)
        segment.state = state
        return segment

    reason = problem.reason if problem else "the last offset index entry points at no batch"
    logger.warning("rebuilding indexes of segment path=%s reason=%s", segment.log_path, reason)
    try:
        segment.state = rebuild_indexes(segment, size, interval, closed=True, next_base=next_base)
    except CorruptLogError as exc:
        if problem is None or not problem.points_past_end:
            raise
        raise CorruptLogError(
            f"closed segment {segment.log_path} is shorter than its offset index indicates "
            f"({reason}) and its batches are incomplete, so it has lost data; restore it "
            f"from a replica. Scan result: {exc.message}",
            path=str(segment.log_path),
            size=size,
        ) from exc
    return segment


def _check_reaches(segment: Segment, next_offset: int, next_base: int) -> None:
    """Raise CorruptLogError unless a closed segment ends where the next one starts."""
    if next_offset == next_base:
        return
    raise CorruptLogError(
        f"segment {segment.log_path} ends at offset {next_offset} but the next segment "
        f"starts at offset {next_base}, so offsets {min(next_offset, next_base)} to "
        f"{max(next_offset, next_base) - 1} are missing or stored twice; restore the "
        "missing segment file from a replica",
        path=str(segment.log_path),
        next_offset=next_offset,
        next_base_offset=next_base,
    )


def _load_closed_tail(segment: Segment, size: int) -> SegmentState | None:
    """Walk the batches after the last offset index entry and return the segment's state.

    Returns None when that entry does not point at a batch with its offset,
    which means the index is corrupt.
    """
    index_entries = segment.offset_index.entry_count_on_disk()
    time_entries = segment.time_index.entry_count_on_disk()
    start_offset, start = segment.base_offset, 0
    if index_entries:
        relative, start = segment.offset_index.read(index_entries - 1)
        start_offset += relative
    last_indexed: int | None = None
    if time_entries:
        last_indexed = segment.time_index.read(time_entries - 1)[0]

    max_timestamp = last_indexed
    next_offset = start_offset
    end = start
    try:
        for position, header in scan_headers(segment.files, segment.log_path, start, size):
            if header.base_offset != next_offset:
                if position == start:
                    return None
                _check_chain(segment, position, header, next_offset)
            next_offset = header.next_offset
            end = position + header.length
            if max_timestamp is None or header.max_timestamp > max_timestamp:
                max_timestamp = header.max_timestamp
    except CorruptBatchError as exc:
        if end == start and index_entries:
            return None
        raise CorruptLogError(
            f"closed segment {segment.log_path} has an invalid batch at byte {end}: {exc}",
            path=str(segment.log_path),
        ) from exc
    if end == start and index_entries:
        return None
    _check_whole(segment, end, size)

    first_timestamp = None
    if size > 0:
        first_timestamp = segment.read_header(0).first_timestamp
    return SegmentState(
        size=size,
        next_offset=next_offset,
        first_timestamp=first_timestamp,
        max_timestamp=max_timestamp,
        index_entries=index_entries,
        time_index_entries=time_entries,
        last_indexed_timestamp=last_indexed,
        bytes_since_index=size - start,
    )


def recover_segment(segment: Segment, index_interval_bytes: int) -> SegmentState:
    """Scan and CRC-check all of ``segment`` as the active segment; return its state.

    A torn or corrupt tail is cut off and logged at WARNING. Indexes that
    disagree with the batches are rebuilt; entries past the last valid
    batch are dropped.
    """
    files = segment.files
    base_offset = segment.base_offset
    size = segment.log_path.stat().st_size
    check = ActiveIndexCheck(segment)

    valid_end = 0
    next_offset = base_offset
    first_timestamp: int | None = None
    max_timestamp: int | None = None
    reason = ""
    try:
        for position, batch in scan_batches(files, segment.log_path, 0, size):
            header = read_batch_header(batch)
            verify_batch(batch)
            if header.base_offset != next_offset:
                reason = (
                    f"batch at byte {position} has base offset {header.base_offset}, "
                    f"expected {next_offset}"
                )
                break
            if first_timestamp is None:
                first_timestamp = header.first_timestamp
            if max_timestamp is None or header.max_timestamp > max_timestamp:
                max_timestamp = header.max_timestamp
            check.observe(position, header, max_timestamp)
            valid_end = position + header.length
            next_offset = header.next_offset
    except CorruptBatchError as exc:
        reason = str(exc)
    if valid_end < size:
        _drop_tail(segment, valid_end, size, reason or "the last batch is incomplete")

    problem = check.finish(valid_end, next_offset)
    if problem is not None:
        logger.warning("rebuilding indexes of segment path=%s reason=%s", segment.log_path, problem)
        return rebuild_indexes(segment, valid_end, index_interval_bytes, closed=False)

    check.drop_entries_past_end()
    return SegmentState(
        size=valid_end,
        next_offset=next_offset,
        first_timestamp=first_timestamp,
        max_timestamp=max_timestamp,
        index_entries=check.offset_entries_kept,
        time_index_entries=check.time_entries_kept,
        last_indexed_timestamp=check.last_indexed_timestamp,
        bytes_since_index=valid_end - check.last_indexed_position,
    )


def _drop_tail(segment: Segment, valid_end: int, size: int, reason: str) -> None:
    logger.warning(
        "truncating corrupt tail of segment path=%s valid_bytes=%d dropped_bytes=%d reason=%s",
        segment.log_path,
        valid_end,
        size - valid_end,
        reason,
    )
    with segment.files.lease(segment.log_path, writable=True) as fd:
        os.ftruncate(fd, valid_end)
