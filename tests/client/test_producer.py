from __future__ import annotations

import asyncio

import pytest

from kaflow.client import AsyncProducer, ClientClosedError, RecordMetadata
from kaflow.errors import RecordTooLargeError, RequestTimedOutError, UnknownTopicError
from kaflow.partitioner import key_partition
from tests.harness import NodeProcess


async def test_producer_send_returns_offsets(node: NodeProcess) -> None:
    node.create_topic("orders", partitions=1)

    async with AsyncProducer(node.url) as producer:
        futures = [await producer.send("orders", f"v{i}".encode(), partition=0) for i in range(3)]
        metadata = [await future for future in futures]

    assert [m.offset for m in metadata] == [0, 1, 2]
    assert all(m.partition == 0 and m.topic == "orders" for m in metadata)
    assert all(m.timestamp > 0 for m in metadata)
    stored = node.fetch_all("orders", 0)
    assert [record["value"] for record in stored] == ["v0", "v1", "v2"]


async def test_producer_keyed_records_match_broker(node: NodeProcess) -> None:
    node.create_topic("orders", partitions=5)
    keys = [f"user-{i}".encode() for i in range(20)]

    async with AsyncProducer(node.url) as producer:
        ours = [await producer.send_and_wait("orders", b"x", key=key) for key in keys]

    broker = node.post(
        "/v1/topics/orders/records",
        {"records": [{"key": key.decode(), "value": "y"} for key in keys]},
    )["records"]
    assert [m.partition for m in ours] == [r["partition"] for r in broker]
    assert [m.partition for m in ours] == [key_partition(key, 5) for key in keys]


async def test_producer_keyless_records_spread_evenly(node: NodeProcess) -> None:
    node.create_topic("orders", partitions=3)

    async with AsyncProducer(node.url) as producer:
        futures = [await producer.send("orders", b"v") for _ in range(9)]
        partitions = [(await future).partition for future in futures]

    assert sorted(partitions.count(p) for p in range(3)) == [3, 3, 3]


async def test_producer_uses_idempotent_fields(node: NodeProcess) -> None:
    node.create_topic("orders", partitions=2)

    async with AsyncProducer(node.url) as producer:
        await producer.send_and_wait("orders", b"a", partition=0)
        await producer.send_and_wait("orders", b"b", partition=0)
        producer_id = producer.producer_id

    assert producer_id is not None
    # The producer sent base sequences 0 and 1 for partition 0, so sequence 0
    # again is a duplicate of the first batch: nothing new is stored.
    replay = node.post(
        "/v1/topics/orders/records",
        {
            "producer_id": producer_id,
            "producer_epoch": 0,
            "base_sequences": {"0": 0},
            "records": [{"value": "a", "partition": 0}],
        },
    )
    assert replay["records"][0]["offset"] == 0
    assert len(node.fetch_all("orders", 0)) == 2


async def test_producer_linger_holds_batch_until_flush(node: NodeProcess) -> None:
    node.create_topic("orders")

    async with AsyncProducer(node.url, linger_ms=600_000) as producer:
        futures = [await producer.send("orders", b"v", partition=0) for _ in range(4)]
        await asyncio.sleep(0)
        assert not any(future.done() for future in futures)
        assert producer.buffered_bytes > 0

        await producer.flush()

        assert all(future.done() for future in futures)
        assert [future.result().offset for future in futures] == [0, 1, 2, 3]
        assert producer.buffered_bytes == 0


async def test_producer_full_batch_sends_without_flush(node: NodeProcess) -> None:
    node.create_topic("orders")

    async with AsyncProducer(node.url, linger_ms=600_000, batch_size=100) as producer:
        future = await producer.send("orders", b"x" * 200, partition=0)
        metadata = await asyncio.wait_for(future, 30)

    assert metadata == RecordMetadata("orders", 0, 0, metadata.timestamp)


async def test_producer_close_flushes_and_rejects_sends(node: NodeProcess) -> None:
    node.create_topic("orders")
    producer = AsyncProducer(node.url, linger_ms=600_000)
    future = await producer.send("orders", b"v", partition=0)

    await producer.close()

    assert future.result().offset == 0
    with pytest.raises(ClientClosedError, match="producer is closed"):
        await producer.send("orders", b"v", partition=0)


async def test_producer_full_buffer_times_out(node: NodeProcess) -> None:
    node.create_topic("orders")

    async with AsyncProducer(
        node.url, linger_ms=600_000, buffer_memory=100, max_block_ms=50
    ) as producer:
        await producer.send("orders", b"x" * 60, partition=0)
        with pytest.raises(RequestTimedOutError, match="buffer stayed full"):
            await producer.send("orders", b"x" * 60, partition=0)


async def test_producer_full_buffer_waits_for_space(node: NodeProcess) -> None:
    node.create_topic("orders")

    async with AsyncProducer(node.url, linger_ms=0, buffer_memory=100) as producer:
        futures = [await producer.send("orders", b"x" * 60, partition=0) for _ in range(3)]
        offsets = [(await future).offset for future in futures]

    assert offsets == [0, 1, 2]


async def test_producer_record_over_buffer_rejected(node: NodeProcess) -> None:
    async with AsyncProducer(node.url, buffer_memory=100) as producer:
        with pytest.raises(RecordTooLargeError, match="buffer_memory of 100 bytes"):
            await producer.send("orders", b"x" * 200, partition=0)


async def test_producer_unknown_topic_fails(node: NodeProcess) -> None:
    async with AsyncProducer(node.url) as producer:
        with pytest.raises(UnknownTopicError):
            await producer.send("missing", b"v")
        future = await producer.send("missing", b"v", partition=0)
        with pytest.raises(UnknownTopicError):
            await future


async def test_producer_delivery_timeout_on_dead_node(node: NodeProcess) -> None:
    node.create_topic("orders")
    producer = AsyncProducer(node.url, delivery_timeout_ms=500, retry_backoff_ms=20)
    await producer.send_and_wait("orders", b"first", partition=0)
    node.kill()

    future = await producer.send("orders", b"lost", partition=0)

    with pytest.raises(RequestTimedOutError, match="delivery_timeout_ms=500"):
        await future
    await producer.close()
