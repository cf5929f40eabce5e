"""The workloads against a Kaflow cluster, through kaflow.client.

The topic has one partition, like one NATS stream or one Redis stream key.
The producer sends to the node list of the cluster and finds the leader
itself. Throughput runs close a batch per ``window`` records, so one
produce request carries what a NATS client has in flight or a Redis
pipeline carries.
"""

from __future__ import annotations

import asyncio
import time

from benchmarks.compare.e2e import run_e2e
from benchmarks.compare.measure import Result, Settings, Timer, make_payload
from kaflow.client import AsyncAdmin, AsyncConsumer, AsyncProducer, RecordMetadata

__all__ = ["consume", "e2e", "latency", "produce"]

# Bytes a record takes in a produce request or fetch response beyond its value.
_RECORD_OVERHEAD = 64


async def _create_topic(settings: Settings) -> list[str]:
    urls: list[str] = settings.endpoint["urls"]
    async with AsyncAdmin(urls) as admin:
        await admin.create_topic(settings.name, partitions=1)
    return urls


async def produce(settings: Settings) -> Result:
    urls = await _create_topic(settings)
    payload = bytes(make_payload(settings.size))
    result = Result()
    slots = asyncio.Semaphore(settings.window)
    errors = 0

    def done(future: asyncio.Future[RecordMetadata]) -> None:
        nonlocal errors
        slots.release()
        if future.cancelled() or future.exception() is not None:
            errors += 1

    producer = AsyncProducer(
        urls,
        linger_ms=5,
        batch_size=settings.window * (settings.size + _RECORD_OVERHEAD),
        delivery_timeout_ms=int(settings.timeout_s * 1000),
    )
    timer = Timer()
    try:
        for _ in range(settings.records):
            await slots.acquire()
            future = await producer.send(settings.name, payload)
            future.add_done_callback(done)
        await producer.flush()
    finally:
        await producer.close()
    timer.finish(result)
    result.errors = errors
    result.records = settings.records - errors
    return result


async def latency(settings: Settings) -> Result:
    urls = await _create_topic(settings)
    payload = bytes(make_payload(settings.size))
    result = Result()
    async with AsyncProducer(urls, linger_ms=0) as producer:
        for _ in range(settings.warmup):
            await producer.send_and_wait(settings.name, payload)
        timer = Timer()
        for _ in range(settings.records):
            start = time.perf_counter_ns()
            await producer.send_and_wait(settings.name, payload)
            result.latencies_us.append((time.perf_counter_ns() - start) // 1000)
        timer.finish(result)
    result.records = settings.records
    return result


def _consumer(settings: Settings, group: str) -> AsyncConsumer:
    return AsyncConsumer(
        settings.endpoint["urls"],
        group_id=group,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=settings.batch * (settings.size + _RECORD_OVERHEAD),
    )


async def consume(settings: Settings) -> Result:
    """Read the topic a produce run filled, committing the group's offset after each poll."""
    result = Result()
    async with _consumer(settings, f"{settings.name}-group") as consumer:
        consumer.assign([(settings.name, 0)])
        timer = Timer()
        deadline = time.monotonic() + settings.timeout_s
        while result.records < settings.records and time.monotonic() < deadline:
            batch = await consumer.poll(timeout_ms=1000, max_records=settings.batch)
            if batch:
                result.records += len(batch)
                await consumer.commit()
        timer.finish(result)
    result.errors = settings.records - result.records
    return result


async def e2e(settings: Settings) -> Result:
    urls = await _create_topic(settings)
    producer = AsyncProducer(urls, linger_ms=0)
    failed = 0

    def done(future: asyncio.Future[RecordMetadata]) -> None:
        nonlocal failed
        if future.cancelled() or future.exception() is not None:
            failed += 1

    async def send_batch(values: list[bytes]) -> None:
        for value in values:
            future = await producer.send(settings.name, value)
            future.add_done_callback(done)

    async with _consumer(settings, f"{settings.name}-group") as consumer:
        consumer.assign([(settings.name, 0)])
        await consumer.seek_to_end()

        async def receive() -> list[bytes]:
            batch = await consumer.poll(timeout_ms=200, max_records=settings.batch)
            if batch:
                await consumer.commit()
            return [record.value or b"" for record in batch]

        try:
            result = await run_e2e(settings, send_batch, receive)
        finally:
            await producer.close()
    result.extra["send_errors"] = failed
    return result
