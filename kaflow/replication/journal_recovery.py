"""Open-time recovery of the Raft journal: index the segments and repair a torn tail.

Start-up reads only record headers of sealed segments (every segment but the
last), so its cost does not grow with payload bytes. The last segment is the
only one a crash can leave half-written, so its records are CRC-checked in
full. A damaged record there is removed when nothing intact follows it and
its index is above the stored commit index (a torn write). When an intact
record follows, or the record is committed, the damage is in acknowledged
data and recovery raises StorageError instead.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from kaflow.errors import StorageError
from kaflow.replication.journal_directory import JournalDirectory
from kaflow.replication.journal_format import (
    SEGMENT_HEADER_SIZE,
    JournalMeta,
    decode_segment_header,
    parse_segment_file_name,
    segment_file_name,
)
from kaflow.replication.journal_segment import (
    Segment,
    corrupt_record_error,
    find_valid_record,
    scan_records,
)

__all__ = ["RecoveredJournal", "recover"]

logger = logging.getLogger(__name__)

# After a damaged record with index i, recovery searches for intact records
# with indexes i + 1 .. i + this many before it calls the damage a torn tail.
_LOOKAHEAD_RECORDS = 4


@dataclass(slots=True)
class RecoveredJournal:
    meta: JournalMeta
    segments: list[Segment]
    # Read-write descriptor of the last segment, or None when there is no segment.
    active_fd: int | None
    first_index: int
    last_index: int
    # Bytes removed from the tail of the last segment (or a torn last segment).
    torn_bytes: int


def recover(directory: JournalDirectory) -> RecoveredJournal:
    """Load the meta file, index every segment and repair a torn tail.

    Raises StorageError when acknowledged data may be damaged or missing: a
    bad record in a sealed segment, a bad record in the last segment followed
    by an intact one, a gap between segments, or segments without a meta file.
    """
    meta = directory.load_meta()
    bases = _segment_bases(directory.path)
    if meta is None:
        if bases:
            raise StorageError(
                f"Raft journal {directory.path} has {len(bases)} segment files but no meta "
                "file, so its term and vote are lost. Restore this node's Raft directory "
                "from a healthy replica or remove it so the node resyncs from the leader",
                path=str(directory.path),
            )
        # Stored right away, so that segment files never exist without a meta file.
        meta = JournalMeta()
        directory.store_meta(meta)

    removed_any = _remove_compacted_segments(directory, bases, meta.log_start_index)
    torn_bytes = 0
    if bases:
        torn = _remove_torn_last_segment(directory, bases[-1], meta.commit_index)
        if torn is not None:
            bases.pop()
            torn_bytes += torn
            removed_any = True

    segments: list[Segment] = []
    active_fd: int | None = None
    for position, base in enumerate(bases):
        is_last = position == len(bases) - 1
        segment, fd, removed = _open_segment(
            directory, base, is_last=is_last, commit_index=meta.commit_index
        )
        torn_bytes += removed
        if segments and base != segments[-1].last_index + 1:
            os.close(fd)
            raise corrupt_record_error(
                segment.path,
                0,
                f"the segment starts at index {base}, but the previous segment ends at "
                f"index {segments[-1].last_index}, so entries are missing or duplicated",
            )
        segments.append(segment)
        if is_last:
            active_fd = fd
        else:
            os.close(fd)

    try:
        first_index, last_index = _bounds(segments, meta.log_start_index)
    except StorageError:
        if active_fd is not None:
            os.close(active_fd)
        raise
    if segments and last_index < first_index:
        # No record at or above the log start index is left: compaction or
        # clear() removed them all but a crash kept the files, or the only
        # segment is empty. An empty journal has no segment files.
        if active_fd is not None:
            os.close(active_fd)
            active_fd = None
        for segment in segments:
            directory.remove(segment.path)
        segments = []
        removed_any = True
        first_index, last_index = meta.log_start_index, meta.log_start_index - 1
    if removed_any:
        directory.fsync()

    return RecoveredJournal(
        meta=meta,
        segments=segments,
        active_fd=active_fd,
        first_index=first_index,
        last_index=last_index,
        torn_bytes=torn_bytes,
    )


def _segment_bases(path: Path) -> list[int]:
    try:
        names = os.listdir(path)
    except OSError as exc:
        raise StorageError(
            f"failed to list Raft journal directory {path}: {exc.strerror or exc}",
            path=str(path),
        ) from exc
    bases = (parse_segment_file_name(name) for name in names)
    return sorted(base for base in bases if base is not None)


def _remove_compacted_segments(directory: JournalDirectory, bases: list[int], start: int) -> bool:
    """Remove leading segments whose records all lie below the log start index.

    Compaction stores the new log start index before it removes files, so a
    crash in between leaves such segments behind. A segment's last index is
    the next segment's base index minus one.
    """
    removed = False
    while len(bases) >= 2 and bases[1] <= start:
        path = directory.path / segment_file_name(bases.pop(0))
        logger.info(
            "removing compacted Raft journal segment path=%s log_start_index=%d", path, start
        )
        directory.remove(path)
        removed = True
    return removed


def _remove_torn_last_segment(
    directory: JournalDirectory, base: int, commit_index: int
) -> int | None:
    """Remove the last segment if a crash interrupted its creation, and return its size.

    Such a file is shorter than a segment header or has an all-zero header.
    Any other header damage raises StorageError, because records may follow it.
    So does a damaged header of a segment whose base index is committed.
    """
    path = directory.path / segment_file_name(base)
    try:
        with path.open("rb") as file:
            header = file.read(SEGMENT_HEADER_SIZE)
            size = os.fstat(file.fileno()).st_size
    except OSError as exc:
        raise StorageError(
            f"failed to read Raft journal segment {path}: {exc.strerror or exc}", path=str(path)
        ) from exc

    if len(header) == SEGMENT_HEADER_SIZE and any(header):
        return None
    if size > SEGMENT_HEADER_SIZE and _is_committed(base, commit_index):
        raise corrupt_record_error(
            path, 0, _committed_reason("the segment header is zero", base, commit_index)
        )
    if size > SEGMENT_HEADER_SIZE:
        _check_nothing_intact_after(
            path, SEGMENT_HEADER_SIZE, size, base, "the segment header is zero"
        )
    logger.warning(
        "removing Raft journal segment whose creation a crash interrupted path=%s bytes=%d",
        path,
        size,
    )
    directory.remove(path)
    return size


def _open_segment(
    directory: JournalDirectory, base: int, *, is_last: bool, commit_index: int
) -> tuple[Segment, int, int]:
    """Open and index one segment.

    Returns the segment, its descriptor and the number of torn bytes removed.
    """
    path = directory.path / segment_file_name(base)
    flags = (os.O_RDWR if is_last else os.O_RDONLY) | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
        size = os.fstat(fd).st_size
    except OSError as exc:
        raise StorageError(
            f"failed to open Raft journal segment {path}: {exc.strerror or exc}", path=str(path)
        ) from exc

    try:
        _check_segment_header(fd, path, base)
        scan = scan_records(fd, path, base, size, verify_crc=is_last)
        removed = 0
        if scan.problem is not None:
            if not is_last:
                raise corrupt_record_error(path, scan.end, scan.problem)
            removed = _truncate_torn_tail(
                directory,
                fd,
                path,
                scan.end,
                size,
                scan.problem,
                next_index=base + len(scan.offsets),
                commit_index=commit_index,
            )
    except BaseException:
        os.close(fd)
        raise
    return Segment(path, base, scan.offsets, scan.end), fd, removed


def _check_segment_header(fd: int, path: Path, base: int) -> None:
    try:
        header = os.pread(fd, SEGMENT_HEADER_SIZE, 0)
        stored_base = decode_segment_header(header)
    except OSError as exc:
        raise StorageError(
            f"failed to read Raft journal segment {path}: {exc.strerror or exc}", path=str(path)
        ) from exc
    except ValueError as exc:
        raise corrupt_record_error(path, 0, str(exc)) from exc
    if stored_base != base:
        raise corrupt_record_error(
            path, 0, f"the header says base index {stored_base}, the file name says {base}"
        )


def _truncate_torn_tail(
    directory: JournalDirectory,
    fd: int,
    path: Path,
    end: int,
    size: int,
    problem: str,
    *,
    next_index: int,
    commit_index: int,
) -> int:
    """Cut the last segment at ``end`` unless the damaged record is committed or an
    intact record follows the damage.

    The meta file stores a commit index only after the records up to it were
    synced, so a damaged record at or below it is no torn write. Cutting it
    would drop a committed entry from this member's log, and with it this
    member's part of the majority that stores the entry.

    NOTE: a power loss can leave unsynced tail pages written out of order, so
    that intact records follow a hole. That tail was never acknowledged, but
    it raises here like damage to acknowledged data.
    """
    if _is_committed(next_index, commit_index):
        raise corrupt_record_error(path, end, _committed_reason(problem, next_index, commit_index))
    _check_nothing_intact_after(path, end, size, next_index + 1, problem, fd=fd)

    try:
        os.ftruncate(fd, end)
        if directory.durable:
            os.fdatasync(fd)
    except OSError as exc:
        raise StorageError(
            f"failed to truncate Raft journal segment {path}: {exc.strerror or exc}",
            path=str(path),
        ) from exc
    logger.warning(
        "truncated torn tail of Raft journal segment path=%s offset=%d bytes_removed=%d "
        "first_removed_index=%d reason=%s",
        path,
        end,
        size - end,
        next_index,
        problem,
    )
    return size - end


def _is_committed(index: int, commit_index: int) -> bool:
    # A journal starts with commit index 1 before anything is committed.
    return commit_index > 1 and index <= commit_index


def _committed_reason(problem: str, index: int, commit_index: int) -> str:
    return (
        f"{problem}, and the record's index {index} is at or below the stored commit "
        f"index {commit_index}, so a committed entry is damaged"
    )


def _check_nothing_intact_after(
    path: Path, start: int, size: int, first_index: int, problem: str, *, fd: int | None = None
) -> None:
    """Raise StorageError when an intact record follows the damage at ``start``.

    The record length at the damage cannot be trusted, so this searches the
    rest of the file for intact records with the next few indexes.
    """
    lookahead = range(first_index, first_index + _LOOKAHEAD_RECORDS)
    if fd is None:
        try:
            with path.open("rb") as file:
                intact = find_valid_record(file.fileno(), path, start, size, lookahead)
        except OSError as exc:
            raise StorageError(
                f"failed to read Raft journal segment {path}: {exc.strerror or exc}",
                path=str(path),
            ) from exc
    else:
        intact = find_valid_record(fd, path, start, size, lookahead)
    if intact is not None:
        raise corrupt_record_error(
            path,
            start,
            f"{problem}, and an intact record follows at byte offset {intact}, "
            "so this is not a torn write at the tail",
        )


def _bounds(segments: list[Segment], start: int) -> tuple[int, int]:
    """Return the first and last index. The journal is empty when last < first."""
    if not segments:
        return start, start - 1
    first_base = segments[0].base_index
    last_index = segments[-1].last_index
    if start < first_base and last_index >= first_base:
        raise corrupt_record_error(
            segments[0].path,
            0,
            f"the meta file's log start index is {start} but the first segment starts at "
            f"index {first_base}, so entries {start}..{first_base - 1} are missing",
        )
    first_index = max(start, first_base)
    return first_index, last_index
