"""Value types of the client and their conversion to and from the JSON API.

Keys, values and header values are bytes. The client always sends them as
``*_b64`` fields and fetches with ``encoding=base64``, so no byte string
depends on being valid UTF-8.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from kaflow.errors import MalformedBodyError

__all__ = [
    "ConsumerRecord",
    "Header",
    "OffsetAndTimestamp",
    "RecordMetadata",
    "TopicPartition",
    "decode_record",
    "encode_record",
    "record_size",
]

Header = tuple[str, bytes]


class TopicPartition(NamedTuple):
    """One partition of one topic."""

    topic: str
    partition: int


@dataclass(frozen=True)
class RecordMetadata:
    """The partition, offset and timestamp the node stored a produced record at."""

    topic: str
    partition: int
    offset: int
    timestamp: int


@dataclass(frozen=True)
class ConsumerRecord:
    """One record read from a partition."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[Header, ...]


@dataclass(frozen=True)
class OffsetAndTimestamp:
    """The first offset whose record timestamp is at or after a given time, with that timestamp."""

    offset: int
    timestamp: int


# Bytes per record that the node adds besides key, value and headers; the
# node's own limit check uses 19 bytes for an empty record.
_RECORD_OVERHEAD = 19


def record_size(key: bytes | None, value: bytes | None, headers: Sequence[Header]) -> int:
    """Estimate the bytes a record occupies in the producer's buffer."""
    size = _RECORD_OVERHEAD + len(key or b"") + len(value or b"")
    for name, header_value in headers:
        size += len(name.encode()) + len(header_value)
    return size


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def encode_record(
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[Header],
    partition: int,
    timestamp: int | None,
) -> dict[str, Any]:
    """Build one ``ProduceRecord`` object of a produce request body."""
    record: dict[str, Any] = {
        "key_b64": _b64(key),
        "value_b64": _b64(value),
        "partition": partition,
    }
    if headers:
        record["headers"] = [{"name": name, "value_b64": _b64(data)} for name, data in headers]
    if timestamp is not None:
        record["timestamp"] = timestamp
    return record


def _unb64(record: dict[str, Any], field: str) -> bytes | None:
    text = record.get(field)
    if text is None:
        return None
    if not isinstance(text, str):
        raise MalformedBodyError(f"fetched record field {field!r} is {text!r}, not base64 text")
    return base64.b64decode(text, validate=True)


def decode_record(topic: str, partition: int, record: dict[str, Any]) -> ConsumerRecord:
    """Build a ConsumerRecord from one record of a fetch response with ``encoding=base64``."""
    headers: list[Header] = []
    for header in record.get("headers") or []:
        headers.append((str(header["name"]), _unb64(header, "value_b64") or b""))
    return ConsumerRecord(
        topic=topic,
        partition=partition,
        offset=int(record["offset"]),
        timestamp=int(record["timestamp"]),
        key=_unb64(record, "key_b64"),
        value=_unb64(record, "value_b64"),
        headers=tuple(headers),
    )
