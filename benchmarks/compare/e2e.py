"""End-to-end latency at a fixed rate, with the producer and the consumer in one process.

Record ``n`` is due at ``start + n / rate``. Its payload carries that due
time, so a producer that falls behind schedule adds its delay to the
latency instead of hiding it. The consumer's latency of a record is the
time from its due time to the moment a read returned it. Both tasks share
one monotonic clock because they share one process.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from benchmarks.compare.measure import Result, Settings, Timer, make_payload, read_header, stamp

__all__ = ["Receive", "SendBatch", "run_e2e"]

# Sends the given values; returns when the client has taken them (not when acknowledged).
SendBatch = Callable[[list[bytes]], Awaitable[None]]
# Returns the values of the records read by one request, possibly none.
Receive = Callable[[], Awaitable[list[bytes]]]

# Seconds the consumer keeps reading after the producer's last send.
_DRAIN_S = 10.0


async def run_e2e(settings: Settings, send_batch: SendBatch, receive: Receive) -> Result:
    """Produce ``rate x duration`` records on schedule and time each until it is read."""
    total = int(settings.rate * settings.duration_s)
    payload = make_payload(settings.size)
    result = Result()
    seen: set[int] = set()
    max_lag_ns = 0
    timer = Timer()
    start_ns = time.monotonic_ns()
    interval_ns = 1e9 / settings.rate

    async def produce() -> None:
        nonlocal max_lag_ns
        sequence = 0
        while sequence < total:
            now = time.monotonic_ns()
            due_count = min(total, int((now - start_ns) / interval_ns) + 1)
            if due_count <= sequence:
                await asyncio.sleep((start_ns + sequence * interval_ns - now) / 1e9)
                continue
            values = []
            for due_sequence in range(sequence, due_count):
                due_ns = start_ns + int(due_sequence * interval_ns)
                values.append(stamp(payload, due_ns, due_sequence))
            max_lag_ns = max(max_lag_ns, now - (start_ns + int(sequence * interval_ns)))
            await send_batch(values)
            sequence = due_count

    async def consume() -> None:
        deadline = time.monotonic() + settings.duration_s + _DRAIN_S
        while len(seen) < total and time.monotonic() < deadline:
            values = await receive()
            received_ns = time.monotonic_ns()
            for value in values:
                sent_ns, sequence = read_header(value)
                if sequence in seen:
                    continue
                seen.add(sequence)
                result.latencies_us.append((received_ns - sent_ns) // 1000)

    consumer = asyncio.create_task(consume())
    try:
        await produce()
        await consumer
    finally:
        consumer.cancel()
    timer.finish(result)
    result.records = len(seen)
    result.errors = total - len(seen)
    result.extra = {"sent": total, "producer_max_lag_ms": round(max_lag_ns / 1e6, 3)}
    return result
