"""`kaflow bench produce`: send records as fast as allowed and time their acknowledgements."""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from kaflow.bench.histogram import LatencyHistogram
from kaflow.bench.report import BenchResult, StopReason
from kaflow.bench.settings import ProduceSettings
from kaflow.bench.topic_setup import prepare_topic
from kaflow.client import AsyncProducer, ClientError, RecordMetadata
from kaflow.errors import KaflowError

__all__ = ["DELIVERY_TIMEOUT_MS", "Tally", "run_produce"]

logger = logging.getLogger(__name__)

# Delivery timeout of the benchmark's producer. Records still unacknowledged
# when the run's time limit passes get at most this long to finish.
DELIVERY_TIMEOUT_MS = 30_000


@dataclass
class Tally:
    """Acknowledgements, failures and send-to-acknowledgement latencies of sent records."""

    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    acknowledged: int = 0
    total_bytes: int = 0
    errors: int = 0
    first_error: str | None = None

    def record_error(self, exc: BaseException) -> None:
        self.errors += 1
        if self.first_error is None:
            self.first_error = f"{type(exc).__name__}: {exc}"
            logger.warning("send failed error=%s", self.first_error)

    def on_done(self, sent_ns: int, size: int, future: asyncio.Future[RecordMetadata]) -> None:
        """Count one finished send. ``sent_ns`` is time.perf_counter_ns() at the send."""
        if future.cancelled():
            self.record_error(asyncio.CancelledError("the send was cancelled"))
            return
        exc = future.exception()
        if exc is not None:
            self.record_error(exc)
            return
        self.acknowledged += 1
        self.total_bytes += size
        self.latency.record((time.perf_counter_ns() - sent_ns) // 1000)


async def run_produce(
    bootstrap: Sequence[str], settings: ProduceSettings, retry_timeout_ms: int
) -> BenchResult:
    """Send records until the count or time limit and return the run's figures."""
    await prepare_topic(bootstrap, settings.topic, settings.create_partitions, retry_timeout_ms)
    rng = random.Random()
    payload = rng.randbytes(settings.record_size)
    tally = Tally()
    slots = asyncio.Semaphore(settings.in_flight)
    limit = settings.limit

    producer = AsyncProducer(
        bootstrap,
        linger_ms=settings.linger_ms,
        batch_size=settings.batch_size,
        delivery_timeout_ms=DELIVERY_TIMEOUT_MS,
        enable_idempotence=settings.idempotence,
    )
    cpu_start = time.process_time()
    start = time.perf_counter()
    deadline = start + limit.time_limit_s
    sent = 0
    stop_reason = StopReason.MAX_DURATION
    logger.info("produce run started topic=%s", settings.topic)
    try:
        while True:
            if limit.records is not None and sent >= limit.records:
                stop_reason = StopReason.RECORDS
                break
            now = time.perf_counter()
            if now >= deadline:
                stop_reason = StopReason.MAX_DURATION
                if limit.duration_s is not None:
                    stop_reason = StopReason.DURATION
                break

            if settings.target_rate > 0:
                # A fixed schedule: record i is due at start + i / rate, so a
                # late send is followed by sends without pause until caught up.
                due = start + sent / settings.target_rate
                if due > now:
                    await asyncio.sleep(min(due, deadline) - now)
                    continue
            try:
                await asyncio.wait_for(slots.acquire(), deadline - now)
            except TimeoutError:
                continue

            key = settings.keys.key(sent, rng)
            size = len(payload) + (0 if key is None else len(key))
            sent_ns = time.perf_counter_ns()
            try:
                future = await producer.send(settings.topic, payload, key=key)
            except (KaflowError, ClientError) as exc:
                slots.release()
                tally.record_error(exc)
                stop_reason = StopReason.ERROR
                break
            future.add_done_callback(functools.partial(tally.on_done, sent_ns, size))
            future.add_done_callback(lambda _: slots.release())
            sent += 1
        await producer.flush()
    finally:
        await producer.close()

    elapsed = time.perf_counter() - start
    logger.info(
        "produce run finished topic=%s sent=%d acknowledged=%d errors=%d",
        settings.topic,
        sent,
        tally.acknowledged,
        tally.errors,
    )
    return BenchResult(
        mode="produce",
        topic=settings.topic,
        stop_reason=stop_reason,
        elapsed_s=elapsed,
        cpu_s=time.process_time() - cpu_start,
        records=tally.acknowledged,
        total_bytes=tally.total_bytes,
        errors=tally.errors,
        first_error=tally.first_error,
        latency=tally.latency,
        counts={"sent": sent, "acknowledged": tally.acknowledged},
    )
