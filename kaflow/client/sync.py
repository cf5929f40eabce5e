"""Blocking clients for plain threads, built on the asynchronous ones.

Each blocking client owns a private event loop in a daemon thread and runs
every call of its asynchronous twin there, so the async object is only ever
touched by that one thread. Any number of threads may call one blocking
client at once.
"""

from __future__ import annotations

import abc
import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Awaitable, Coroutine, Iterable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

from kaflow.client.admin import AsyncAdmin
from kaflow.client.caller_thread import CallerThreadCallbacks
from kaflow.client.consumer import AsyncConsumer, OffsetsToCommit
from kaflow.client.errors import ClientClosedError
from kaflow.client.group_admin import (
    GroupDescription,
    GroupListing,
    OffsetResetPlan,
    OffsetResetStrategy,
)
from kaflow.client.membership import ConsumerGroupMetadata
from kaflow.client.producer import AsyncProducer
from kaflow.client.rebalance import ConsumerRebalanceListener
from kaflow.client.records import (
    ConsumerRecord,
    Header,
    OffsetAndTimestamp,
    RecordMetadata,
    TopicPartition,
)

__all__ = ["Admin", "Consumer", "Producer"]

T = TypeVar("T")
JsonObject = dict[str, Any]

# Maximum wait for abandoned calls to end when a blocking client closes.
_STOP_TIMEOUT_S = 5.0


class _LoopThread:
    """An event loop running in its own daemon thread."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()
        self._stopped = False

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        if self._stopped:
            coroutine.close()
            raise ClientClosedError("the client is closed: create a new one")
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        if threading.current_thread() is self._thread:
            coroutine.close()
            raise RuntimeError("a blocking client call from its own loop thread would deadlock")
        return self.submit(coroutine).result()

    def call(self, function: Any, *args: Any) -> Any:
        """Run a plain function on the loop thread and return its result."""

        async def wrapped() -> Any:
            return function(*args)

        return self.run(wrapped())

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        # A call abandoned by Ctrl-C may still run on the loop: end it before the loop closes.
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(_cancel_tasks(), self.loop).result(_STOP_TIMEOUT_S)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


class _BlockingClient(abc.ABC):
    """Context-manager support shared by the blocking clients."""

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @abc.abstractmethod
    def close(self) -> None:
        """Release the client's connections and its loop thread."""


class Admin(_BlockingClient):
    """The blocking twin of :class:`AsyncAdmin`; takes the same arguments."""

    def __init__(self, bootstrap: Sequence[str] | str, **options: Any) -> None:
        self._loop = _LoopThread("kaflow-admin")
        self._admin = self._loop.run(_build(AsyncAdmin, bootstrap, options))

    def __enter__(self) -> Admin:
        return self

    def close(self) -> None:
        """Close the connections and stop the loop thread."""
        try:
            self._loop.run(self._admin.close())
        except ClientClosedError:
            return
        self._loop.stop()

    def create_topic(
        self, name: str, partitions: int = 1, config: Mapping[str, int | str] | None = None
    ) -> JsonObject:
        return self._loop.run(self._admin.create_topic(name, partitions, config))

    def describe_topic(self, name: str) -> JsonObject:
        return self._loop.run(self._admin.describe_topic(name))

    def list_topics(self) -> list[JsonObject]:
        return self._loop.run(self._admin.list_topics())

    def alter_topic(
        self,
        name: str,
        *,
        partitions: int | None = None,
        config: Mapping[str, int | str | None] | None = None,
    ) -> JsonObject:
        return self._loop.run(self._admin.alter_topic(name, partitions=partitions, config=config))

    def delete_topic(self, name: str) -> None:
        self._loop.run(self._admin.delete_topic(name))

    def list_groups(self) -> list[GroupListing]:
        return self._loop.run(self._admin.list_groups())

    def describe_group(self, group: str) -> GroupDescription:
        return self._loop.run(self._admin.describe_group(group))

    def delete_group(self, group: str) -> None:
        self._loop.run(self._admin.delete_group(group))

    def reset_group_offsets(
        self,
        group: str,
        topic: str,
        to: OffsetResetStrategy | str,
        value: int | None = None,
        partitions: Sequence[int] | None = None,
        execute: bool = False,
    ) -> OffsetResetPlan:
        return self._loop.run(
            self._admin.reset_group_offsets(group, topic, to, value, partitions, execute)
        )

    def committed_offsets(self, group: str) -> list[JsonObject]:
        return self._loop.run(self._admin.committed_offsets(group))

    def cluster_status(self) -> JsonObject:
        return self._loop.run(self._admin.cluster_status())


class Producer(_BlockingClient):
    """The blocking twin of :class:`AsyncProducer`; takes the same arguments.

    :meth:`send` blocks only while the buffer is full and returns a
    :class:`concurrent.futures.Future` of the record's metadata.
    """

    def __init__(self, bootstrap: Sequence[str] | str, **options: Any) -> None:
        self._loop = _LoopThread("kaflow-producer")
        self._producer = self._loop.run(_build(AsyncProducer, bootstrap, options))

    def __enter__(self) -> Producer:
        return self

    def send(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        headers: Sequence[Header] | None = None,
        partition: int | None = None,
        timestamp: int | None = None,
    ) -> concurrent.futures.Future[RecordMetadata]:
        inner = self._loop.run(
            self._producer.send(topic, value, key, headers, partition, timestamp)
        )
        return self._loop.submit(_await(inner))

    def flush(self) -> None:
        self._loop.run(self._producer.flush())

    def close(self) -> None:
        """Flush, close the connections and stop the loop thread."""
        try:
            self._loop.run(self._producer.close())
        except ClientClosedError:
            return
        self._loop.stop()


class Consumer(_BlockingClient):
    """The blocking twin of :class:`AsyncConsumer`; takes the same arguments.

    Rebalance listener callbacks (plain functions) run in the thread that
    called :meth:`poll`, :meth:`unsubscribe` or :meth:`close`, so they may
    call :meth:`commit` and the other methods.
    """

    def __init__(self, bootstrap: Sequence[str] | str, **options: Any) -> None:
        self._loop = _LoopThread("kaflow-consumer")
        try:
            self._consumer = self._loop.run(_build(AsyncConsumer, bootstrap, options))
        except BaseException:
            # Invalid options: stop the loop thread that no close() call will stop.
            self._loop.stop()
            raise
        self._callbacks = CallerThreadCallbacks(self._loop.loop, self._loop.submit)
        self._loop.call(self._consumer._set_callback_invoker, self._callbacks.invoke)

    def __enter__(self) -> Consumer:
        return self

    def __iter__(self) -> Iterator[ConsumerRecord]:
        """Yield records forever, long-polling between batches."""
        while True:
            yield from self.poll(timeout_ms=30_000)

    def assign(self, partitions: Iterable[tuple[str, int]]) -> None:
        self._loop.call(self._consumer.assign, list(partitions))

    def subscribe(
        self, topics: Iterable[str], listener: ConsumerRebalanceListener | None = None
    ) -> None:
        chosen = [topics] if isinstance(topics, str) else list(topics)
        self._loop.call(self._consumer.subscribe, chosen, listener)

    def unsubscribe(self) -> None:
        self._callbacks.run(self._consumer.unsubscribe())

    def subscription(self) -> set[str]:
        result: set[str] = self._loop.call(self._consumer.subscription)
        return result

    def group_metadata(self) -> ConsumerGroupMetadata | None:
        result: ConsumerGroupMetadata | None = self._loop.call(self._consumer.group_metadata)
        return result

    def assignment(self) -> set[TopicPartition]:
        result: set[TopicPartition] = self._loop.call(self._consumer.assignment)
        return result

    def pause(self, *partitions: tuple[str, int]) -> None:
        self._loop.call(self._consumer.pause, *partitions)

    def resume(self, *partitions: tuple[str, int]) -> None:
        self._loop.call(self._consumer.resume, *partitions)

    def paused(self) -> set[TopicPartition]:
        result: set[TopicPartition] = self._loop.call(self._consumer.paused)
        return result

    def seek(self, partition: tuple[str, int], offset: int) -> None:
        self._loop.call(self._consumer.seek, partition, offset)

    def seek_to_beginning(self, *partitions: tuple[str, int]) -> None:
        self._loop.run(self._consumer.seek_to_beginning(*partitions))

    def seek_to_end(self, *partitions: tuple[str, int]) -> None:
        self._loop.run(self._consumer.seek_to_end(*partitions))

    def position(self, partition: tuple[str, int]) -> int:
        return self._loop.run(self._consumer.position(partition))

    def offsets_for_times(
        self, timestamps: Mapping[tuple[str, int], int]
    ) -> dict[TopicPartition, OffsetAndTimestamp | None]:
        return self._loop.run(self._consumer.offsets_for_times(timestamps))

    def poll(self, timeout_ms: int = 0, max_records: int = 500) -> list[ConsumerRecord]:
        return self._callbacks.run(self._consumer.poll(timeout_ms, max_records))

    def commit(self, offsets: OffsetsToCommit | None = None) -> None:
        self._loop.run(self._consumer.commit(offsets))

    def commit_async(
        self, offsets: OffsetsToCommit | None = None
    ) -> concurrent.futures.Future[None]:
        """Start committing and return a future; the offsets are taken at the call."""
        task: asyncio.Task[None] = self._loop.call(self._consumer.commit_async, offsets)
        return self._loop.submit(_await(task))

    def committed(self, partition: tuple[str, int]) -> int | None:
        return self._loop.run(self._consumer.committed(partition))

    def close(self) -> None:
        """Leave the group if subscribed, close the connections and stop the loop thread."""
        try:
            self._callbacks.run(self._consumer.close())
        except ClientClosedError:
            return
        finally:
            if not self._callbacks.in_callback():
                self._loop.stop()


async def _build(cls: type[T], bootstrap: Sequence[str] | str, options: dict[str, Any]) -> T:
    # The async clients create asyncio primitives, so they are built on the loop thread.
    return cls(bootstrap, **options)  # type: ignore[call-arg]


async def _await(awaitable: Awaitable[T]) -> T:
    return await awaitable


async def _cancel_tasks() -> None:
    tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
