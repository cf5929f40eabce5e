from __future__ import annotations

from typing import Any

import pytest

from kaflow.errors import (
    InvalidConfigError,
    InvalidPartitionsError,
    InvalidTopicNameError,
    TopicCollisionError,
)
from kaflow.topics import (
    MAX_TOPIC_NAME_LENGTH,
    TOPIC_CONFIGS,
    check_config_keys,
    check_topic_collision,
    effective_config,
    parse_config,
    parse_config_update,
    validate_partition_count,
    validate_partition_growth,
    validate_topic_name,
)


@pytest.mark.parametrize(
    "name",
    [
        "orders",
        "a",
        "A.b_c-D9",
        "...",
        "_",
        "x" * MAX_TOPIC_NAME_LENGTH,
    ],
    ids=["word", "one-char", "all-classes", "three-dots", "underscore", "max-length"],
)
def test_topic_name_valid(name: str) -> None:
    assert validate_topic_name(name) == name


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("", "must not be empty"),
        ("x" * (MAX_TOPIC_NAME_LENGTH + 1), "250 characters long, more than the maximum of 249"),
        (".", "reserved"),
        ("..", "reserved"),
        ("a b", "contains ' '"),
        ("a/b", "contains '/'"),
        ("tópico", "contains 'ó'"),
        ("a:b", "contains ':'"),
        (42, "must be a string"),
    ],
    ids=["empty", "too-long", "dot", "dot-dot", "space", "slash", "non-ascii", "colon", "not-str"],
)
def test_topic_name_invalid(name: Any, match: str) -> None:
    with pytest.raises(InvalidTopicNameError, match=match):
        validate_topic_name(name)


@pytest.mark.parametrize(
    ("name", "existing"),
    [("a.b", ["a_b"]), ("a_b", ["x", "a.b"]), ("a.b_c", ["a_b.c"])],
    ids=["dot-vs-underscore", "underscore-vs-dot", "mixed"],
)
def test_topic_collision_rejected(name: str, existing: list[str]) -> None:
    with pytest.raises(TopicCollisionError, match="collides with existing topic") as raised:
        check_topic_collision(name, existing)

    assert raised.value.details["name"] == name


def test_topic_collision_ignores_same_name_and_others() -> None:
    check_topic_collision("a.b", ["a.b", "ab", "a-b"])


def test_config_accepts_ints_and_decimal_strings() -> None:
    parsed = parse_config({"retention.ms": "-1", "segment.bytes": 1024, "retention.bytes": "5"})

    assert parsed == {"retention.ms": -1, "segment.bytes": 1024, "retention.bytes": 5}


def test_config_unknown_key_lists_valid_keys() -> None:
    with pytest.raises(
        InvalidConfigError, match=r"unknown topic config 'cleanup\.policy'"
    ) as raised:
        parse_config({"cleanup.policy": "compact"})

    assert raised.value.details["valid_keys"] == sorted(TOPIC_CONFIGS)
    assert "retention.ms" in raised.value.message


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("segment.bytes", 1023, "segment.bytes=1023 is outside the valid range 1024..2147483647"),
        ("segment.bytes", 2**31, "outside the valid range 1024..2147483647"),
        ("retention.ms", -2, "retention.ms=-2 is outside the valid range -1.."),
        ("retention.bytes", "-2", "retention.bytes=-2 is outside"),
        ("segment.ms", 0, "segment.ms=0 is outside the valid range 1.."),
        ("max.message.bytes", -1, "max.message.bytes=-1 is outside the valid range 19.."),
        ("max.message.bytes", 18, "max.message.bytes=18 is outside the valid range 19.."),
        ("index.interval.bytes", -1, "index.interval.bytes=-1 is outside"),
    ],
    ids=[
        "segment-bytes-below-min",
        "segment-bytes-above-max",
        "retention-ms-below-forever",
        "retention-bytes-string",
        "segment-ms-zero",
        "max-message-bytes-negative",
        "max-message-bytes-below-empty-record",
        "index-interval-negative",
    ],
)
def test_config_value_out_of_range(key: str, value: Any, match: str) -> None:
    with pytest.raises(InvalidConfigError, match=match) as raised:
        parse_config({key: value})

    assert raised.value.details["key"] == key


@pytest.mark.parametrize(
    "value",
    [True, 1.5, "1e3", "12ms", "", None, [1], " 5 ", "5\n", "+5", "1_000"],
    ids=[
        "bool",
        "float",
        "exponent",
        "suffix",
        "empty-string",
        "none",
        "list",
        "spaces",
        "newline",
        "plus",
        "underscore",
    ],
)
def test_config_value_wrong_type(value: Any) -> None:
    with pytest.raises(InvalidConfigError, match=r"retention\.ms"):
        parse_config({"retention.ms": value})


def test_config_update_none_resets() -> None:
    to_set, to_reset = parse_config_update({"retention.ms": None, "segment.ms": "60000"})

    assert to_set == {"segment.ms": 60000}
    assert to_reset == ["retention.ms"]


def test_config_update_unknown_key_rejected() -> None:
    with pytest.raises(InvalidConfigError, match="unknown topic config"):
        parse_config_update({"retention": None})


def test_check_config_keys_rejects_unknown() -> None:
    check_config_keys(["retention.ms", "segment.bytes"])

    with pytest.raises(InvalidConfigError, match="'nope'"):
        check_config_keys(["nope"])


def test_effective_config_fills_defaults() -> None:
    config = effective_config({"retention.ms": -1})

    assert config == {
        "retention.ms": -1,
        "retention.bytes": -1,
        "segment.bytes": 128 * 1024 * 1024,
        "segment.ms": 7 * 24 * 60 * 60 * 1000,
        "max.message.bytes": 1048576,
        "index.interval.bytes": 4096,
    }


@pytest.mark.parametrize(
    ("partitions", "match"),
    [
        (0, "outside the valid range 1..10"),
        (11, "11 is outside"),
        (True, "integer"),
        ("3", "integer"),
    ],
    ids=["zero", "above-max", "bool", "string"],
)
def test_partition_count_invalid(partitions: Any, match: str) -> None:
    with pytest.raises(InvalidPartitionsError, match=match):
        validate_partition_count(partitions, 10)


def test_partition_count_bounds_accepted() -> None:
    assert validate_partition_count(1, 10) == 1
    assert validate_partition_count(10, 10) == 10


def test_partition_growth_rejects_shrink() -> None:
    with pytest.raises(InvalidPartitionsError, match="cannot shrink to 2") as raised:
        validate_partition_growth(3, 2, 10)

    assert raised.value.details == {"partitions": 2, "current_partitions": 3}


def test_partition_growth_accepts_same_and_more() -> None:
    assert validate_partition_growth(3, 3, 10) == 3
    assert validate_partition_growth(3, 5, 10) == 5
