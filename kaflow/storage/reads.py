"""Read paths over a captured view of a partition's segments.

The read functions take the segments a reader captured and never look at
the log's current state, so :func:`read_consistently` can run them again
when a truncation or deletion raced with the read.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from typing import TypeVar

from kaflow.errors import OffsetOutOfRangeError, StorageError
from kaflow.storage.batch import decode_batch, read_batch_header
from kaflow.storage.scan import scan_batches
from kaflow.storage.segment import Segment
from kaflow.storage.view import LogView, PublishedView

__all__ = [
    "find_offset_for_timestamp",
    "out_of_range",
    "read_batches",
    "read_consistently",
    "segment_index_for",
]

_T = TypeVar("_T")
# A truncation per read attempt this many times in a row means something is wrong.
_MAX_READ_ATTEMPTS = 20


def read_consistently(
    published: PublishedView, name: str, offset: int | None, read: Callable[[LogView], _T]
) -> _T:
    """Run ``read`` on a captured view, again if a truncation or deletion raced with it.

    When ``offset`` is given it is checked against the captured view first:
    below the log start or past the log end raises OffsetOutOfRangeError.
    An OSError or StorageError from a read that raced is retried; from a
    read that did not race it is raised, OSError as StorageError.
    """
    for _ in range(_MAX_READ_ATTEMPTS):
        view = published.get()
        end = view.active.state.next_offset
        if offset is not None and not view.log_start_offset <= offset <= end:
            raise out_of_range(name, offset, view.log_start_offset, end)
        try:
            result = read(view)
        except (OSError, StorageError) as exc:
            if published.changed_since(view):
                continue
            if isinstance(exc, OSError):
                raise StorageError(f"failed to read partition log {name}: {exc}") from exc
            raise
        if not published.changed_since(view):
            return result
    raise StorageError(
        f"read of partition log {name} raced with a truncation or deletion "
        f"{_MAX_READ_ATTEMPTS} times in a row; retry the request"
    )


def out_of_range(name: str, offset: int, log_start: int, end: int) -> OffsetOutOfRangeError:
    return OffsetOutOfRangeError(
        f"offset {offset} is out of range for partition log {name}: valid offsets are "
        f"{log_start} to {end}; read from the log start offset or the end",
        offset=offset,
        log_start_offset=log_start,
        high_watermark=end,
    )


def segment_index_for(segments: Sequence[Segment], offset: int) -> int:
    """Return the index of the segment whose range contains ``offset`` (else the first)."""
    index = bisect.bisect_right(segments, offset, key=lambda segment: segment.base_offset) - 1
    return max(index, 0)


def read_batches(segments: Sequence[Segment], offset: int, max_bytes: int) -> bytes:
    """Return whole batches from the one that contains ``offset``, up to ``max_bytes``.

    The first batch is returned even when it alone exceeds ``max_bytes``, so
    a consumer always makes progress. Reads continue into later segments
    while the byte budget lasts.
    """
    parts: list[bytes] = []
    total = 0
    for segment in segments[segment_index_for(segments, offset) :]:
        state = segment.state
        located = segment.find_batch(offset, state)
        if located is None:
            continue
        start = located[0]
        stop = start
        budget_spent = False
        for position, header in segment.iter_headers(start, state):
            end = position + header.length
            if total + (end - start) > max_bytes and (total > 0 or stop > start):
                budget_spent = True
                break
            stop = end
        if stop > start:
            parts.append(segment.read_bytes(start, stop))
            total += stop - start
        if budget_spent:
            break
        offset = state.next_offset
    return b"".join(parts)


def find_offset_for_timestamp(
    segments: Sequence[Segment], log_start_offset: int, timestamp: int
) -> tuple[int, int] | None:
    """Return (offset, timestamp) of the first record at or after the log start with a
    timestamp >= ``timestamp``, or None if there is none.

    Segments whose max timestamp is older are skipped without reading them.
    In the others the time index gives an offset before which no record can
    match, and the scan starts at the batch that contains it.
    """
    for segment in segments[segment_index_for(segments, log_start_offset) :]:
        state = segment.state
        if state.max_timestamp is None or state.max_timestamp < timestamp:
            continue
        start_offset = max(segment.start_offset_for_timestamp(timestamp, state), log_start_offset)
        located = segment.find_batch(start_offset, state)
        if located is None:
            continue
        for _, batch in scan_batches(segment.files, segment.log_path, located[0], state.size):
            if read_batch_header(batch).max_timestamp < timestamp:
                continue
            for record in decode_batch(batch):
                if record.offset >= start_offset and record.timestamp >= timestamp:
                    return record.offset, record.timestamp
    return None
