from __future__ import annotations

import pytest

from tests.server.conftest import Api

pytestmark = pytest.mark.asyncio(loop_scope="package")


async def test_create_topic_returns_201_and_location(api: Api, topic: str) -> None:
    reply = await api.call(
        "POST",
        "/v1/topics",
        json_body={"name": topic, "partitions": 3, "config": {"retention.ms": 60000}},
    )

    assert reply.status == 201
    assert reply.headers["Location"] == f"/v1/topics/{topic}"
    assert reply.body["name"] == topic
    assert [p["partition"] for p in reply.body["partitions"]] == [0, 1, 2]
    assert all(p["log_start_offset"] == 0 for p in reply.body["partitions"])
    assert all(p["high_watermark"] == 0 for p in reply.body["partitions"])
    assert reply.body["config"]["retention.ms"] == 60000


async def test_create_topic_defaults_to_one_partition(api: Api, topic: str) -> None:
    reply = await api.call("POST", "/v1/topics", json_body={"name": topic})

    assert reply.status == 201
    assert len(reply.body["partitions"]) == 1
    assert "max.message.bytes" in reply.body["config"]


async def test_create_topic_accepts_decimal_string_config(api: Api, topic: str) -> None:
    reply = await api.call(
        "POST", "/v1/topics", json_body={"name": topic, "config": {"retention.ms": "120000"}}
    )

    assert reply.status == 201
    assert reply.body["config"]["retention.ms"] == 120000


async def test_list_topics_includes_created(api: Api, topic: str) -> None:
    await api.create_topic(topic, partitions=2)

    reply = await api.call("GET", "/v1/topics")

    assert reply.status == 200
    names = [t["name"] for t in reply.body["topics"]]
    listed = {t["name"]: t for t in reply.body["topics"]}
    assert names == sorted(names)
    assert topic in listed
    assert len(listed[topic]["partitions"]) == 2


async def test_describe_topic_shows_high_watermark(api: Api, topic: str) -> None:
    await api.create_topic(topic)
    await api.produce(topic, [{"value": "a"}, {"value": "b"}])

    reply = await api.call("GET", f"/v1/topics/{topic}")

    assert reply.status == 200
    assert reply.body["partitions"] == [
        {"partition": 0, "log_start_offset": 0, "high_watermark": 2}
    ]


async def test_describe_unknown_topic_is_404(api: Api, topic: str) -> None:
    reply = await api.call("GET", f"/v1/topics/{topic}")

    assert reply.status == 404
    assert reply.code == "unknown_topic"
    assert reply.error["retriable"] is False


async def test_alter_topic_grows_partitions(api: Api, topic: str) -> None:
    await api.create_topic(topic, partitions=1)

    reply = await api.call("PATCH", f"/v1/topics/{topic}", json_body={"partitions": 4})

    assert reply.status == 200
    assert len(reply.body["partitions"]) == 4
    assert await api.high_watermarks(topic) == [0, 0, 0, 0]


async def test_alter_topic_sets_and_resets_config(api: Api, topic: str) -> None:
    created = await api.create_topic(topic)
    default_retention = created["config"]["retention.ms"]

    changed = await api.call(
        "PATCH", f"/v1/topics/{topic}", json_body={"config": {"retention.ms": 1000}}
    )
    reset = await api.call(
        "PATCH", f"/v1/topics/{topic}", json_body={"config": {"retention.ms": None}}
    )

    assert changed.status == 200
    assert changed.body["config"]["retention.ms"] == 1000
    assert reset.status == 200
    assert reset.body["config"]["retention.ms"] == default_retention


async def test_alter_topic_cannot_shrink(api: Api, topic: str) -> None:
    await api.create_topic(topic, partitions=3)

    reply = await api.call("PATCH", f"/v1/topics/{topic}", json_body={"partitions": 2})

    assert reply.status == 400
    assert reply.code == "invalid_partitions"
    assert await api.high_watermarks(topic) == [0, 0, 0]


async def test_delete_topic_returns_204(api: Api, topic: str) -> None:
    await api.create_topic(topic)

    reply = await api.call("DELETE", f"/v1/topics/{topic}")

    assert reply.status == 204
    assert reply.body == b""
    assert topic not in await api.topic_names()


async def test_delete_unknown_topic_is_404(api: Api, topic: str) -> None:
    reply = await api.call("DELETE", f"/v1/topics/{topic}")

    assert reply.status == 404
    assert reply.code == "unknown_topic"


async def test_create_existing_topic_is_409(api: Api, topic: str) -> None:
    await api.create_topic(topic, partitions=2)

    reply = await api.call("POST", "/v1/topics", json_body={"name": topic, "partitions": 5})

    assert reply.status == 409
    assert reply.code == "topic_already_exists"
    assert await api.high_watermarks(topic) == [0, 0]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"name": "x", "partitions": "3"}, 400, "malformed_body"),
        ({"name": "x", "partitions": True}, 400, "malformed_body"),
        ({"name": "x", "partitions": 2.0}, 400, "malformed_body"),
        ({"name": "x", "partitions": 0}, 400, "invalid_partitions"),
        ({"name": "x", "partitions": -1}, 400, "invalid_partitions"),
        ({"name": "x", "partitions": 1001}, 400, "invalid_partitions"),
        ({"name": "x", "partitions": 10**30}, 400, "invalid_partitions"),
        ({"partitions": 1}, 400, "malformed_body"),
        ({"name": 5}, 400, "malformed_body"),
        ({"name": "x", "config": []}, 400, "malformed_body"),
        ({"name": "x", "config": {"retention.ms": [1]}}, 400, "invalid_config"),
        ({"name": "x", "config": {"retention.ms": None}}, 400, "invalid_config"),
        ({"name": "x", "config": {"retention.ms": True}}, 400, "invalid_config"),
        ({"name": "x", "config": {"no.such.key": 1}}, 400, "invalid_config"),
        ({"name": "x", "config": {"retention.ms": "soon"}}, 400, "invalid_config"),
        ({"name": "x", "partiton": 1}, 400, "malformed_body"),
        ([{"name": "x"}], 400, "malformed_body"),
        ({"name": "a/b"}, 400, "invalid_topic_name"),
        ({"name": ""}, 400, "invalid_topic_name"),
        ({"name": ".."}, 400, "invalid_topic_name"),
    ],
    ids=[
        "partitions-string",
        "partitions-bool",
        "partitions-float",
        "partitions-zero",
        "partitions-negative",
        "partitions-over-max",
        "partitions-huge",
        "name-missing",
        "name-number",
        "config-array",
        "config-value-array",
        "config-value-null-on-create",
        "config-value-bool",
        "config-unknown-key",
        "config-value-not-decimal",
        "unknown-field",
        "body-array",
        "name-slash",
        "name-empty",
        "name-dots",
    ],
)
async def test_create_topic_rejects_bad_body(
    api: Api, topic: str, body: object, status: int, code: str
) -> None:
    if isinstance(body, dict) and body.get("name") == "x":
        body = {**body, "name": topic}
    before = await api.topic_names()

    reply = await api.call("POST", "/v1/topics", json_body=body)

    assert reply.status == status, reply.body
    assert reply.code == code
    assert reply.error["message"]
    assert await api.topic_names() == before


async def test_create_topic_error_names_field_and_limit(api: Api, topic: str) -> None:
    reply = await api.call("POST", "/v1/topics", json_body={"name": topic, "partitions": 5000})

    assert reply.code == "invalid_partitions"
    assert "5000" in reply.error["message"]
    assert "1000" in reply.error["message"]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({}, "invalid_request"),
        ({"partitions": "4"}, "malformed_body"),
        ({"config": {"retention.ms": {}}}, "invalid_config"),
        ({"config": {"no.such.key": 1}}, "invalid_config"),
        ({"name": "renamed"}, "malformed_body"),
    ],
    ids=["nothing-to-change", "partitions-string", "config-object", "config-unknown", "rename"],
)
async def test_alter_topic_rejects_bad_body(
    api: Api, topic: str, body: dict[str, object], code: str
) -> None:
    created = await api.create_topic(topic, partitions=2)

    reply = await api.call("PATCH", f"/v1/topics/{topic}", json_body=body)

    assert reply.status == 400, reply.body
    assert reply.code == code
    described = await api.call("GET", f"/v1/topics/{topic}")
    assert described.body == created


async def test_alter_unknown_topic_is_404(api: Api, topic: str) -> None:
    reply = await api.call("PATCH", f"/v1/topics/{topic}", json_body={"partitions": 2})

    assert reply.status == 404
    assert reply.code == "unknown_topic"
    assert topic not in await api.topic_names()
