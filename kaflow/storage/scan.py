"""Iterate over the record batches stored in a byte range of a segment file.

Both iterators read through a :class:`FileCache` lease that is released
before every ``yield``, so a caller may lease other files while iterating.
They stop before a batch that does not fit in the range or in the file, and
raise CorruptBatchError for a complete header with an impossible field.
Callers that must tell a clean end from a cut-off batch compare the end of
the last batch they saw with the end of the range.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from kaflow.storage.batch import BATCH_HEADER_SIZE, BatchHeader, read_batch_header
from kaflow.storage.files import FileCache

__all__ = ["scan_batches", "scan_headers"]

# Header scans skip batch bodies, so small reads suffice; batch scans read
# whole batches and amortize the syscall over more data.
_HEADER_CHUNK_BYTES = 16 * 1024
_BATCH_CHUNK_BYTES = 1024 * 1024


def _read(files: FileCache, path: Path, size: int, position: int) -> bytes:
    with files.lease(path) as fd:
        return os.pread(fd, size, position)


def scan_headers(
    files: FileCache, path: Path, start: int, end: int
) -> Iterator[tuple[int, BatchHeader]]:
    """Yield the position and header of each whole batch in ``[start, end)`` of ``path``.

    ``start`` must be the position of a batch. Batch bodies are skipped
    without being read, so a range of large batches costs one read per batch.
    """
    position = start
    while end - position >= BATCH_HEADER_SIZE:
        chunk = _read(files, path, min(_HEADER_CHUNK_BYTES, end - position), position)
        if len(chunk) < BATCH_HEADER_SIZE:
            return
        offset = 0
        while len(chunk) - offset >= BATCH_HEADER_SIZE:
            header = read_batch_header(chunk, offset)
            if position + offset + header.length > end:
                return
            yield position + offset, header
            offset += header.length
        position += offset


def scan_batches(
    files: FileCache, path: Path, start: int, end: int
) -> Iterator[tuple[int, memoryview]]:
    """Yield the position and bytes of each whole batch in ``[start, end)`` of ``path``.

    ``start`` must be the position of a batch. The CRC is not checked here.
    """
    position = start
    while end - position >= BATCH_HEADER_SIZE:
        view = memoryview(_read(files, path, min(_BATCH_CHUNK_BYTES, end - position), position))
        if len(view) < BATCH_HEADER_SIZE:
            return
        offset = 0
        while len(view) - offset >= BATCH_HEADER_SIZE:
            header = read_batch_header(view, offset)
            if position + offset + header.length > end:
                return
            if header.length > len(view) - offset:
                break
            yield position + offset, view[offset : offset + header.length]
            offset += header.length

        if offset == 0:
            # The first batch is larger than one chunk: read it on its own.
            header = read_batch_header(view, 0)
            data = _read(files, path, header.length, position)
            if len(data) < header.length:
                return
            yield position, memoryview(data)
            offset = header.length
        position += offset
