"""Per-partition log settings, with Kafka's topic configuration names."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from kaflow.errors import InvalidConfigError

__all__ = ["LogConfig"]

_INT32_MAX = 2**31 - 1
_INT64_MAX = 2**63 - 1

# Kafka's dotted name of each field, and the smallest value it accepts.
_PROPERTIES: dict[str, tuple[str, int]] = {
    "segment_bytes": ("segment.bytes", 1),
    "segment_ms": ("segment.ms", 1),
    "retention_ms": ("retention.ms", -1),
    "retention_bytes": ("retention.bytes", -1),
    "index_interval_bytes": ("index.interval.bytes", 0),
}
# segment.bytes and index.interval.bytes are 32-bit in Kafka; index
# positions are u32 and a segment may exceed segment.bytes by one batch.
_MAXIMUMS = {"segment_bytes": _INT32_MAX, "index_interval_bytes": _INT32_MAX}


@dataclass(frozen=True, slots=True)
class LogConfig:
    """Segment and retention settings of one partition log.

    Sizes are bytes and durations milliseconds; -1 means unlimited for the
    retention settings.
    """

    # Roll to a new segment before an append would make the active one larger.
    segment_bytes: int = 128 * 1024 * 1024
    # Roll when a batch's first timestamp is this far past the active segment's first batch.
    segment_ms: int = 7 * 24 * 60 * 60 * 1000
    # Closed segments whose max timestamp is older than this may be deleted.
    retention_ms: int = 7 * 24 * 60 * 60 * 1000
    # Oldest closed segments may be deleted while the log stays at least this large.
    retention_bytes: int = -1
    # Bytes appended between two offset index entries.
    index_interval_bytes: int = 4096

    def __post_init__(self) -> None:
        for field in fields(self):
            name, minimum = _PROPERTIES[field.name]
            value = getattr(self, field.name)
            maximum = _MAXIMUMS.get(field.name, _INT64_MAX)
            if not isinstance(value, int) or isinstance(value, bool):
                raise InvalidConfigError(
                    f"{name} must be an integer, got {value!r}", name=name, value=value
                )
            if not minimum <= value <= maximum:
                raise InvalidConfigError(
                    f"{name} is {value}; set it between {minimum} and {maximum}",
                    name=name,
                    value=value,
                    min=minimum,
                    max=maximum,
                )

    @classmethod
    def from_topic_config(cls, config: Mapping[str, Any]) -> LogConfig:
        """Build a LogConfig from Kafka's dotted names; other keys are ignored.

        Missing keys take the defaults above.
        """
        values = {field: config[name] for field, (name, _) in _PROPERTIES.items() if name in config}
        return cls(**values)

    def to_topic_config(self) -> dict[str, int]:
        """Return the settings under Kafka's dotted names."""
        return {name: getattr(self, field) for field, (name, _) in _PROPERTIES.items()}
