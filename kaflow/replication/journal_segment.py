"""Segment files of the Raft journal: append, read, truncate and scan records.

The byte layout is in :mod:`kaflow.replication.journal_format`. This module is
the I/O boundary for segment files: every ``OSError`` and every damaged record
becomes a :class:`~kaflow.errors.StorageError` naming the file and the byte
offset.
"""

from __future__ import annotations

import contextlib
import os
from array import array
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from kaflow.errors import StorageError
from kaflow.replication.journal_format import (
    RECORD_HEADER_SIZE,
    SEGMENT_HEADER_SIZE,
    RecordHeader,
    contiguous_record_crc,
    crc_update,
    decode_record_header,
    encode_record_header,
    encode_segment_header,
    record_crc,
    segment_file_name,
    unpack_record_header,
)

__all__ = [
    "Entry",
    "HandleCache",
    "ScanResult",
    "Segment",
    "corrupt_record_error",
    "find_valid_record",
    "scan_records",
]

# (command, index, term), the entry shape PySyncObj's journals use.
Entry = tuple[bytes, int, int]

# Reads during a scan fetch this many bytes at a time, so that a scan of large
# records reads little more than their headers and a scan of small records
# needs few system calls.
_SCAN_CHUNK_BYTES = 4096
# Reads that check CRCs (the last segment at start-up, the search after a
# damaged record) fetch at most this many bytes at a time.
_CRC_CHUNK_BYTES = 1 << 20


def corrupt_record_error(path: Path, offset: int, reason: str) -> StorageError:
    return StorageError(
        f"Raft journal segment {path} is damaged at byte offset {offset}: {reason}. "
        "Acknowledged entries may be affected, so the journal was not repaired "
        "automatically. Restore this node's Raft directory from a healthy replica, "
        "or move both its raft and logs directories out of the data directory so that "
        "the node resyncs from the other members",
        path=str(path),
        offset=offset,
        reason=reason,
    )


def _io_error(action: str, path: Path, exc: OSError) -> StorageError:
    return StorageError(
        f"failed to {action} Raft journal segment {path}: {exc.strerror or exc}",
        path=str(path),
        errno=exc.errno,
    )


class Segment:
    """One segment file and the byte offset of each record in it.

    The offsets array takes 8 bytes per record and is the only per-record
    state in memory. Payloads are read from the file on demand.
    """

    __slots__ = ("base_index", "offsets", "path", "size")

    def __init__(self, path: Path, base_index: int, offsets: array[int], size: int) -> None:
        self.path = path
        self.base_index = base_index
        # offsets[i] is the byte offset of the record with index base_index + i.
        self.offsets = offsets
        # Bytes in the file: the end of the last record.
        self.size = size

    @classmethod
    def create(cls, directory: Path, base_index: int) -> tuple[Segment, int]:
        """Create an empty segment file and return it with a read-write descriptor."""
        path = directory / segment_file_name(base_index)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise _io_error("create", path, exc) from exc

        segment = cls(path, base_index, array("Q"), 0)
        try:
            segment.write_at(fd, [encode_segment_header(base_index)], 0)
        except StorageError:
            os.close(fd)
            raise
        segment.size = SEGMENT_HEADER_SIZE
        return segment, fd

    @property
    def record_count(self) -> int:
        return len(self.offsets)

    @property
    def last_index(self) -> int:
        """Index of the last record, or base_index - 1 when the segment is empty."""
        return self.base_index + len(self.offsets) - 1

    def span(self, index: int) -> tuple[int, int]:
        """Return the byte offset and size of the record with ``index``."""
        position = index - self.base_index
        offset = self.offsets[position]
        if position + 1 < len(self.offsets):
            return offset, self.offsets[position + 1] - offset
        return offset, self.size - offset

    def append(self, fd: int, index: int, term: int, payload: bytes) -> int:
        """Write one record at the end of the file and return its size in bytes.

        The write goes to the operating system without fsync. On failure the
        file is cut back to its previous size and StorageError is raised.
        """
        header = encode_record_header(index, term, payload)
        try:
            self.write_at(fd, [header, payload], self.size)
        except StorageError:
            # If this fails too, the partial record fails its CRC check at the
            # next start-up and is removed there as a torn tail.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, self.size)
            raise
        self.offsets.append(self.size)
        record_size = len(header) + len(payload)
        self.size += record_size
        return record_size

    def write_at(self, fd: int, buffers: list[bytes], offset: int) -> None:
        views = [memoryview(buffer) for buffer in buffers if buffer]
        try:
            while views:
                written = os.pwritev(fd, views, offset)
                offset += written
                # pwritev may write fewer bytes than requested, so drop what was written.
                while views and written >= len(views[0]):
                    written -= len(views[0])
                    views.pop(0)
                if views and written:
                    views[0] = views[0][written:]
        except OSError as exc:
            raise _io_error("write", self.path, exc) from exc

    def read_entry(self, fd: int, index: int) -> Entry:
        """Read the record with ``index`` and check its length, index and CRC."""
        offset, size = self.span(index)
        try:
            data = os.pread(fd, size, offset)
        except OSError as exc:
            raise _io_error("read", self.path, exc) from exc
        if len(data) != size:
            raise corrupt_record_error(
                self.path, offset, f"read {len(data)} bytes of a {size}-byte record"
            )

        header = decode_record_header(data)
        if header.record_size != size:
            raise corrupt_record_error(
                self.path,
                offset,
                f"record length field says {header.record_size} bytes, the index says {size}",
            )
        if header.index != index:
            raise corrupt_record_error(
                self.path, offset, f"record index is {header.index}, expected {index}"
            )
        view = memoryview(data)
        if record_crc(view, view[RECORD_HEADER_SIZE:]) != header.crc:
            raise corrupt_record_error(self.path, offset, "record CRC-32C does not match")
        return data[RECORD_HEADER_SIZE:], header.index, header.term

    def truncate_after(self, fd: int, last_index: int) -> int:
        """Remove every record after ``last_index`` and return the bytes removed."""
        keep = last_index - self.base_index + 1
        if keep >= len(self.offsets):
            return 0
        new_size = self.offsets[keep]
        try:
            os.ftruncate(fd, new_size)
        except OSError as exc:
            raise _io_error("truncate", self.path, exc) from exc
        removed = self.size - new_size
        del self.offsets[keep:]
        self.size = new_size
        return removed


class HandleCache:
    """Read-only descriptors of sealed segments, closed least recently used first."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._fds: OrderedDict[Path, int] = OrderedDict()

    def get(self, path: Path) -> int:
        fd = self._fds.get(path)
        if fd is not None:
            self._fds.move_to_end(path)
            return fd
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise _io_error("open", path, exc) from exc
        self._fds[path] = fd
        while len(self._fds) > self._capacity:
            _, oldest = self._fds.popitem(last=False)
            os.close(oldest)
        return fd

    def discard(self, path: Path) -> None:
        fd = self._fds.pop(path, None)
        if fd is not None:
            os.close(fd)

    def close_all(self) -> None:
        while self._fds:
            _, fd = self._fds.popitem()
            os.close(fd)

    def __len__(self) -> int:
        return len(self._fds)


@dataclass(slots=True)
class ScanResult:
    """Records found by :func:`scan_records`."""

    offsets: array[int]
    # Byte offset just past the last good record.
    end: int
    # Reason the scan stopped before the end of the file, or None when it reached the end.
    problem: str | None


class _ChunkReader:
    """Serve reads of one file from a buffer refilled with pread ``chunk_bytes`` at a time."""

    def __init__(self, fd: int, path: Path, file_size: int, chunk_bytes: int) -> None:
        self._fd = fd
        self._path = path
        self._file_size = file_size
        self._chunk_bytes = chunk_bytes
        self._buffer = b""
        self._start = 0

    def buffered(self, offset: int, size: int) -> tuple[bytes, int]:
        """Return a buffer that contains bytes ``offset .. offset + size`` and their position."""
        position = offset - self._start
        if position < 0 or position + size > len(self._buffer):
            length = max(size, min(self._chunk_bytes, self._file_size - offset))
            try:
                self._buffer = os.pread(self._fd, length, offset)
            except OSError as exc:
                raise _io_error("read", self._path, exc) from exc
            self._start = offset
            position = 0
        return self._buffer, position

    def read(self, offset: int, size: int) -> memoryview:
        buffer, position = self.buffered(offset, size)
        return memoryview(buffer)[position : position + size]


def _crc_matches(reader: _ChunkReader, offset: int, header: RecordHeader) -> bool:
    """Check a record's CRC, reading its payload in bounded pieces."""
    crc = record_crc(reader.read(offset, RECORD_HEADER_SIZE), b"")
    position = offset + RECORD_HEADER_SIZE
    end = offset + header.record_size
    while position < end:
        piece = reader.read(position, min(_CRC_CHUNK_BYTES, end - position))
        crc = crc_update(crc, piece)
        position += len(piece)
    return crc == header.crc


def scan_records(
    fd: int, path: Path, base_index: int, file_size: int, *, verify_crc: bool
) -> ScanResult:
    """Index the records of a segment from its headers.

    Each record must have the next index and fit in the file. With
    ``verify_crc`` the payloads are read and their CRCs checked too. Without
    it only the headers are read, which keeps start-up cheap for sealed
    segments. The scan stops at the first record that fails a check and
    reports why.
    """
    chunk_bytes = _CRC_CHUNK_BYTES if verify_crc else _SCAN_CHUNK_BYTES
    reader = _ChunkReader(fd, path, file_size, chunk_bytes)
    offsets: array[int] = array("Q")
    position = SEGMENT_HEADER_SIZE
    expected_index = base_index
    problem: str | None = None
    buffer, buffer_start = b"", 0
    view = memoryview(buffer)

    # This loop runs once per record at every start-up, so it works on the
    # buffer directly instead of calling a helper for each record.
    while position < file_size:
        remaining = file_size - position
        if remaining < RECORD_HEADER_SIZE:
            problem = f"the last {remaining} bytes are too short for a record header"
            break
        at = position - buffer_start
        if at + RECORD_HEADER_SIZE > len(buffer):
            buffer, at = reader.buffered(position, RECORD_HEADER_SIZE)
            buffer_start, view = position - at, memoryview(buffer)
        length, crc, index, term = unpack_record_header(buffer, at)
        record_size = RECORD_HEADER_SIZE + length
        if record_size > remaining:
            problem = (
                f"a record of {record_size} bytes runs past the end of the file ({file_size} bytes)"
            )
            break

        if verify_crc:
            if record_size > chunk_bytes:
                header = RecordHeader(payload_length=length, crc=crc, index=index, term=term)
                crc_ok = _crc_matches(reader, position, header)
            else:
                if at + record_size > len(buffer):
                    buffer, at = reader.buffered(position, record_size)
                    buffer_start, view = position - at, memoryview(buffer)
                crc_ok = contiguous_record_crc(view, at, record_size) == crc
            if not crc_ok:
                problem = "record CRC-32C does not match"
                break
        if index != expected_index:
            problem = f"record index is {index}, expected {expected_index}"
            break

        offsets.append(position)
        position += record_size
        expected_index += 1

    return ScanResult(offsets=offsets, end=position, problem=problem)


def find_valid_record(
    fd: int, path: Path, start: int, file_size: int, indexes: range
) -> int | None:
    """Return the offset of an intact record with one of ``indexes`` at or after ``start``.

    Used after a damaged record to tell a torn tail (nothing valid follows)
    from damage in the middle (a later record is intact). The record length
    of the damaged record cannot be trusted, so this searches the bytes for
    each index value and checks every candidate's length and CRC.
    """
    reader = _ChunkReader(fd, path, file_size, _SCAN_CHUNK_BYTES)
    for index in indexes:
        pattern = index.to_bytes(8, "big")
        chunk_start = start
        while chunk_start < file_size:
            length = min(_CRC_CHUNK_BYTES, file_size - chunk_start)
            try:
                chunk = os.pread(fd, length, chunk_start)
            except OSError as exc:
                raise _io_error("read", path, exc) from exc
            hit = chunk.find(pattern)
            while hit != -1:
                # The index field starts 8 bytes into the record header.
                candidate = chunk_start + hit - 8
                if candidate >= start and _is_valid_record_at(reader, candidate, file_size, index):
                    return candidate
                hit = chunk.find(pattern, hit + 1)
            # Overlap the chunks so that a pattern split across two is found.
            chunk_start += max(1, length - len(pattern) + 1)
            if length < _CRC_CHUNK_BYTES:
                break
    return None


def _is_valid_record_at(reader: _ChunkReader, offset: int, file_size: int, index: int) -> bool:
    if offset + RECORD_HEADER_SIZE > file_size:
        return False
    header = decode_record_header(reader.read(offset, RECORD_HEADER_SIZE))
    if header.index != index or offset + header.record_size > file_size:
        return False
    return _crc_matches(reader, offset, header)
