from __future__ import annotations

import base64

import msgpack
import pytest

from tests.server.conftest import Api
from tests.server.helpers import MSGPACK

pytestmark = pytest.mark.asyncio(loop_scope="package")

NON_UTF8 = b"\xff\xfe\x00\x80raw"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def records_path(topic: str, partition: int = 0) -> str:
    return f"/v1/topics/{topic}/partitions/{partition}/records"


async def test_produce_returns_offsets_in_request_order(api: Api, topic: str) -> None:
    await api.create_topic(topic)

    reply = await api.call(
        "POST",
        f"/v1/topics/{topic}/records",
        json_body={"records": [{"value": "a"}, {"value": "b"}, {"value": "c"}]},
    )

    assert reply.status == 200
    assert reply.content_type == "application/json"
    assert [r["offset"] for r in reply.body["records"]] == [0, 1, 2]
    assert {r["partition"] for r in reply.body["records"]} == {0}
    assert all(isinstance(r["timestamp"], int) for r in reply.body["records"])


async def test_produce_keeps_partition_and_timestamp(api: Api, topic: str) -> None:
    await api.create_topic(topic, partitions=3)

    produced = await api.produce(topic, [{"value": "v", "partition": 2, "timestamp": 1234}])
    fetched = await api.call("GET", records_path(topic, 2) + "?offset=0")

    assert produced == [{"partition": 2, "offset": 0, "timestamp": 1234}]
    assert fetched.body["records"][0]["timestamp"] == 1234
    assert await api.high_watermarks(topic) == [0, 0, 1]


async def test_produce_same_key_same_partition(api: Api, topic: str) -> None:
    await api.create_topic(topic, partitions=4)

    produced = await api.produce(topic, [{"key": "user-7", "value": str(i)} for i in range(5)])

    assert len({r["partition"] for r in produced}) == 1


async def test_fetch_returns_records_and_positions(api: Api, topic: str) -> None:
    await api.create_topic(topic)
    await api.produce(topic, [{"key": "k", "value": f"v{i}"} for i in range(5)])

    reply = await api.call("GET", records_path(topic) + "?offset=1&max_records=2")

    assert reply.status == 200
    assert reply.body["topic"] == topic
    assert reply.body["partition"] == 0
    assert [r["offset"] for r in reply.body["records"]] == [1, 2]
    assert [r["value"] for r in reply.body["records"]] == ["v1", "v2"]
    assert reply.body["records"][0]["key"] == "k"
    assert reply.body["next_offset"] == 3
    assert reply.body["high_watermark"] == 5
    assert reply.body["log_start_offset"] == 0


async def test_fetch_at_high_watermark_is_empty(api: Api, topic: str) -> None:
    await api.create_topic(topic)
    await api.produce(topic, [{"value": "only"}])

    reply = await api.call("GET", records_path(topic) + "?offset=1")

    assert reply.status == 200
    assert reply.body["records"] == []
    assert reply.body["next_offset"] == 1
    assert reply.body["high_watermark"] == 1


async def test_fetch_past_high_watermark_is_416(api: Api, topic: str) -> None:
    await api.create_topic(topic)
    await api.produce(topic, [{"value": "a"}, {"value": "b"}])

    reply = await api.call("GET", records_path(topic) + "?offset=7")

    assert reply.status == 416
    assert reply.code == "offset_out_of_range"
    assert reply.error["details"]["offset"] == 7
    assert reply.error["details"]["log_start_offset"] == 0
    assert reply.error["details"]["high_watermark"] == 2
    assert reply.error["retriable"] is False


async def test_null_and_empty_stay_distinct(api: Api, topic: str) -> None:
    await api.create_topic(topic)
    await api.produce(
        topic,
        [
            {"key": None, "value": None},
            {"key": "", "value": ""},
            {"value": "no key field"},
            {"key_b64": "", "value_b64": None},
        ],
    )

    records = (await api.call("GET", records_path(topic) + "?offset=0")).body["records"]

    assert (records[0]["key"], records[0]["value"]) == (None, None)
    assert (records[1]["key"], records[1]["value"]) == ("", "")
    assert (records[2]["key"], records[2]["value"]) == (None, "no key field")
    assert (records[3]["key"], records[3]["value"]) == ("", None)


async def test_b64_round_trips_non_utf8_bytes(api: Api, topic: str) -> None:
    await api.create_topic(topic)
    await api.produce(
        topic,
        [
            {
                "key_b64": b64(NON_UTF8),
                "value_b64": b64(NON_UTF8 * 3),
                "headers": [{"name": "h", "value_b64": b64(NON_UTF8)}],
            },
            {"key_b64": b64(b"text"), "value": "plain"},
        ],
    )

    records = (await api.call("GET", records_path(topic) + "?offset=0")).body["records"]

    assert "key" not in records[0]
    assert base64.b64decode(records[0]["key_b64"]) == NON_UTF8
    assert base64.b64decode(records[0]["value_b64"]) == NON_UTF8 * 3
    assert base64.b64decode(records[0]["headers"][0]["value_b64"]) == NON_UTF8
    # Bytes that are valid UTF-8 come back as text, however they were sent.
    assert records[1]["key"] == "text"
    assert records[1]["value"] == "plain"


async def test_fetch_base64_encoding_forces_b64(api: Api, topic: str) -> None:
    await api.create_topic(topic)
    await api.produce(
        topic,
        [{"key": "k", "value": "héllo", "headers": [{"name": "n", "value": "v"}]}, {"value": None}],
    )

    records = (await api.call("GET", records_path(topic) + "?offset=0&encoding=base64")).body[
        "records"
    ]

    assert records[0]["key_b64"] == b64(b"k")
    assert records[0]["value_b64"] == b64("héllo".encode())
    assert records[0]["headers"] == [{"name": "n", "value_b64": b64(b"v")}]
    assert "key" not in records[0]
    assert "value" not in records[0]
    assert records[1]["key_b64"] is None
    assert records[1]["value_b64"] is None


async def test_headers_keep_order_and_duplicates(api: Api, topic: str) -> None:
    headers = [
        {"name": "z", "value": "1"},
        {"name": "a", "value": "2"},
        {"name": "z", "value": "3"},
        {"name": "m", "value": ""},
    ]
    await api.create_topic(topic)
    await api.produce(topic, [{"value": "v", "headers": headers}])

    records = (await api.call("GET", records_path(topic) + "?offset=0")).body["records"]

    assert records[0]["headers"] == headers


async def test_msgpack_round_trips_binary(api: Api, topic: str) -> None:
    await api.create_topic(topic)
    body = msgpack.packb(
        {
            "records": [
                {
                    "key": NON_UTF8,
                    "value": bytes(range(256)),
                    "headers": [{"name": "h", "value": b"\x00"}],
                },
                {"key": None, "value": b""},
                {"key": "text key", "value": None},
            ]
        },
        use_bin_type=True,
    )

    produced = await api.call(
        "POST",
        f"/v1/topics/{topic}/records",
        data=body,
        headers={"Content-Type": MSGPACK, "Accept": MSGPACK},
    )
    fetched = await api.call("GET", records_path(topic) + "?offset=0", headers={"Accept": MSGPACK})

    assert produced.status == 200
    assert produced.content_type == MSGPACK
    assert [r["offset"] for r in produced.body["records"]] == [0, 1, 2]
    assert fetched.content_type == MSGPACK
    records = fetched.body["records"]
    assert records[0]["key"] == NON_UTF8
    assert records[0]["value"] == bytes(range(256))
    assert records[0]["headers"] == [{"name": "h", "value": b"\x00"}]
    assert (records[1]["key"], records[1]["value"]) == (None, b"")
    assert (records[2]["key"], records[2]["value"]) == (b"text key", None)
    assert fetched.body["next_offset"] == 3


async def test_msgpack_request_json_response(api: Api, topic: str) -> None:
    await api.create_topic(topic)
    body = msgpack.packb({"records": [{"value": b"\xff\x01"}]}, use_bin_type=True)

    reply = await api.call(
        "POST", f"/v1/topics/{topic}/records", data=body, headers={"Content-Type": MSGPACK}
    )
    fetched = await api.call("GET", records_path(topic) + "?offset=0")

    assert reply.status == 200
    assert reply.content_type == "application/json"
    assert base64.b64decode(fetched.body["records"][0]["value_b64"]) == b"\xff\x01"


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("application/msgpack", MSGPACK),
        ("application/x-msgpack", MSGPACK),
        ("application/json", "application/json"),
        ("application/json;q=0.5, application/msgpack", MSGPACK),
        ("application/msgpack;q=0.1, application/json", "application/json"),
        ("application/*, application/msgpack;q=0.9", "application/json"),
        ("*/*", "application/json"),
        ("text/html", "application/json"),
    ],
    ids=[
        "msgpack",
        "x-msgpack",
        "json",
        "q-prefers-msgpack",
        "q-prefers-json",
        "specific-q",
        "any",
        "unsupported-falls-back",
    ],
)
async def test_fetch_negotiates_accept(api: Api, topic: str, accept: str, expected: str) -> None:
    await api.create_topic(topic)

    reply = await api.call("GET", records_path(topic) + "?offset=0", headers={"Accept": accept})

    assert reply.status == 200
    assert reply.content_type == expected


async def test_errors_are_json_for_msgpack_clients(api: Api, topic: str) -> None:
    reply = await api.call("GET", records_path(topic) + "?offset=0", headers={"Accept": MSGPACK})

    assert reply.status == 404
    assert reply.content_type == "application/json"
    assert reply.code == "unknown_topic"


async def test_lookup_offset_earliest_latest_and_time(api: Api, topic: str) -> None:
    await api.create_topic(topic)
    await api.produce(topic, [{"value": "a", "timestamp": 1000}, {"value": "b", "timestamp": 2000}])
    path = f"/v1/topics/{topic}/partitions/0/offsets"

    earliest = await api.call("GET", path + "?at=earliest")
    latest = await api.call("GET", path + "?at=latest")
    at_time = await api.call("GET", path + "?at=1500")
    after_all = await api.call("GET", path + "?at=999999")

    assert earliest.body == {"topic": topic, "partition": 0, "offset": 0, "timestamp": None}
    assert latest.body["offset"] == 2
    assert at_time.body["offset"] == 1
    assert at_time.body["timestamp"] == 2000
    assert after_all.status == 200
    assert after_all.body["offset"] is None
