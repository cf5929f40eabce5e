from __future__ import annotations

import asyncio

import pytest

from kaflow.client import (
    AsyncConsumer,
    AsyncProducer,
    ClientClosedError,
    NoOffsetForPartitionError,
    OffsetAndTimestamp,
    TopicPartition,
)
from kaflow.errors import OffsetOutOfRangeError
from tests.harness import NodeProcess


def produce(node: NodeProcess, topic: str, partition: int, values: list[str]) -> None:
    records = [{"value": value, "partition": partition} for value in values]
    node.post(f"/v1/topics/{topic}/records", {"records": records})


async def test_consumer_poll_returns_records_in_order(node: NodeProcess) -> None:
    node.create_topic("orders", partitions=2)
    async with AsyncProducer(node.url) as producer:
        await producer.send_and_wait(
            "orders", b"\xff\x00", key=b"\x80", headers=[("trace", b"\xfe")], partition=1
        )
        await producer.send_and_wait("orders", None, partition=1)

    async with AsyncConsumer(node.url, auto_offset_reset="earliest") as consumer:
        consumer.assign([("orders", 1)])
        records = await consumer.poll(timeout_ms=5_000)

    assert [r.offset for r in records] == [0, 1]
    assert records[0].key == b"\x80"
    assert records[0].value == b"\xff\x00"
    assert records[0].headers == (("trace", b"\xfe"),)
    assert records[1].value is None
    assert records[1].key is None


async def test_consumer_poll_respects_max_records(node: NodeProcess) -> None:
    node.create_topic("orders")
    produce(node, "orders", 0, [str(i) for i in range(5)])

    async with AsyncConsumer(node.url, auto_offset_reset="earliest") as consumer:
        consumer.assign([("orders", 0)])
        first = await consumer.poll(max_records=3)
        second = await consumer.poll(max_records=3)

    assert [r.value for r in first] == [b"0", b"1", b"2"]
    assert [r.value for r in second] == [b"3", b"4"]


async def test_consumer_poll_empty_after_timeout(node: NodeProcess) -> None:
    node.create_topic("orders")

    async with AsyncConsumer(node.url) as consumer:
        consumer.assign([("orders", 0)])
        assert await consumer.poll(timeout_ms=100) == []


async def test_consumer_long_poll_wakes_on_record(node: NodeProcess) -> None:
    node.create_topic("orders", partitions=2)

    async with AsyncConsumer(node.url) as consumer:
        consumer.assign([("orders", 0), ("orders", 1)])
        assert await consumer.position(("orders", 1)) == 0
        polling = asyncio.create_task(consumer.poll(timeout_ms=25_000))
        await asyncio.to_thread(produce, node, "orders", 1, ["late"])
        records = await asyncio.wait_for(polling, 30)

    assert [(r.partition, r.value) for r in records] == [(1, b"late")]


async def test_consumer_seek_and_position(node: NodeProcess) -> None:
    node.create_topic("orders")
    produce(node, "orders", 0, ["a", "b", "c", "d"])
    tp = ("orders", 0)

    async with AsyncConsumer(node.url) as consumer:
        consumer.assign([tp])
        assert await consumer.position(tp) == 4

        consumer.seek(tp, 2)
        assert [r.value for r in await consumer.poll()] == [b"c", b"d"]
        assert await consumer.position(tp) == 4

        await consumer.seek_to_beginning(tp)
        assert await consumer.position(tp) == 0

        await consumer.seek_to_end()
        assert await consumer.position(tp) == 4


async def test_consumer_seek_unassigned_rejected(node: NodeProcess) -> None:
    async with AsyncConsumer(node.url) as consumer:
        with pytest.raises(ValueError, match="not assigned"):
            consumer.seek(("orders", 0), 1)


async def test_consumer_commit_and_committed(node: NodeProcess) -> None:
    node.create_topic("orders", partitions=2)
    produce(node, "orders", 0, ["a", "b", "c"])

    async with AsyncConsumer(
        node.url, group_id="inventory", auto_offset_reset="earliest"
    ) as consumer:
        consumer.assign([("orders", 0), ("orders", 1)])
        assert await consumer.committed(("orders", 0)) is None
        await consumer.poll(max_records=2)
        await consumer.commit()
        await consumer.commit({("orders", 1): 0})

        assert await consumer.committed(("orders", 0)) == 2
        assert await consumer.committed(("orders", 1)) == 0

    async with AsyncConsumer(node.url, group_id="inventory", auto_offset_reset="error") as again:
        again.assign([("orders", 0)])
        assert [r.value for r in await again.poll()] == [b"c"]


async def test_consumer_commit_without_group_rejected(node: NodeProcess) -> None:
    async with AsyncConsumer(node.url) as consumer:
        with pytest.raises(ValueError, match="no group_id"):
            await consumer.commit({("orders", 0): 1})


async def test_consumer_offsets_for_times(node: NodeProcess) -> None:
    node.create_topic("orders")
    records = [
        {"value": "old", "partition": 0, "timestamp": 1_000},
        {"value": "new", "partition": 0, "timestamp": 5_000},
    ]
    node.post("/v1/topics/orders/records", {"records": records})

    async with AsyncConsumer(node.url) as consumer:
        found = await consumer.offsets_for_times({("orders", 0): 2_000})
        after_all = await consumer.offsets_for_times({("orders", 0): 9_000})

    assert found == {TopicPartition("orders", 0): OffsetAndTimestamp(1, 5_000)}
    assert after_all == {TopicPartition("orders", 0): None}


@pytest.mark.parametrize(
    ("policy", "expected"), [("earliest", 0), ("latest", 3)], ids=["earliest", "latest"]
)
async def test_consumer_auto_offset_reset_start(
    node: NodeProcess, policy: str, expected: int
) -> None:
    node.create_topic("orders")
    produce(node, "orders", 0, ["a", "b", "c"])

    async with AsyncConsumer(node.url, auto_offset_reset=policy) as consumer:
        consumer.assign([("orders", 0)])
        assert await consumer.position(("orders", 0)) == expected


async def test_consumer_auto_offset_reset_error(node: NodeProcess) -> None:
    node.create_topic("orders")

    async with AsyncConsumer(node.url, auto_offset_reset="error") as consumer:
        consumer.assign([("orders", 0)])
        with pytest.raises(NoOffsetForPartitionError, match="auto_offset_reset='error'"):
            await consumer.poll()

        consumer.seek(("orders", 0), 10)
        with pytest.raises(OffsetOutOfRangeError):
            await consumer.poll()


async def test_consumer_out_of_range_resets_earliest(node: NodeProcess) -> None:
    node.create_topic("orders")
    produce(node, "orders", 0, ["a", "b"])

    async with AsyncConsumer(node.url, auto_offset_reset="earliest") as consumer:
        consumer.assign([("orders", 0)])
        consumer.seek(("orders", 0), 10)
        records = await consumer.poll(timeout_ms=5_000)

    assert [r.offset for r in records] == [0, 1]


async def test_consumer_pause_and_resume(node: NodeProcess) -> None:
    node.create_topic("orders", partitions=2)
    produce(node, "orders", 0, ["zero"])
    produce(node, "orders", 1, ["one"])

    async with AsyncConsumer(node.url, auto_offset_reset="earliest") as consumer:
        consumer.assign([("orders", 0), ("orders", 1)])
        consumer.pause(("orders", 0))
        assert consumer.paused() == {TopicPartition("orders", 0)}
        assert [r.value for r in await consumer.poll()] == [b"one"]

        consumer.resume(("orders", 0))
        assert [r.value for r in await consumer.poll()] == [b"zero"]


async def test_consumer_async_iteration(node: NodeProcess) -> None:
    node.create_topic("orders")
    produce(node, "orders", 0, ["a", "b", "c"])

    seen: list[bytes | None] = []
    async with AsyncConsumer(node.url, auto_offset_reset="earliest") as consumer:
        consumer.assign([("orders", 0)])
        async for record in consumer:
            seen.append(record.value)
            if len(seen) == 3:
                break

    assert seen == [b"a", b"b", b"c"]


async def test_consumer_closed_rejects_calls(node: NodeProcess) -> None:
    consumer = AsyncConsumer(node.url)
    await consumer.close()

    with pytest.raises(ClientClosedError, match="consumer is closed"):
        await consumer.poll()
    with pytest.raises(ClientClosedError):
        consumer.assign([("orders", 0)])
