"""The Raft journal's segment files in index order, and the fsyncs they need.

:class:`SegmentLog` appends to the last (active) segment, rolls to a new
segment by size, reads any record through its segment's byte-offset index,
and removes records from either end. Terms, votes and PySyncObj are not its
concern. :class:`kaflow.replication.journal.RaftJournal` builds on it.
"""

from __future__ import annotations

import bisect
import os

from kaflow.errors import StorageError
from kaflow.replication.journal_directory import JournalDirectory
from kaflow.replication.journal_format import RECORD_HEADER_SIZE
from kaflow.replication.journal_segment import Entry, HandleCache, Segment

__all__ = ["SegmentLog"]


class SegmentLog:
    """Segment files of one journal directory, oldest first.

    Invariant: the log has a segment exactly when it has an active descriptor,
    the read-write descriptor of the last segment. Sealed segments are read
    through a bounded cache of read-only descriptors.
    """

    def __init__(
        self,
        directory: JournalDirectory,
        segments: list[Segment],
        active_fd: int | None,
        *,
        segment_bytes: int,
        max_open_segments: int,
    ) -> None:
        self._directory = directory
        self._segments = segments
        self._bases = [segment.base_index for segment in segments]
        self._active_fd = active_fd
        self._segment_bytes = segment_bytes
        self._handles = HandleCache(max_open_segments)
        # Records or a segment header written since the last fdatasync of the
        # active segment, and file creations since the last directory fsync.
        self._data_dirty = False
        self._directory_dirty = False
        self.data_fsyncs = 0

    @property
    def segment_count(self) -> int:
        return len(self._segments)

    @property
    def size_bytes(self) -> int:
        return sum(segment.size for segment in self._segments)

    @property
    def open_files(self) -> int:
        return len(self._handles) + (self._active_fd is not None)

    def append(self, command: bytes, index: int, term: int) -> None:
        """Write a record to the active segment, rolling or creating one first if needed.

        The caller guarantees that ``index`` follows the last record, or that
        the log is empty.
        """
        if not self._segments:
            self._create_segment(index)
        else:
            active = self._segments[-1]
            record_size = RECORD_HEADER_SIZE + len(command)
            if active.record_count and active.size + record_size > self._segment_bytes:
                self._roll(index)

        assert self._active_fd is not None
        self._segments[-1].append(self._active_fd, index, term, command)
        self._data_dirty = True

    def read(self, index: int) -> Entry:
        """Read the record with ``index``, which the caller guarantees is in the log."""
        position = bisect.bisect_right(self._bases, index) - 1
        segment = self._segments[position]
        if position == len(self._segments) - 1:
            assert self._active_fd is not None
            fd = self._active_fd
        else:
            fd = self._handles.get(segment.path)
        return segment.read_entry(fd, index)

    def sync(self) -> None:
        """Make every record and segment file written so far durable.

        Under the ``never`` fsync policy this only clears the bookkeeping.
        """
        self._fdatasync_active()
        if self._directory_dirty:
            self._directory.fsync()
            self._directory_dirty = False

    def truncate_from(self, cut_index: int) -> int:
        """Remove the records from ``cut_index`` on and return the bytes removed.

        At least one record must stay. The removal is durable on return under
        the ``always`` policy.
        """
        removed_bytes = 0
        # Newest segment first, each removal made durable before the next, so
        # a crash leaves a prefix of the old log and never a gap.
        while self._segments[-1].base_index >= cut_index:
            removed_bytes += self._segments[-1].size
            self._remove_last_segment()
            self._directory.fsync()

        if self._active_fd is None:
            self._active_fd = self._open_for_writing(self._segments[-1])
        removed_bytes += self._segments[-1].truncate_after(self._active_fd, cut_index - 1)
        self._data_dirty = True
        self.sync()
        return removed_bytes

    def remove_below(self, first_index: int) -> int:
        """Remove the segments whose records all lie below ``first_index`` and return how many.

        The active segment always stays. The caller has already stored
        ``first_index`` as the log start index, so the removals need no fsync:
        start-up removes such segments if a crash brings them back.
        """
        removed = 0
        while len(self._segments) > 1 and self._segments[0].last_index < first_index:
            segment = self._segments.pop(0)
            self._bases.pop(0)
            self._handles.discard(segment.path)
            self._directory.remove(segment.path)
            removed += 1
        if removed:
            self._directory_dirty = True
        return removed

    def remove_all(self) -> None:
        """Remove every segment file. The removals are durable after the next sync()."""
        while self._segments:
            self._remove_last_segment()
        self._data_dirty = False
        self._directory_dirty = True

    def close(self) -> None:
        self._handles.close_all()
        if self._active_fd is not None:
            os.close(self._active_fd)
            self._active_fd = None

    def _create_segment(self, base_index: int) -> None:
        segment, fd = Segment.create(self._directory.path, base_index)
        self._segments.append(segment)
        self._bases.append(base_index)
        self._active_fd = fd
        self._data_dirty = True
        self._directory_dirty = True

    def _roll(self, base_index: int) -> None:
        """Seal the active segment, durably under ``always``, and start one at ``base_index``."""
        self._fdatasync_active()
        assert self._active_fd is not None
        os.close(self._active_fd)
        self._active_fd = None
        self._create_segment(base_index)

    def _fdatasync_active(self) -> None:
        if not self._data_dirty or self._active_fd is None:
            return
        if self._directory.durable:
            path = self._segments[-1].path
            try:
                os.fdatasync(self._active_fd)
            except OSError as exc:
                raise StorageError(
                    f"failed to fsync Raft journal segment {path}: {exc.strerror or exc}",
                    path=str(path),
                    errno=exc.errno,
                ) from exc
            self.data_fsyncs += 1
        self._data_dirty = False

    def _remove_last_segment(self) -> None:
        segment = self._segments.pop()
        self._bases.pop()
        if self._active_fd is not None:
            os.close(self._active_fd)
            self._active_fd = None
        self._handles.discard(segment.path)
        self._directory.remove(segment.path)

    def _open_for_writing(self, segment: Segment) -> int:
        self._handles.discard(segment.path)
        try:
            return os.open(segment.path, os.O_RDWR | os.O_CLOEXEC)
        except OSError as exc:
            raise StorageError(
                f"failed to open Raft journal segment {segment.path}: {exc.strerror or exc}",
                path=str(segment.path),
                errno=exc.errno,
            ) from exc
