"""`kaflow bench e2e`: produce at a fixed rate and time each record until a consumer reads it.

Each record value starts with a 16-byte header, then filler up to the
record size::

    offset  size  field
    0       8     send time: time.monotonic_ns() when the record was due, big-endian u64
    8       8     sequence number of the record in this run, big-endian u64

The send time is the record's slot on the fixed schedule, not the moment
``send`` ran, so a producer that falls behind adds its delay to the latency
instead of hiding it. Monotonic clocks are only comparable within one
process, which is why the producer and consumer run in the same process.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from kaflow.bench.consume import POLL_MAX_RECORDS, POLL_WAIT_MS, assign_all
from kaflow.bench.histogram import LatencyHistogram
from kaflow.bench.produce import DELIVERY_TIMEOUT_MS, Tally
from kaflow.bench.report import BenchResult, StopReason
from kaflow.bench.settings import E2E_HEADER_SIZE, E2eSettings
from kaflow.bench.topic_setup import prepare_topic
from kaflow.client import AsyncConsumer, AsyncProducer, ClientError
from kaflow.errors import KaflowError

__all__ = ["DRAIN_TIMEOUT_S", "run_e2e"]

logger = logging.getLogger(__name__)

_HEADER = struct.Struct(">QQ")
# How long the consumer keeps reading after the producer's last acknowledgement.
DRAIN_TIMEOUT_S = 10.0


@dataclass
class _Receipts:
    """Records the consumer read, their latencies and which sequence numbers arrived."""

    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    seen: bytearray = field(default_factory=bytearray)
    received: int = 0
    duplicates: int = 0
    total_bytes: int = 0
    foreign: int = 0
    # Acknowledged records the reader waits for, set before the producer's done event.
    expected: int = 0

    def add(self, value: bytes | None, key: bytes | None, received_ns: int) -> None:
        if value is None or len(value) < E2E_HEADER_SIZE:
            # A record this run did not write, for example from another producer.
            self.foreign += 1
            return
        sent_ns, sequence = _HEADER.unpack_from(value)
        if sequence >= len(self.seen):
            self.seen.extend(bytes(sequence + 1 - len(self.seen)))
        if self.seen[sequence]:
            self.duplicates += 1
            return
        self.seen[sequence] = 1
        self.received += 1
        self.total_bytes += len(value) + len(key or b"")
        self.latency.record(max(0, received_ns - sent_ns) // 1000)


async def _produce_on_schedule(producer: AsyncProducer, settings: E2eSettings, tally: Tally) -> int:
    """Send records at ``settings.rate`` for ``settings.duration_s`` and return the number sent."""
    filler = random.Random().randbytes(settings.record_size - E2E_HEADER_SIZE)
    interval_ns = 1e9 / settings.rate
    start_ns = time.monotonic_ns()
    end_ns = start_ns + int(settings.duration_s * 1e9)
    sent = 0
    while True:
        due_ns = start_ns + int(sent * interval_ns)
        if due_ns >= end_ns:
            break
        now_ns = time.monotonic_ns()
        if due_ns > now_ns:
            await asyncio.sleep((due_ns - now_ns) / 1e9)

        value = _HEADER.pack(due_ns, sent) + filler
        sent_ns = time.perf_counter_ns()
        try:
            future = await producer.send(settings.topic, value)
        except (KaflowError, ClientError) as exc:
            tally.record_error(exc)
            break
        # The tally counts acknowledgements, and the reported latency is the consumer's.
        future.add_done_callback(functools.partial(tally.on_done, sent_ns, len(value)))
        sent += 1
    await producer.flush()
    return sent


async def _read_until(consumer: AsyncConsumer, receipts: _Receipts, done: asyncio.Event) -> None:
    """Poll until ``done`` is set and ``receipts.expected`` records arrived, or until cancelled."""
    while not (done.is_set() and receipts.received >= receipts.expected):
        batch = await consumer.poll(timeout_ms=POLL_WAIT_MS, max_records=POLL_MAX_RECORDS)
        received_ns = time.monotonic_ns()
        for record in batch:
            receipts.add(record.value, record.key, received_ns)


async def run_e2e(
    bootstrap: Sequence[str], settings: E2eSettings, retry_timeout_ms: int
) -> BenchResult:
    """Produce at a fixed rate, read the records back and return end-to-end latencies."""
    partitions = await prepare_topic(
        bootstrap, settings.topic, settings.create_partitions, retry_timeout_ms
    )
    tally = Tally()
    receipts = _Receipts()
    producer_done = asyncio.Event()

    consumer = AsyncConsumer(bootstrap, retry_timeout_ms=retry_timeout_ms)
    producer = AsyncProducer(
        bootstrap, linger_ms=settings.linger_ms, delivery_timeout_ms=DELIVERY_TIMEOUT_MS
    )
    try:
        assign_all(consumer, settings.topic, partitions)
        # Resolve every position at the high watermark first, so only this run's records count.
        await consumer.seek_to_end()
        for partition in range(partitions):
            await consumer.position((settings.topic, partition))

        sent = 0
        cpu_start = time.process_time()
        start = time.perf_counter()
        logger.info("e2e run started topic=%s rate=%g", settings.topic, settings.rate)
        reader = asyncio.create_task(_read_until(consumer, receipts, producer_done))
        try:
            sent = await _produce_on_schedule(producer, settings, tally)
            receipts.expected = tally.acknowledged
            producer_done.set()
            await asyncio.wait_for(asyncio.shield(reader), DRAIN_TIMEOUT_S)
        except TimeoutError:
            logger.warning(
                "e2e drain timed out topic=%s received=%d acknowledged=%d timeout_s=%g",
                settings.topic,
                receipts.received,
                tally.acknowledged,
                DRAIN_TIMEOUT_S,
            )
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        elapsed = time.perf_counter() - start
        cpu_s = time.process_time() - cpu_start
    finally:
        await producer.close()
        await consumer.close()

    return _e2e_result(settings, tally, receipts, sent, elapsed, cpu_s)


def _e2e_result(
    settings: E2eSettings,
    tally: Tally,
    receipts: _Receipts,
    sent: int,
    elapsed: float,
    cpu_s: float,
) -> BenchResult:
    missing = max(0, tally.acknowledged - receipts.received)
    errors = tally.errors + missing
    first_error = tally.first_error
    if first_error is None and missing:
        first_error = (
            f"{missing} acknowledged records were not read within {DRAIN_TIMEOUT_S:g} s "
            "after the last acknowledgement"
        )
    logger.info(
        "e2e run finished topic=%s sent=%d acknowledged=%d received=%d",
        settings.topic,
        sent,
        tally.acknowledged,
        receipts.received,
    )
    return BenchResult(
        mode="e2e",
        topic=settings.topic,
        stop_reason=StopReason.DURATION,
        elapsed_s=elapsed,
        cpu_s=cpu_s,
        records=receipts.received,
        total_bytes=receipts.total_bytes,
        errors=errors,
        first_error=first_error,
        latency=receipts.latency,
        counts={
            "sent": sent,
            "acknowledged": tally.acknowledged,
            "received": receipts.received,
            "missing": missing,
            "duplicates": receipts.duplicates,
            "foreign": receipts.foreign,
        },
    )
