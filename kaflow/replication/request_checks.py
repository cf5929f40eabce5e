"""Checks of fetch and offset-commit requests, run before anything is read or proposed.

None of them reads the replicated state. Checks that need it (does the
topic exist, is the offset in range) take the values as arguments.
"""

from __future__ import annotations

from collections.abc import Sequence

from kaflow.broker import OffsetCommit
from kaflow.errors import InvalidOffsetError, InvalidRequestError, OffsetOutOfRangeError
from kaflow.replication.commands import OffsetEntry
from kaflow.replication.state import PartitionState

__all__ = [
    "MAX_OFFSET_METADATA_BYTES",
    "check_fetch_arguments",
    "check_fetch_offset",
    "offset_entries",
]

# Kafka's default offset.metadata.max.bytes.
MAX_OFFSET_METADATA_BYTES = 4096


def check_fetch_arguments(offset: int, max_records: int, max_bytes: int, max_wait_ms: int) -> None:
    """Raise InvalidOffsetError or InvalidRequestError for a value below its minimum."""
    for name, value, minimum in (
        ("offset", offset, 0),
        ("max_records", max_records, 1),
        ("max_bytes", max_bytes, 1),
        ("max_wait_ms", max_wait_ms, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            error = InvalidOffsetError if name == "offset" else InvalidRequestError
            raise error(
                f"{name} must be an integer >= {minimum}, got {value!r}",
                field=name,
                value=value,
                min=minimum,
            )


def check_fetch_offset(topic: str, partition: int, offset: int, offsets: PartitionState) -> None:
    """Raise OffsetOutOfRangeError unless log start <= ``offset`` <= high watermark."""
    if offsets.log_start_offset <= offset <= offsets.log_end_offset:
        return
    raise OffsetOutOfRangeError(
        f"offset {offset} is out of range for partition {topic}-{partition}: valid offsets are "
        f"{offsets.log_start_offset} (log start) to {offsets.log_end_offset} (high watermark)",
        topic=topic,
        partition=partition,
        offset=offset,
        log_start_offset=offsets.log_start_offset,
        high_watermark=offsets.log_end_offset,
    )


def _utf8_length(text: str, what: str) -> int:
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise InvalidRequestError(
            f"{what} is not valid Unicode ({exc.reason}); remove unpaired surrogates"
        ) from None


def offset_entries(commits: Sequence[OffsetCommit]) -> list[OffsetEntry]:
    """Check each commit's offset and metadata and return them as command entries.

    Any offset >= 0 is accepted, past the high watermark too, as Kafka does:
    a consumer may commit a position it has not read yet.
    """
    entries: list[OffsetEntry] = []
    for index, commit in enumerate(commits):
        if isinstance(commit.offset, bool) or not isinstance(commit.offset, int):
            raise InvalidOffsetError(
                f"commit {index}: offset must be an integer, got {commit.offset!r}",
                index=index,
            )
        if commit.offset < 0:
            raise InvalidOffsetError(
                f"commit {index}: offset {commit.offset} is negative; commit the next "
                "offset to read, 0 or more",
                index=index,
                offset=commit.offset,
            )
        if not isinstance(commit.metadata, str):
            raise InvalidRequestError(
                f"commit {index}: metadata must be a string, got {type(commit.metadata).__name__}",
                index=index,
            )
        metadata_bytes = _utf8_length(commit.metadata, f"commit {index}: metadata")
        if metadata_bytes > MAX_OFFSET_METADATA_BYTES:
            raise InvalidRequestError(
                f"commit {index}: metadata is {metadata_bytes} bytes, more than the "
                f"maximum of {MAX_OFFSET_METADATA_BYTES}",
                index=index,
                size=metadata_bytes,
                limit=MAX_OFFSET_METADATA_BYTES,
            )
        entries.append(OffsetEntry(commit.topic, commit.partition, commit.offset, commit.metadata))
    return entries
