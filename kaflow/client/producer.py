"""The asynchronous producer: batching, partitioning and idempotent delivery.

Records collect in one open batch per partition. A batch is sent when it
reaches ``batch_size`` bytes, when ``linger_ms`` has passed since its first
record, or on :meth:`AsyncProducer.flush`. Each partition sends one request
at a time, in order, so its sequence numbers reach the node in order. Batches
that closed while a request was in flight go out together in the next
request, up to ``batch_size`` or 256 KiB of records, whichever is larger.

With idempotence on (the default) the producer gets a producer id and epoch
from ``POST /v1/producers`` and gives each batch the partition's next base
sequence when the batch is closed. A retry resends the same body with the
same sequences, so the node stores the batch once.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from kaflow.client.errors import ClientClosedError
from kaflow.client.records import Header, RecordMetadata, TopicPartition, encode_record, record_size
from kaflow.client.transport import Transport, is_retriable, quote
from kaflow.errors import RecordTooLargeError, RequestTimedOutError
from kaflow.partitioner import Partitioner

__all__ = ["AsyncProducer"]

logger = logging.getLogger(__name__)

# Sequences are Kafka's int32 and wrap from 2^31-1 to 0.
_SEQUENCE_LIMIT = 1 << 31
# Record bytes that batches waiting behind an in-flight request may join up to. In
# JSON with base64 that is about 360 kB, well below a node's default request limit
# of 8 MiB. NOTE: a node whose --max-request-bytes is below that rejects the
# joined request, where the single batches would have passed.
_MERGED_REQUEST_BYTES = 256 * 1024


@dataclass
class _Batch:
    partition: TopicPartition
    created: float
    records: list[dict[str, Any]] = field(default_factory=list)
    futures: list[asyncio.Future[RecordMetadata]] = field(default_factory=list)
    size: int = 0
    base_sequence: int | None = None


def _merge_ready(queue: collections.deque[_Batch], max_bytes: int) -> _Batch:
    """Pop the oldest ready batch, joined with the next ones while they fit in ``max_bytes``.

    Batches close in sequence order, so joined batches keep contiguous
    sequences under the first one's base sequence. Without this, a small
    ``linger_ms`` queues one request per record behind the one in flight.
    """
    merged = queue.popleft()
    while queue and merged.size + queue[0].size <= max_bytes:
        following = queue.popleft()
        merged.records.extend(following.records)
        merged.futures.extend(following.futures)
        merged.size += following.size
    return merged


class AsyncProducer:
    """Send records to topics, batched per partition, idempotent by default.

    ``buffer_memory`` bounds the bytes of records not yet acknowledged; a
    send beyond it waits up to ``max_block_ms``. ``delivery_timeout_ms``
    bounds the time from a batch's first record to its acknowledgement,
    retries included.
    """

    def __init__(
        self,
        bootstrap: Sequence[str] | str,
        *,
        linger_ms: int = 5,
        batch_size: int = 16_384,
        buffer_memory: int = 32 * 1024 * 1024,
        max_block_ms: int = 60_000,
        delivery_timeout_ms: int = 120_000,
        request_timeout_ms: int = 30_000,
        retry_backoff_ms: int = 100,
        enable_idempotence: bool = True,
    ) -> None:
        self._transport = Transport(
            [bootstrap] if isinstance(bootstrap, str) else bootstrap,
            request_timeout_ms=request_timeout_ms,
            retry_timeout_ms=delivery_timeout_ms,
            retry_backoff_ms=retry_backoff_ms,
        )
        self.linger_s = linger_ms / 1000
        self.batch_size = batch_size
        self.buffer_memory = buffer_memory
        self.max_block_s = max_block_ms / 1000
        self.delivery_timeout_s = delivery_timeout_ms / 1000
        self.enable_idempotence = enable_idempotence

        self._partitioner = Partitioner()
        self._partition_counts: dict[str, int] = {}
        self._open: dict[TopicPartition, _Batch] = {}
        self._ready: dict[TopicPartition, collections.deque[_Batch]] = {}
        self._senders: dict[TopicPartition, asyncio.Task[None]] = {}
        self._linger_timers: dict[TopicPartition, asyncio.TimerHandle] = {}
        self._sequences: dict[TopicPartition, int] = {}
        self._pending: set[asyncio.Future[RecordMetadata]] = set()
        self._buffered_bytes = 0
        self._space = asyncio.Condition()
        self._producer_id: int | None = None
        self._producer_epoch: int | None = None
        self._init_lock = asyncio.Lock()
        self._closed = False

    async def __aenter__(self) -> AsyncProducer:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def buffered_bytes(self) -> int:
        """Bytes of records sent to the producer and not yet acknowledged or failed."""
        return self._buffered_bytes

    @property
    def producer_id(self) -> int | None:
        """The producer id from the node; None before the first batch or without idempotence."""
        return self._producer_id

    async def send(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        headers: Sequence[Header] | None = None,
        partition: int | None = None,
        timestamp: int | None = None,
    ) -> asyncio.Future[RecordMetadata]:
        """Add a record to its partition's batch and return a future of its metadata.

        Waits while the buffer is full. Raises ClientClosedError after
        :meth:`close`, and RecordTooLargeError for a record over ``buffer_memory``.
        """
        self._check_open()
        headers = list(headers or [])
        size = record_size(key, value, headers)
        if size > self.buffer_memory:
            raise RecordTooLargeError(
                f"record of {size} bytes exceeds the producer's buffer_memory of "
                f"{self.buffer_memory} bytes: raise buffer_memory or send a smaller record",
                size=size,
                limit=self.buffer_memory,
            )

        if partition is None:
            count = await self._partition_count(topic)
            partition = self._partitioner.partition(topic, key, count)
        await self._reserve(size)

        tp = TopicPartition(topic, partition)
        batch = self._open.get(tp)
        if batch is None:
            batch = _Batch(tp, time.monotonic())
            self._open[tp] = batch
            loop = asyncio.get_running_loop()
            self._linger_timers[tp] = loop.call_later(self.linger_s, self._close_batch, tp)
        batch.records.append(encode_record(key, value, headers, partition, timestamp))
        batch.size += size
        future: asyncio.Future[RecordMetadata] = asyncio.get_running_loop().create_future()
        batch.futures.append(future)
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)

        if batch.size >= self.batch_size:
            self._close_batch(tp)
        return future

    async def send_and_wait(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        headers: Sequence[Header] | None = None,
        partition: int | None = None,
        timestamp: int | None = None,
    ) -> RecordMetadata:
        """Send one record and wait for its metadata."""
        future = await self.send(topic, value, key, headers, partition, timestamp)
        return await future

    async def flush(self) -> None:
        """Send every open batch and wait until each buffered record succeeded or failed."""
        for tp in list(self._open):
            self._close_batch(tp)
        if self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    async def close(self) -> None:
        """Flush, then release the connections. Later sends raise ClientClosedError."""
        if self._closed:
            return
        try:
            await self.flush()
        finally:
            self._closed = True
            async with self._space:
                self._space.notify_all()
            await self._transport.close()

    def _check_open(self) -> None:
        if self._closed:
            raise ClientClosedError("the producer is closed: create a new one to send records")

    async def _partition_count(self, topic: str) -> int:
        count = self._partition_counts.get(topic)
        if count is None:
            described = await self._transport.request("GET", f"/v1/topics/{quote(topic)}")
            count = len(described["partitions"])
            self._partition_counts[topic] = count
        return count

    async def _reserve(self, size: int) -> None:
        async with self._space:
            try:
                await asyncio.wait_for(
                    self._space.wait_for(
                        lambda: self._closed or self._buffered_bytes + size <= self.buffer_memory
                    ),
                    self.max_block_s,
                )
            except TimeoutError:
                raise RequestTimedOutError(
                    f"buffer stayed full ({self._buffered_bytes} of {self.buffer_memory} bytes) "
                    f"for max_block_ms={self.max_block_s * 1000:.0f}: the nodes accept records "
                    "slower than they are sent; raise buffer_memory or send less",
                    size=size,
                    limit=self.buffer_memory,
                ) from None
            self._check_open()
            self._buffered_bytes += size

    async def _release(self, size: int) -> None:
        async with self._space:
            self._buffered_bytes -= size
            self._space.notify_all()

    def _close_batch(self, tp: TopicPartition) -> None:
        timer = self._linger_timers.pop(tp, None)
        if timer is not None:
            timer.cancel()
        batch = self._open.pop(tp, None)
        if batch is None:
            return
        if self.enable_idempotence:
            # Sequences are fixed when the batch closes, so a retry reuses them.
            batch.base_sequence = self._sequences.get(tp, 0)
            self._sequences[tp] = (batch.base_sequence + len(batch.records)) % _SEQUENCE_LIMIT
        self._ready.setdefault(tp, collections.deque()).append(batch)
        if tp not in self._senders:
            self._senders[tp] = asyncio.get_running_loop().create_task(self._drain(tp))

    async def _drain(self, tp: TopicPartition) -> None:
        queue = self._ready[tp]
        try:
            while queue:
                batch = _merge_ready(queue, max(self.batch_size, _MERGED_REQUEST_BYTES))
                try:
                    await self._deliver(batch)
                finally:
                    await self._release(batch.size)
        finally:
            del self._senders[tp]

    async def _deliver(self, batch: _Batch) -> None:
        try:
            body = await self._request_body(batch)
            remaining = batch.created + self.delivery_timeout_s - time.monotonic()
            response = await self._transport.request(
                "POST",
                f"/v1/topics/{quote(batch.partition.topic)}/records",
                body=body,
                retry_timeout_s=remaining,
            )
        except Exception as error:
            if is_retriable(error):
                error = RequestTimedOutError(
                    f"batch of {len(batch.records)} records for {batch.partition.topic}-"
                    f"{batch.partition.partition} was not acknowledged within "
                    f"delivery_timeout_ms={self.delivery_timeout_s * 1000:.0f}: "
                    f"last error {error!r}; check the cluster or raise delivery_timeout_ms"
                )
            logger.warning(
                "batch delivery failed topic=%s partition=%d records=%d error=%r",
                batch.partition.topic,
                batch.partition.partition,
                len(batch.records),
                error,
            )
            # TODO: a failed batch leaves the node's next expected sequence for this
            # partition unknown, so the next batch may get out_of_order_sequence.
            # Bumping the epoch would reset the sequences.
            for future in batch.futures:
                if not future.done():
                    future.set_exception(error)
            return

        for future, stored in zip(batch.futures, response["records"], strict=True):
            if not future.done():
                future.set_result(
                    RecordMetadata(
                        batch.partition.topic,
                        int(stored["partition"]),
                        int(stored["offset"]),
                        int(stored["timestamp"]),
                    )
                )

    async def _request_body(self, batch: _Batch) -> dict[str, Any]:
        body: dict[str, Any] = {"records": batch.records}
        if batch.base_sequence is not None:
            await self._init_producer()
            body["producer_id"] = self._producer_id
            body["producer_epoch"] = self._producer_epoch
            body["base_sequences"] = {str(batch.partition.partition): batch.base_sequence}
        return body

    async def _init_producer(self) -> None:
        async with self._init_lock:
            if self._producer_id is not None:
                return
            # NOTE: POST /v1/producers is not idempotent, so a retry after a
            # lost reply leaves an unused producer id that the node expires.
            allocated = await self._transport.request("POST", "/v1/producers", body={})
            self._producer_id = int(allocated["producer_id"])
            self._producer_epoch = int(allocated["producer_epoch"])
            logger.info(
                "producer initialised producer_id=%d producer_epoch=%d",
                self._producer_id,
                self._producer_epoch,
            )
