"""Values the API rejects, and the details its errors carry: group names, config strings, limits."""

from __future__ import annotations

import pytest

from kaflow.topics import MIN_MAX_MESSAGE_BYTES
from tests.server.conftest import Api

pytestmark = pytest.mark.asyncio(loop_scope="package")


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_empty_group_is_invalid_group_name(api: Api, topic: str, method: str) -> None:
    await api.create_topic(topic)
    body = {"offsets": [{"topic": topic, "partition": 0, "offset": 0}]}

    reply = await api.call(
        method, "/v1/groups//offsets", json_body=body if method == "POST" else None
    )

    assert reply.status == 400
    assert reply.code == "invalid_group_name"
    assert reply.error["details"] == {"group": "", "min": 1, "max": 255}


async def test_long_group_name_gives_length_and_limit(api: Api, topic: str) -> None:
    await api.create_topic(topic)
    group = "g" * 300

    reply = await api.call(
        "POST",
        f"/v1/groups/{group}/offsets",
        json_body={"offsets": [{"topic": topic, "partition": 0, "offset": 0}]},
    )

    assert reply.status == 400
    assert reply.code == "invalid_group_name"
    assert reply.error["details"] == {"group": group, "length": 300, "max": 255}
    assert "is 300 characters long, more than the maximum of 255" in reply.error["message"]


@pytest.mark.parametrize(
    ("path_segment", "group"),
    [("a%2Fb", "a/b"), ("a%20b", "a b"), ("caf%C3%A9", "café")],
    ids=["slash", "space", "non-ascii"],
)
async def test_group_name_character_rules(api: Api, path_segment: str, group: str) -> None:
    reply = await api.call("GET", f"/v1/groups/{path_segment}/offsets")

    assert reply.status == 400
    assert reply.code == "invalid_group_name"
    assert reply.error["details"]["group"] == group


async def test_valid_group_name_reaches_broker(api: Api) -> None:
    reply = await api.call("GET", "/v1/groups/billing.v2_eu-1/offsets")

    assert reply.status == 404
    assert reply.code == "unknown_group"


async def test_index_lists_group_path_without_pattern(api: Api) -> None:
    reply = await api.call("GET", "/v1")

    paths = {endpoint["path"] for endpoint in reply.body["endpoints"]}
    assert "/v1/groups/{group}/offsets" in paths


@pytest.mark.parametrize("value", [" 60000", "60000\n", "60000 ", "+60000", "6_0000"], ids=repr)
async def test_config_string_with_extra_characters_rejected(
    api: Api, topic: str, value: str
) -> None:
    reply = await api.call(
        "POST",
        "/v1/topics",
        json_body={"name": topic, "config": {"retention.ms": value}},
    )

    assert reply.status == 400
    assert reply.code == "invalid_config"
    assert reply.error["details"] == {"key": "retention.ms", "value": value}
    assert topic not in await api.topic_names()


async def test_config_out_of_range_uses_min_max(api: Api, topic: str) -> None:
    reply = await api.call(
        "POST", "/v1/topics", json_body={"name": topic, "config": {"segment.bytes": 5}}
    )

    assert reply.status == 400
    assert reply.error["details"] == {
        "key": "segment.bytes",
        "value": 5,
        "min": 1024,
        "max": 2**31 - 1,
    }


async def test_config_null_on_create_message(api: Api, topic: str) -> None:
    reply = await api.call(
        "POST", "/v1/topics", json_body={"name": topic, "config": {"retention.ms": None}}
    )

    assert reply.status == 400
    assert reply.error["message"] == (
        "config 'retention.ms' must be an integer or a decimal string, got null; "
        "omit the key to use the default"
    )


async def test_create_topic_null_partitions_rejected(api: Api, topic: str) -> None:
    reply = await api.call("POST", "/v1/topics", json_body={"name": topic, "partitions": None})

    assert reply.status == 400
    assert reply.code == "malformed_body"
    assert reply.error["details"]["field"] == "partitions"
    assert topic not in await api.topic_names()


async def test_max_message_bytes_below_minimum_rejected(api: Api, topic: str) -> None:
    reply = await api.call(
        "POST",
        "/v1/topics",
        json_body={"name": topic, "config": {"max.message.bytes": MIN_MAX_MESSAGE_BYTES - 1}},
    )

    assert reply.status == 400
    assert reply.code == "invalid_config"
    assert reply.error["details"]["min"] == MIN_MAX_MESSAGE_BYTES


async def test_max_message_bytes_minimum_accepts_empty_record(api: Api, topic: str) -> None:
    await api.create_topic(topic, **{"max.message.bytes": MIN_MAX_MESSAGE_BYTES})

    produced = await api.produce(topic, [{"key": None, "value": None}])

    assert produced[0]["offset"] == 0


async def test_unknown_partition_details_are_ints(api: Api, topic: str) -> None:
    await api.create_topic(topic)

    reply = await api.call(
        "POST", f"/v1/topics/{topic}/records", json_body={"records": [{"partition": 2}]}
    )

    assert reply.status == 404
    assert reply.code == "unknown_partition"
    assert reply.error["details"]["partition"] == 2


async def test_offset_past_64_bits_is_out_of_range(api: Api, topic: str) -> None:
    await api.create_topic(topic)
    offset = "1" * 21

    reply = await api.call("GET", f"/v1/topics/{topic}/partitions/0/records?offset={offset}")

    assert reply.status == 400
    assert reply.code == "invalid_offset"
    assert "is outside the 64-bit integer range" in reply.error["message"]
    assert reply.error["details"]["value"] == offset


async def test_offset_lookup_of_bad_at_carries_raw_value(api: Api, topic: str) -> None:
    await api.create_topic(topic)
    value = "x" * 100

    reply = await api.call("GET", f"/v1/topics/{topic}/partitions/0/offsets?at={value}")

    assert reply.status == 400
    assert reply.error["details"]["value"] == value
