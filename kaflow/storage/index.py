"""The sparse offset index and time index of a segment.

Both are flat files of fixed-size big-endian entries, sorted and appended
to as the segment grows. Offsets are stored relative to the segment's base
offset, which is why a segment never spans more than 2**32 offsets.

Offset index (``.index``), 8 bytes per entry::

    u32  relative_offset   base offset of a batch minus the segment's base offset
    u32  position          byte position of that batch in the ``.log`` file

Time index (``.timeindex``), 12 bytes per entry::

    i64  timestamp         largest record timestamp at or before the entry's offset
    u32  relative_offset   last offset of the batch that was appended when the
                           entry was written, minus the segment's base offset

In a time index entry (T, R), T is the maximum timestamp of every record of
the segment at offsets up to base + R, so no record before base + R + 1 has a
timestamp above T. Entries are written only when T grows, so timestamps and
offsets both strictly increase.

An entry is written after the segment has grown by at least
``index_interval_bytes`` since the previous entry. The first batch of a
segment needs none, because a lookup that finds no entry starts at byte 0.
When a segment is closed, a last time index entry records its max timestamp.
Lookups read entries with ``os.pread`` and binary search, so nothing is held
in memory between calls.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from pathlib import Path

from kaflow.storage.errors import CorruptLogError
from kaflow.storage.files import FileCache, write_file_atomically

__all__ = ["OFFSET_ENTRY", "TIME_ENTRY", "IndexFile"]

OFFSET_ENTRY = struct.Struct(">II")
TIME_ENTRY = struct.Struct(">qI")


class IndexFile:
    """One index file: its path, its entry layout and the cache to reach it through."""

    def __init__(self, path: Path, entry: struct.Struct, files: FileCache) -> None:
        self.path = path
        self.entry = entry
        self._files = files

    def entry_count_on_disk(self) -> int:
        """Return the whole entries in the file; a partial trailing entry is not counted."""
        return self.path.stat().st_size // self.entry.size

    def size_on_disk(self) -> int:
        return self.path.stat().st_size

    def read(self, index: int) -> tuple[int, ...]:
        with self._files.lease(self.path) as fd:
            return self._read_at(fd, index)

    def read_all(self, count: int) -> list[tuple[int, ...]]:
        with self._files.lease(self.path) as fd:
            data = os.pread(fd, count * self.entry.size, 0)
        whole = len(data) - len(data) % self.entry.size
        return list(self.entry.iter_unpack(data[:whole]))

    def _read_at(self, fd: int, index: int) -> tuple[int, ...]:
        data = os.pread(fd, self.entry.size, index * self.entry.size)
        if len(data) != self.entry.size:
            raise CorruptLogError(
                f"index file {self.path} ends before entry {index}; delete it and reopen "
                "the log to rebuild it",
                path=str(self.path),
            )
        return self.entry.unpack(data)

    def search(self, count: int, before: Callable[[tuple[int, ...]], bool]) -> int:
        """Return how many of the first ``count`` entries satisfy ``before``.

        ``before`` must hold for a prefix of the entries and fail for the
        rest, as "offset <= target" does on an offset index.
        """
        low, high = 0, count
        with self._files.lease(self.path) as fd:
            while low < high:
                middle = (low + high) // 2
                if before(self._read_at(fd, middle)):
                    low = middle + 1
                else:
                    high = middle
        return low

    def append(self, count: int, *values: int) -> None:
        """Write one entry after the first ``count`` entries."""
        with self._files.lease(self.path, writable=True) as fd:
            data = self.entry.pack(*values)
            written = os.pwrite(fd, data, count * self.entry.size)
            if written != len(data):
                raise OSError(f"short write to {self.path}: {written} of {len(data)} bytes")

    def truncate(self, count: int) -> None:
        """Keep the first ``count`` entries and drop the rest."""
        with self._files.lease(self.path, writable=True) as fd:
            os.ftruncate(fd, count * self.entry.size)

    def replace_all(self, data: bytes) -> None:
        """Replace the file with ``data`` (packed entries); a crash leaves the old or new file."""
        write_file_atomically(self._files, self.path, data)
