"""`kaflow bench consume`: read a topic from the earliest offset and measure throughput."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from kaflow.bench.report import BenchResult, StopReason
from kaflow.bench.settings import ConsumeSettings
from kaflow.bench.topic_setup import prepare_topic
from kaflow.client import AsyncConsumer

__all__ = ["POLL_MAX_RECORDS", "POLL_WAIT_MS", "assign_all", "run_consume"]

logger = logging.getLogger(__name__)

# Maximum records one poll returns.
POLL_MAX_RECORDS = 500
# Maximum wait of one poll for new records, so the time limit is checked at least this often.
POLL_WAIT_MS = 200


def assign_all(consumer: AsyncConsumer, topic: str, partitions: int) -> None:
    consumer.assign([(topic, partition) for partition in range(partitions)])


async def run_consume(
    bootstrap: Sequence[str], settings: ConsumeSettings, retry_timeout_ms: int
) -> BenchResult:
    """Read every partition from its log start offset until the count or time limit."""
    partitions = await prepare_topic(bootstrap, settings.topic, None, retry_timeout_ms)
    limit = settings.limit
    records = 0
    total_bytes = 0
    polls = 0

    async with AsyncConsumer(
        bootstrap, auto_offset_reset="earliest", retry_timeout_ms=retry_timeout_ms
    ) as consumer:
        assign_all(consumer, settings.topic, partitions)
        await consumer.seek_to_beginning()
        cpu_start = time.process_time()
        start = time.perf_counter()
        deadline = start + limit.time_limit_s
        logger.info("consume run started topic=%s partitions=%d", settings.topic, partitions)
        while True:
            if limit.records is not None and records >= limit.records:
                stop_reason = StopReason.RECORDS
                break
            remaining_s = deadline - time.perf_counter()
            if remaining_s <= 0:
                stop_reason = StopReason.MAX_DURATION
                if limit.duration_s is not None:
                    stop_reason = StopReason.DURATION
                break

            max_records = POLL_MAX_RECORDS
            if limit.records is not None:
                max_records = min(max_records, limit.records - records)
            wait_ms = max(1, min(POLL_WAIT_MS, int(remaining_s * 1000)))
            batch = await consumer.poll(timeout_ms=wait_ms, max_records=max_records)
            polls += 1
            for record in batch:
                total_bytes += len(record.value or b"") + len(record.key or b"")
            records += len(batch)
        elapsed = time.perf_counter() - start
        cpu_s = time.process_time() - cpu_start

    logger.info("consume run finished topic=%s records=%d", settings.topic, records)
    return BenchResult(
        mode="consume",
        topic=settings.topic,
        stop_reason=stop_reason,
        elapsed_s=elapsed,
        cpu_s=cpu_s,
        records=records,
        total_bytes=total_bytes,
        counts={"partitions": partitions, "polls": polls},
    )
