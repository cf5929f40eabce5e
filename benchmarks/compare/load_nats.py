"""The workloads against a NATS JetStream cluster, through nats-py.

Each run uses a fresh file-backed stream with 3 replicas. JetStream
acknowledges a publish once a majority of the stream's replicas stored it;
it does not fsync before acknowledging.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType, StreamConfig

from benchmarks.compare.e2e import run_e2e
from benchmarks.compare.measure import Result, Settings, Timer, make_payload

__all__ = ["consume", "e2e", "latency", "produce"]


async def _connect(settings: Settings, window: int = 4000) -> tuple[Client, JetStreamContext]:
    client = await nats.connect(
        servers=settings.endpoint["servers"], max_reconnect_attempts=3, connect_timeout=5
    )
    return client, client.jetstream(timeout=30, publish_async_max_pending=window)


async def _create_stream(js: JetStreamContext, settings: Settings) -> None:
    config = StreamConfig(
        name=settings.name,
        subjects=[settings.name],
        storage=StorageType.FILE,
        num_replicas=3,
    )
    # Stream creation fails while the JetStream meta group elects a leader.
    deadline = time.monotonic() + 30
    while True:
        try:
            await js.add_stream(config)
            return
        except Exception:
            if time.monotonic() >= deadline:
                raise
            await asyncio.sleep(0.2)


async def produce(settings: Settings) -> Result:
    client, js = await _connect(settings, settings.window)
    result = Result()
    errors = 0

    def done(future: asyncio.Future[Any]) -> None:
        nonlocal errors
        if future.cancelled() or future.exception() is not None:
            errors += 1

    try:
        await _create_stream(js, settings)
        payload = bytes(make_payload(settings.size))
        timer = Timer()
        for _ in range(settings.records):
            future = await js.publish_async(settings.name, payload)
            future.add_done_callback(done)
        await asyncio.wait_for(js.publish_async_completed(), settings.timeout_s)
        timer.finish(result)
    finally:
        await client.close()
    result.errors = errors
    result.records = settings.records - errors
    return result


async def latency(settings: Settings) -> Result:
    client, js = await _connect(settings)
    result = Result()
    try:
        await _create_stream(js, settings)
        payload = bytes(make_payload(settings.size))
        for _ in range(settings.warmup):
            await js.publish(settings.name, payload)
        timer = Timer()
        for _ in range(settings.records):
            start = time.perf_counter_ns()
            await js.publish(settings.name, payload)
            result.latencies_us.append((time.perf_counter_ns() - start) // 1000)
        timer.finish(result)
    finally:
        await client.close()
    result.records = settings.records
    return result


async def consume(settings: Settings) -> Result:
    """Read the stream a produce run filled with a durable pull consumer, acking each batch."""
    client, js = await _connect(settings)
    result = Result()
    try:
        config = ConsumerConfig(
            durable_name=f"{settings.name}-group",
            ack_policy=AckPolicy.ALL,
            deliver_policy=DeliverPolicy.ALL,
            max_ack_pending=-1,
        )
        timer = Timer()
        subscription = await js.pull_subscribe(
            settings.name, durable=f"{settings.name}-group", config=config
        )
        deadline = time.monotonic() + settings.timeout_s
        while result.records < settings.records and time.monotonic() < deadline:
            requested = min(settings.batch, settings.records - result.records)
            try:
                messages = await subscription.fetch(requested, timeout=5)
            except nats.errors.TimeoutError:
                continue
            result.records += len(messages)
            # With AckPolicy.ALL, acknowledging the last message covers the batch.
            await messages[-1].ack_sync()
        timer.finish(result)
    finally:
        await client.close()
    result.errors = settings.records - result.records
    return result


async def e2e(settings: Settings) -> Result:
    """Fixed-rate publishes read by a durable push consumer that acks every 100 messages."""
    client, js = await _connect(settings)
    received: asyncio.Queue[bytes] = asyncio.Queue()
    failed = 0
    unacked: list[Msg] = []

    async def on_message(message: Msg) -> None:
        received.put_nowait(message.data)
        unacked.append(message)
        if len(unacked) >= 100:
            await unacked[-1].ack()
            unacked.clear()

    def done(future: asyncio.Future[Any]) -> None:
        nonlocal failed
        if future.cancelled() or future.exception() is not None:
            failed += 1

    async def send_batch(values: list[bytes]) -> None:
        for value in values:
            future = await js.publish_async(settings.name, value)
            future.add_done_callback(done)

    async def receive() -> list[bytes]:
        try:
            values = [await asyncio.wait_for(received.get(), 0.2)]
        except TimeoutError:
            return []
        while not received.empty():
            values.append(received.get_nowait())
        return values

    try:
        await _create_stream(js, settings)
        config = ConsumerConfig(ack_policy=AckPolicy.ALL, deliver_policy=DeliverPolicy.NEW)
        await js.subscribe(
            settings.name,
            durable=f"{settings.name}-group",
            cb=on_message,
            manual_ack=True,
            config=config,
        )
        result = await run_e2e(settings, send_batch, receive)
    finally:
        await client.close()
    result.extra["send_errors"] = failed
    return result
