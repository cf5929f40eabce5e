"""Topic name rules and topic configuration.

Names follow Kafka's rules: 1 to 249 characters from ``[a-zA-Z0-9._-]``,
and neither ``.`` nor ``..``. No two topics may have names that differ only
by ``.`` versus ``_``, because Kafka turns ``.`` into ``_`` in metric names
and the two would report under one name.

Configuration uses Kafka's dotted names. A topic stores only the entries a
user set (its overrides); :func:`effective_config` fills in the defaults.
Values arrive as JSON integers or decimal strings, because Kafka configs
are strings on its wire.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kaflow.errors import (
    InvalidConfigError,
    InvalidPartitionsError,
    InvalidTopicNameError,
    TopicCollisionError,
)
from kaflow.storage.batch import record_size_estimate

__all__ = [
    "INDEX_INTERVAL_BYTES",
    "MAX_MESSAGE_BYTES",
    "MAX_TOPIC_NAME_LENGTH",
    "MIN_MAX_MESSAGE_BYTES",
    "RETENTION_BYTES",
    "RETENTION_MS",
    "SEGMENT_BYTES",
    "SEGMENT_MS",
    "TOPIC_CONFIGS",
    "ConfigSpec",
    "check_config_keys",
    "check_topic_collision",
    "effective_config",
    "parse_config",
    "parse_config_update",
    "topic_collision_key",
    "validate_partition_count",
    "validate_partition_growth",
    "validate_topic_name",
]

MAX_TOPIC_NAME_LENGTH = 249
_LEGAL_NAME = re.compile(r"[a-zA-Z0-9._-]+")

RETENTION_MS = "retention.ms"
RETENTION_BYTES = "retention.bytes"
SEGMENT_BYTES = "segment.bytes"
SEGMENT_MS = "segment.ms"
MAX_MESSAGE_BYTES = "max.message.bytes"
INDEX_INTERVAL_BYTES = "index.interval.bytes"

_INT32_MAX = 2**31 - 1
_INT64_MAX = 2**63 - 1
_DAY_MS = 24 * 60 * 60 * 1000
# Size of the smallest record (null key and value, no headers) as produce
# measures it against max.message.bytes: a lower limit would reject every record.
MIN_MAX_MESSAGE_BYTES = record_size_estimate(None, None, ())
# A config string is plain ASCII decimal: no sign other than '-', no spaces, no '_'.
_DECIMAL = re.compile(r"-?[0-9]+")
_MAX_DECIMAL_LENGTH = len(str(-_INT64_MAX))


@dataclass(frozen=True, slots=True)
class ConfigSpec:
    """One topic config entry: its default and the inclusive range of valid values."""

    name: str
    default: int
    minimum: int
    maximum: int
    description: str


TOPIC_CONFIGS: dict[str, ConfigSpec] = {
    spec.name: spec
    for spec in (
        ConfigSpec(
            RETENTION_MS,
            7 * _DAY_MS,
            -1,
            _INT64_MAX,
            "how long records are kept, in ms; -1 keeps them forever",
        ),
        ConfigSpec(
            RETENTION_BYTES,
            -1,
            -1,
            _INT64_MAX,
            "largest size of a partition log before old segments are deleted; -1 for no limit",
        ),
        ConfigSpec(
            SEGMENT_BYTES,
            128 * 1024 * 1024,
            1024,
            _INT32_MAX,
            "size at which a segment file is closed and a new one started, in bytes",
        ),
        ConfigSpec(
            SEGMENT_MS,
            7 * _DAY_MS,
            1,
            _INT64_MAX,
            "age at which a segment is closed and a new one started, in ms",
        ),
        ConfigSpec(
            MAX_MESSAGE_BYTES,
            1024 * 1024,
            MIN_MAX_MESSAGE_BYTES,
            _INT32_MAX,
            "largest record accepted, in bytes (key, value, headers and per-record overhead)",
        ),
        ConfigSpec(
            INDEX_INTERVAL_BYTES,
            4096,
            0,
            _INT32_MAX,
            "bytes of records between two offset index entries",
        ),
    )
}


def validate_topic_name(name: object) -> str:
    """Return ``name`` if it is a valid topic name; raise InvalidTopicNameError otherwise."""
    if not isinstance(name, str):
        raise InvalidTopicNameError(
            f"topic name must be a string, got {type(name).__name__}", expected="a string"
        )
    if not name:
        raise InvalidTopicNameError("topic name must not be empty", name=name)
    if len(name) > MAX_TOPIC_NAME_LENGTH:
        raise InvalidTopicNameError(
            f"topic name is {len(name)} characters long, more than the maximum of "
            f"{MAX_TOPIC_NAME_LENGTH}; use a shorter name",
            name=name,
            length=len(name),
            max=MAX_TOPIC_NAME_LENGTH,
        )
    if name in (".", ".."):
        raise InvalidTopicNameError(f"topic name {name!r} is reserved", name=name)
    if not _LEGAL_NAME.fullmatch(name):
        illegal = sorted({char for char in name if not _LEGAL_NAME.fullmatch(char)})
        raise InvalidTopicNameError(
            f"topic name {name!r} contains {''.join(illegal)!r}; only ASCII letters, "
            "digits, '.', '_' and '-' are allowed",
            name=name,
            illegal_characters=illegal,
        )
    return name


def topic_collision_key(name: str) -> str:
    """Return the name under which ``name`` would collide with another topic."""
    return name.replace(".", "_")


def check_topic_collision(name: str, existing: Iterable[str]) -> None:
    """Raise TopicCollisionError if ``name`` differs from an existing topic only by '.' vs '_'.

    An existing topic with exactly the same name is not a collision; callers
    check for that case separately (TopicAlreadyExistsError).
    """
    key = topic_collision_key(name)
    for other in existing:
        if other != name and topic_collision_key(other) == key:
            raise TopicCollisionError(
                f"topic name {name!r} collides with existing topic {other!r}: names that "
                "differ only by '.' and '_' are not allowed; choose another name",
                name=name,
                existing_topic=other,
            )


def validate_partition_count(partitions: object, max_partitions: int) -> int:
    """Return ``partitions`` if it is an int in 1..max_partitions; raise otherwise."""
    if isinstance(partitions, bool) or not isinstance(partitions, int):
        raise InvalidPartitionsError(
            f"partition count must be an integer, got {partitions!r}",
            expected="an integer",
        )
    if not 1 <= partitions <= max_partitions:
        raise InvalidPartitionsError(
            f"partition count {partitions} is outside the valid range 1..{max_partitions}",
            partitions=partitions,
            min=1,
            max=max_partitions,
        )
    return partitions


def validate_partition_growth(current: int, requested: object, max_partitions: int) -> int:
    """Return the requested partition count if it does not shrink the topic; raise otherwise."""
    partitions = validate_partition_count(requested, max_partitions)
    if partitions < current:
        raise InvalidPartitionsError(
            f"topic has {current} partitions and cannot shrink to {partitions}; "
            "a partition count can only grow",
            partitions=partitions,
            current_partitions=current,
        )
    return partitions


def _parse_value(spec: ConfigSpec, raw: object) -> int:
    if isinstance(raw, bool):
        value: int | None = None
    elif isinstance(raw, int):
        value = raw
    elif isinstance(raw, str) and _DECIMAL.fullmatch(raw):
        # Every valid value has at most 20 characters; int() of a much longer
        # string raises ValueError (Python limits it to 4300 digits).
        value = int(raw) if len(raw) <= _MAX_DECIMAL_LENGTH else None
        if value is None:
            raise _out_of_range(spec, raw, f"{raw[:_MAX_DECIMAL_LENGTH]}... ({len(raw)} digits)")
    else:
        value = None
    if value is None:
        excerpt = raw[:64] + "..." if isinstance(raw, str) and len(raw) > 64 else raw
        raise InvalidConfigError(
            f'config {spec.name} must be an integer or a decimal string such as "60000" '
            f"(no spaces or '+'), got {excerpt!r}",
            key=spec.name,
            value=raw,
        )
    if not spec.minimum <= value <= spec.maximum:
        raise _out_of_range(spec, value, str(value))
    return value


def _out_of_range(spec: ConfigSpec, value: object, shown: str) -> InvalidConfigError:
    return InvalidConfigError(
        f"config {spec.name}={shown} is outside the valid range {spec.minimum}..{spec.maximum}",
        key=spec.name,
        value=value,
        min=spec.minimum,
        max=spec.maximum,
    )


def _spec_for(key: object) -> ConfigSpec:
    spec = TOPIC_CONFIGS.get(key) if isinstance(key, str) else None
    if spec is None:
        valid = sorted(TOPIC_CONFIGS)
        raise InvalidConfigError(
            f"unknown topic config {key!r}; valid keys are {', '.join(valid)}",
            key=repr(key) if not isinstance(key, str) else key,
            valid_keys=valid,
        )
    return spec


def check_config_keys(keys: Iterable[str]) -> None:
    """Raise InvalidConfigError unless every key names a topic config entry."""
    for key in keys:
        _spec_for(key)


def parse_config(config: Mapping[str, Any]) -> dict[str, int]:
    """Validate the config of a new topic and return it as ints keyed by dotted name."""
    parsed: dict[str, int] = {}
    for key, raw in config.items():
        spec = _spec_for(key)
        if raw is None:
            raise InvalidConfigError(
                f"config {spec.name} has no value; omit the key to use the default "
                f"({spec.default})",
                key=spec.name,
            )
        parsed[spec.name] = _parse_value(spec, raw)
    return parsed


def parse_config_update(config: Mapping[str, Any]) -> tuple[dict[str, int], list[str]]:
    """Validate a config update; return the entries to set and the keys to reset.

    A value of None resets that entry to its default.
    """
    to_set: dict[str, int] = {}
    to_reset: list[str] = []
    for key, raw in config.items():
        spec = _spec_for(key)
        if raw is None:
            to_reset.append(spec.name)
        else:
            to_set[spec.name] = _parse_value(spec, raw)
    return to_set, sorted(to_reset)


def effective_config(overrides: Mapping[str, int]) -> dict[str, int]:
    """Return every topic config entry: the override where set, the default otherwise."""
    return {name: overrides.get(name, spec.default) for name, spec in TOPIC_CONFIGS.items()}
