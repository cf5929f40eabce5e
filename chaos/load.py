"""The load of a chaos run: idempotent producers, consumers and a committed-offset sampler.

Every record's value is JSON ``{"producer": name, "seq": n}``, unique in the
run, and its key is ``<producer>-<n mod keys>``. The load writes JSON Lines
files into the run directory, read later by :mod:`chaos.checker`:

``acks.jsonl``
    one line per send outcome: ``{"producer", "key", "seq", "status": "ack",
    "topic", "partition", "offset", "t_send", "t_ack"}`` or, for a failed send,
    ``"status": "error"`` with ``"error"`` and ``"t_error"``.
``consumed-<consumer>.jsonl``
    one line per processed record: ``{"consumer", "member_id",
    "member_epoch", "partition", "offset", "t"}``. Written by each consumer
    process (:mod:`chaos.consumer_process`).
``commits-<consumer>.jsonl``
    one line per successful commit: ``{"consumer", "member_id",
    "member_epoch", "partition", "offset", "t"}``.
``committed.jsonl``
    the sampler's reads of the group's committed offsets, from each node
    on its own URL: ``{"t", "node", "partition", "offset"}``.

Times are seconds since the run started, from the run's timeline.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import aiohttp

from chaos.api import ChaosCluster, ChaosError, ChaosNode, ChaosSetupError, Timeline, Workload
from chaos.consumers import ConsumerSettings, ProcessConsumer
from chaos.http import NodeHttpError, request_json
from kaflow.client import AsyncAdmin, AsyncProducer
from kaflow.client.records import RecordMetadata
from kaflow.errors import KaflowError, TopicAlreadyExistsError

__all__ = ["GROUP", "TOPIC", "JsonLines", "Load", "LoadOptions"]

logger = logging.getLogger(__name__)

TOPIC = "chaos"
GROUP = "chaos-consumers"


class JsonLines:
    """An append-only JSON Lines file, flushed after every line so a crash keeps it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] = open(path, "a", encoding="utf-8")  # noqa: SIM115

    def write(self, entry: dict[str, Any]) -> None:
        self._file.write(json.dumps(entry, separators=(",", ":")) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


@dataclass(frozen=True)
class LoadOptions:
    """Size of the load. ``rate`` is records per second per producer."""

    producers: int = 3
    consumers: int = 2
    partitions: int = 3
    rate: float = 40.0
    keys: int = 16
    max_in_flight: int = 32
    delivery_timeout_ms: int = 60_000
    # "group": the consumers subscribe to one consumer group; "assign": each
    # reads fixed partitions and the group only stores committed offsets.
    consumer_mode: str = "group"
    # Kafka's max.poll.interval.ms for group members; a stall-consumer fault
    # lasts longer, so the stalled member is removed from the group.
    max_poll_interval_ms: int = 5_000


class Load(Workload):
    """Producers and consumers against one cluster, logging what they did."""

    def __init__(
        self, cluster: ChaosCluster, out_dir: Path, timeline: Timeline, options: LoadOptions
    ) -> None:
        self.cluster = cluster
        self.urls = cluster.urls
        self.out_dir = out_dir
        self.timeline = timeline
        self.options = options
        self.acks = JsonLines(out_dir / "acks.jsonl")
        self.committed = JsonLines(out_dir / "committed.jsonl")
        self._settings = ConsumerSettings(
            self.urls,
            TOPIC,
            GROUP,
            out_dir,
            timeline.started_wall,
            options.max_poll_interval_ms,
        )
        self._stopping = asyncio.Event()
        self._producer_tasks: list[asyncio.Task[None]] = []
        self._consumers: dict[str, ProcessConsumer] = {}
        self._sampler: asyncio.Task[None] | None = None
        self._next_consumer = 1
        self.acked = 0
        self.failed = 0
        self.stopped = False

    async def create_topic(self) -> None:
        """Create the run's topic; an existing topic of the same name is an error."""
        async with AsyncAdmin(self.urls, retry_timeout_ms=60_000) as admin:
            try:
                await admin.create_topic(TOPIC, partitions=self.options.partitions)
            except TopicAlreadyExistsError as exc:
                raise ChaosSetupError(
                    f"topic {TOPIC!r} already exists; start the run on empty data directories",
                    topic=TOPIC,
                ) from exc

    async def start(self) -> None:
        """Create the topic, then start the producers, the consumers and the sampler."""
        await self.create_topic()
        for index in range(1, self.options.producers + 1):
            task = asyncio.create_task(self._produce(f"p{index}"), name=f"producer-p{index}")
            self._producer_tasks.append(task)
        for _ in range(self.options.consumers):
            await self.start_consumer()
        self._sampler = asyncio.create_task(self._sample_committed(), name="committed-sampler")

    # Producers.

    async def _produce(self, name: str) -> None:
        producer = AsyncProducer(
            self.urls,
            linger_ms=5,
            delivery_timeout_ms=self.options.delivery_timeout_ms,
            enable_idempotence=True,
        )
        in_flight = asyncio.Semaphore(self.options.max_in_flight)
        interval = 1.0 / self.options.rate
        seq = 0
        next_send = time.monotonic()
        try:
            while not self._stopping.is_set():
                await in_flight.acquire()
                key = f"{name}-{seq % self.options.keys}"
                value = json.dumps({"producer": name, "seq": seq}).encode()
                sent_at = self.timeline.now()
                try:
                    future = await producer.send(TOPIC, value, key=key.encode())
                except (KaflowError, ChaosError) as exc:
                    in_flight.release()
                    self._log_error(name, key, seq, sent_at, exc)
                else:
                    future.add_done_callback(
                        functools.partial(self._on_done, name, key, seq, sent_at, in_flight)
                    )
                seq += 1
                next_send += interval
                delay = next_send - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                else:
                    # The producer fell behind during a fault: restart the schedule, no burst.
                    next_send = time.monotonic()
        finally:
            await producer.close()

    def _on_done(
        self,
        name: str,
        key: str,
        seq: int,
        sent_at: float,
        in_flight: asyncio.Semaphore,
        future: asyncio.Future[RecordMetadata],
    ) -> None:
        in_flight.release()
        if future.cancelled():
            self._log_error(name, key, seq, sent_at, asyncio.CancelledError())
            return
        error = future.exception()
        if error is not None:
            self._log_error(name, key, seq, sent_at, error)
            return
        metadata = future.result()
        self.acked += 1
        self.acks.write(
            {
                "producer": name,
                "key": key,
                "seq": seq,
                "status": "ack",
                "topic": metadata.topic,
                "partition": metadata.partition,
                "offset": metadata.offset,
                "t_send": round(sent_at, 4),
                "t_ack": round(self.timeline.now(), 4),
            }
        )

    def _log_error(
        self, name: str, key: str, seq: int, sent_at: float, error: BaseException
    ) -> None:
        if self.failed == 0:
            logger.warning("send failed producer=%s seq=%d error=%r", name, seq, error)
        self.failed += 1
        self.acks.write(
            {
                "producer": name,
                "key": key,
                "seq": seq,
                "status": "error",
                "error": repr(error),
                "t_send": round(sent_at, 4),
                "t_error": round(self.timeline.now(), 4),
            }
        )

    # Consumers.

    def consumer_names(self) -> list[str]:
        return [name for name, consumer in self._consumers.items() if consumer.alive]

    def _partitions_of(self, slot: int) -> list[int] | None:
        if self.options.consumer_mode == "group":
            return None
        slots = max(self.options.consumers, 1)
        return [p for p in range(self.options.partitions) if p % slots == slot]

    async def start_consumer(self) -> str:
        name = f"c{self._next_consumer}"
        self._next_consumer += 1
        # A new consumer takes the first free slot, which is the slot (and the
        # assigned partitions) of a crashed consumer when there is one.
        occupied_slots = {self._consumers[other].slot for other in self.consumer_names()}
        slot = next(
            (s for s in range(max(self.options.consumers, 1)) if s not in occupied_slots), 0
        )
        consumer = ProcessConsumer(name, slot, self._partitions_of(slot), self._settings)
        consumer.start()
        self._consumers[name] = consumer
        return name

    def _consumer(self, name: str) -> ProcessConsumer:
        consumer = self._consumers.get(name)
        if consumer is None or not consumer.alive:
            raise ChaosError(
                f"no running consumer named {name!r}; running: {self.consumer_names()}",
                consumer=name,
            )
        return consumer

    async def crash_consumer(self, name: str) -> None:
        await self._consumer(name).crash()

    async def stall_consumer(self, name: str) -> None:
        self._consumer(name).stall()

    async def resume_consumer(self, name: str) -> None:
        self._consumer(name).resume()

    async def _sample_committed(self) -> None:
        # Each node is read on its own URL: its applied committed offsets must
        # never go backwards, while two nodes may lag each other.
        async with aiohttp.ClientSession() as session:
            while not self._stopping.is_set():
                for node in list(self.cluster.nodes):
                    if node.running and not node.paused:
                        await self._sample_node(session, node)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), 0.5)

    async def _sample_node(self, session: aiohttp.ClientSession, node: ChaosNode) -> None:
        url = f"{node.http_url}/v1/groups/{GROUP}/offsets"
        try:
            body = await request_json(session, "GET", url, timeout_s=1.0)
        except NodeHttpError:
            return
        t = round(self.timeline.now(), 4)
        for entry in body.get("offsets", []):
            self.committed.write(
                {
                    "t": t,
                    "node": node.name,
                    "partition": entry["partition"],
                    "offset": entry["offset"],
                }
            )

    async def stop(self, timeout_s: float = 90.0) -> None:
        """Stop sending, wait for outstanding sends and commits, then close every file."""
        if self.stopped:
            return
        self.stopped = True
        self._stopping.set()
        tasks: list[asyncio.Task[None]] = [*self._producer_tasks]
        tasks += [
            asyncio.create_task(consumer.stop(), name=f"stop-consumer-{consumer.name}")
            for consumer in self._consumers.values()
        ]
        if self._sampler is not None:
            tasks.append(self._sampler)
        done, pending = await asyncio.wait(tasks, timeout=timeout_s)
        for task in pending:
            logger.warning("load task did not stop in time task=%s", task.get_name())
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                logger.warning(
                    "load task failed task=%s error=%r", task.get_name(), task.exception()
                )
        for log in (self.acks, self.committed):
            log.close()
