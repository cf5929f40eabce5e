"""The workloads against Redis Streams, through redis-py's asyncio client.

The server runs with ``appendfsync always``: it fsyncs the append-only file
once per event-loop iteration before replying, so a pipeline of XADDs
shares one fsync.
"""

from __future__ import annotations

import time
from typing import Any

import redis.asyncio as redis_async

from benchmarks.compare.e2e import run_e2e
from benchmarks.compare.measure import Result, Settings, Timer, make_payload

__all__ = ["consume", "e2e", "latency", "produce"]

_FIELD = b"v"


def _connect(settings: Settings) -> redis_async.Redis:
    return redis_async.Redis.from_url(settings.endpoint["url"], socket_timeout=settings.timeout_s)


async def produce(settings: Settings) -> Result:
    """XADD in non-transactional pipelines of ``window`` commands; each reply is the ack."""
    client = _connect(settings)
    payload = bytes(make_payload(settings.size))
    result = Result()
    try:
        timer = Timer()
        remaining = settings.records
        while remaining > 0:
            count = min(settings.window, remaining)
            pipeline = client.pipeline(transaction=False)
            for _ in range(count):
                pipeline.xadd(settings.name, {_FIELD: payload})
            await pipeline.execute()
            remaining -= count
        timer.finish(result)
    finally:
        await client.aclose()
    result.records = settings.records
    return result


async def latency(settings: Settings) -> Result:
    client = _connect(settings)
    payload = bytes(make_payload(settings.size))
    result = Result()
    try:
        for _ in range(settings.warmup):
            await client.xadd(settings.name, {_FIELD: payload})
        timer = Timer()
        for _ in range(settings.records):
            start = time.perf_counter_ns()
            await client.xadd(settings.name, {_FIELD: payload})
            result.latencies_us.append((time.perf_counter_ns() - start) // 1000)
        timer.finish(result)
    finally:
        await client.aclose()
    result.records = settings.records
    return result


async def consume(settings: Settings) -> Result:
    """Read the stream a produce run filled: XREADGROUP of ``batch`` entries, then one XACK."""
    client = _connect(settings)
    group = f"{settings.name}-group"
    result = Result()
    try:
        timer = Timer()
        await client.xgroup_create(settings.name, group, id="0")
        deadline = time.monotonic() + settings.timeout_s
        while result.records < settings.records and time.monotonic() < deadline:
            reply: Any = await client.xreadgroup(
                group, "consumer-1", {settings.name: ">"}, count=settings.batch, block=1000
            )
            if not reply:
                continue
            entries = reply[0][1]
            result.records += len(entries)
            await client.xack(settings.name, group, *[entry_id for entry_id, _ in entries])
        timer.finish(result)
    finally:
        await client.aclose()
    result.errors = settings.records - result.records
    return result


async def e2e(settings: Settings) -> Result:
    """Fixed-rate XADDs (one pipeline of all records due) read by XREADGROUP BLOCK and XACK."""
    producer = _connect(settings)
    consumer = _connect(settings)
    group = f"{settings.name}-group"

    async def send_batch(values: list[bytes]) -> None:
        if len(values) == 1:
            await producer.xadd(settings.name, {_FIELD: values[0]})
            return
        pipeline = producer.pipeline(transaction=False)
        for value in values:
            pipeline.xadd(settings.name, {_FIELD: value})
        await pipeline.execute()

    async def receive() -> list[bytes]:
        reply: Any = await consumer.xreadgroup(
            group, "consumer-1", {settings.name: ">"}, count=settings.batch, block=100
        )
        if not reply:
            return []
        entries = reply[0][1]
        await consumer.xack(settings.name, group, *[entry_id for entry_id, _ in entries])
        return [fields[_FIELD] for _, fields in entries]

    try:
        await consumer.xgroup_create(settings.name, group, id="$", mkstream=True)
        result = await run_e2e(settings, send_batch, receive)
    finally:
        await producer.aclose()
        await consumer.aclose()
    return result
