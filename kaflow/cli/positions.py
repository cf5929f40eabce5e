"""Start and stop offsets of `kaflow consume` for each partition."""

from __future__ import annotations

import argparse
import datetime
import sys
from dataclasses import dataclass
from typing import Any

from kaflow.cli.http import NodeClient
from kaflow.errors import OffsetOutOfRangeError, UnknownGroupError, UnknownPartitionError

__all__ = [
    "PartitionPosition",
    "StartSpec",
    "parse_start_offset",
    "parse_timestamp_ms",
    "resolve_positions",
]

# A start offset given as --offset: a number, "earliest" or "latest".
StartSpec = int | str


@dataclass
class PartitionPosition:
    """The next offset to read from one partition.

    ``end_offset`` is the high watermark when the command started; without
    --follow, reading stops there.
    """

    partition: int
    offset: int
    end_offset: int


def parse_start_offset(text: str) -> StartSpec:
    """Parse --offset: ``earliest``, ``latest`` or an offset of 0 or more."""
    if text in ("earliest", "latest"):
        return text
    try:
        offset = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid offset {text!r}: expected earliest, latest or an offset of 0 or more"
        ) from None
    if offset < 0:
        raise argparse.ArgumentTypeError(f"invalid offset {offset}: must be 0 or more")
    return offset


def parse_timestamp_ms(text: str) -> int:
    """Parse --from-time: milliseconds since the Unix epoch, or an ISO-8601 date and time.

    An ISO-8601 value without a UTC offset is local time.
    """
    if text.isascii() and text.isdigit():
        return int(text)
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid time {text!r}: expected milliseconds since the Unix epoch or ISO-8601, "
            "for example 2024-05-01T12:00:00Z"
        ) from None
    timestamp_ms = int(moment.timestamp() * 1000)
    if timestamp_ms < 0:
        raise argparse.ArgumentTypeError(f"invalid time {text!r}: before the Unix epoch")
    return timestamp_ms


def resolve_positions(
    client: NodeClient,
    topic: dict[str, Any],
    partition: int | None,
    start: StartSpec | None,
    from_time_ms: int | None,
    group: str | None,
) -> list[PartitionPosition]:
    """Return the start offset of every partition to read, in partition order.

    A group's committed offset takes precedence. Partitions without one
    start at --from-time, then --offset, and by default at the log start
    offset.
    """
    name = str(topic["name"])
    partitions = {int(info["partition"]): info for info in topic["partitions"]}
    if partition is not None and partition not in partitions:
        raise UnknownPartitionError(
            f"partition {partition} does not exist in topic {name}, which has "
            f"partitions 0..{len(partitions) - 1}; pick one of them with --partition",
            topic=name,
            partition=partition,
            partitions=len(partitions),
        )
    selected = sorted(partitions) if partition is None else [partition]
    committed = _committed_offsets(client, group, name) if group is not None else {}

    positions = []
    for number in selected:
        info = partitions[number]
        log_start, high_watermark = int(info["log_start_offset"]), int(info["high_watermark"])
        if number in committed:
            offset = _clamp_committed(name, number, committed[number], log_start, high_watermark)
        elif from_time_ms is not None:
            offset = _offset_for_time(client, name, number, from_time_ms, high_watermark)
        else:
            offset = _offset_for_spec(name, number, start, log_start, high_watermark)
        positions.append(PartitionPosition(number, offset, high_watermark))
    return positions


def _committed_offsets(client: NodeClient, group: str, topic: str) -> dict[int, int]:
    try:
        entries = client.committed_offsets(group)
    except UnknownGroupError:
        return {}
    return {
        int(entry["partition"]): int(entry["offset"])
        for entry in entries
        if entry["topic"] == topic
    }


def _clamp_committed(
    topic: str, partition: int, committed: int, log_start: int, high_watermark: int
) -> int:
    """Move a committed offset that retention or truncation made invalid into the log's range."""
    if log_start <= committed <= high_watermark:
        return committed
    clamped = min(max(committed, log_start), high_watermark)
    print(
        f"note: committed offset {committed} of {topic} partition {partition} is outside "
        f"{log_start}..{high_watermark}; starting at {clamped}",
        file=sys.stderr,
    )
    return clamped


def _offset_for_time(
    client: NodeClient, topic: str, partition: int, timestamp_ms: int, high_watermark: int
) -> int:
    # The node returns offset null when no record has a timestamp at or after
    # the time. Reading then starts at the end, like Kafka's offsetsForTimes.
    found = client.lookup_offset(topic, partition, timestamp_ms)["offset"]
    return high_watermark if found is None else int(found)


def _offset_for_spec(
    topic: str, partition: int, start: StartSpec | None, log_start: int, high_watermark: int
) -> int:
    if start is None or start == "earliest":
        return log_start
    if start == "latest":
        return high_watermark
    offset = int(start)
    if not log_start <= offset <= high_watermark:
        raise OffsetOutOfRangeError(
            f"offset {offset} is out of range for {topic} partition {partition}: valid "
            f"offsets are {log_start}..{high_watermark}; use --offset earliest or latest",
            offset=offset,
            log_start_offset=log_start,
            high_watermark=high_watermark,
        )
    return offset
