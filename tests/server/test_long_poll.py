from __future__ import annotations

import asyncio
import time

import pytest

from kaflow.server.context import LONG_POLL_KEY
from tests.server.conftest import Api, ServeFunction
from tests.server.helpers import wait_until

pytestmark = pytest.mark.asyncio(loop_scope="package")


def fetch_path(topic: str, offset: int, max_wait_ms: int) -> str:
    return f"/v1/topics/{topic}/partitions/0/records?offset={offset}&max_wait_ms={max_wait_ms}"


async def wait_parked(api: Api) -> None:
    statistics = api.app[LONG_POLL_KEY]
    await wait_until(lambda: statistics.waiting == 1, 10, "fetch parked in the broker")


async def test_long_poll_returns_when_record_arrives(api: Api, topic: str) -> None:
    await api.create_topic(topic)
    await api.produce(topic, [{"value": "old"}])

    waiting = asyncio.create_task(api.call("GET", fetch_path(topic, 1, 30_000)))
    await wait_parked(api)
    await api.produce(topic, [{"value": "new"}])
    # Well under max_wait_ms: only the produce can have ended the wait.
    reply = await asyncio.wait_for(waiting, timeout=20)

    assert reply.status == 200
    assert [r["value"] for r in reply.body["records"]] == ["new"]
    assert reply.body["next_offset"] == 2
    assert reply.body["high_watermark"] == 2


async def test_long_poll_returns_empty_after_wait(api: Api, topic: str) -> None:
    await api.create_topic(topic)
    started = time.monotonic()

    reply = await api.call("GET", fetch_path(topic, 0, 300))

    assert reply.status == 200
    assert reply.body["records"] == []
    assert reply.body["next_offset"] == 0
    # The broker waited instead of returning at once.
    assert time.monotonic() - started >= 0.25
    assert api.app[LONG_POLL_KEY].completed == 1


async def test_long_poll_with_data_answers_at_once(api: Api, topic: str) -> None:
    await api.create_topic(topic)
    await api.produce(topic, [{"value": "ready"}])

    reply = await asyncio.wait_for(api.call("GET", fetch_path(topic, 0, 30_000)), timeout=20)

    assert [r["value"] for r in reply.body["records"]] == ["ready"]


async def test_long_poll_ignores_other_partition(api: Api, topic: str) -> None:
    await api.create_topic(topic, partitions=2)

    waiting = asyncio.create_task(api.call("GET", fetch_path(topic, 0, 500)))
    await wait_parked(api)
    await api.produce(topic, [{"value": "elsewhere", "partition": 1}])
    reply = await asyncio.wait_for(waiting, timeout=20)

    assert reply.status == 200
    assert reply.body["records"] == []


async def test_long_poll_ends_on_server_shutdown(serve: ServeFunction, topic: str) -> None:
    api = await serve()
    await api.create_topic(topic)

    waiting = asyncio.create_task(api.call("GET", fetch_path(topic, 0, 30_000)))
    await wait_parked(api)
    await asyncio.wait_for(api.server.stop(), timeout=20)
    reply = await asyncio.wait_for(waiting, timeout=20)

    assert reply.status == 200
    assert reply.body["records"] == []
    assert reply.body["high_watermark"] == 0
    assert api.app[LONG_POLL_KEY].waiting == 0
