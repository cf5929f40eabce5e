"""The retention rule: which closed segments retention.ms and retention.bytes let go.

The rule is a pure function of the segments, the settings and a time the
caller supplies, never the local clock, so every replica that applies the
same commands computes the same result.
"""

from __future__ import annotations

from collections.abc import Sequence

from kaflow.storage.log_config import LogConfig
from kaflow.storage.segment import Segment

__all__ = ["retention_target"]


def retention_target(
    segments: Sequence[Segment], log_start_offset: int, config: LogConfig, now_ms: int
) -> int | None:
    """Return the base offset of the first segment to keep, or None if nothing can go.

    Only closed segments (all but the last) are candidates, oldest first:

    - retention.ms: a segment goes while its max timestamp is below
      ``now_ms - retention.ms``; the first recent segment stops the walk.
    - retention.bytes: the oldest segment goes while the total size without
      it is still at least retention.bytes.

    The result is the larger of the two, or None when it is not above
    ``log_start_offset``. -1 disables either setting.
    """
    closed = segments[:-1]
    target: int | None = None

    if config.retention_ms >= 0:
        limit = now_ms - config.retention_ms
        for index, segment in enumerate(closed):
            max_timestamp = segment.state.max_timestamp
            if max_timestamp is not None and max_timestamp >= limit:
                break
            target = segments[index + 1].base_offset

    if config.retention_bytes >= 0:
        remaining = sum(segment.state.size for segment in segments)
        for index, segment in enumerate(closed):
            if remaining - segment.state.size < config.retention_bytes:
                break
            remaining -= segment.state.size
            target = max(target or 0, segments[index + 1].base_offset)

    if target is None or target <= log_start_offset:
        return None
    return target
