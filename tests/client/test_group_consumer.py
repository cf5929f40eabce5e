"""AsyncConsumer and Consumer as consumer group members, in one process against one node."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from kaflow.client import (
    AsyncConsumer,
    CommitFailedError,
    Consumer,
    ConsumerRebalanceListener,
    IllegalStateError,
    MemberState,
    Producer,
    TopicPartition,
)
from kaflow.errors import FencedInstanceIdError, InvalidRequestError, KaflowError
from tests.harness import NodeProcess, wait_until

FAST = {"session_timeout_ms": 2000, "heartbeat_interval_ms": 100}


class Recorder(ConsumerRebalanceListener):
    """Record each callback as (kind, partition numbers)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[int]]] = []

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.calls.append(("assigned", sorted(tp.partition for tp in assigned)))

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.calls.append(("revoked", sorted(tp.partition for tp in revoked)))

    def on_partitions_lost(self, lost: set[TopicPartition]) -> None:
        self.calls.append(("lost", sorted(tp.partition for tp in lost)))


async def poll_until(
    consumers: list[AsyncConsumer], done: Callable[[], bool], timeout: float = 20.0
) -> None:
    """Poll every consumer in turn until ``done`` returns True."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not done():
        if loop.time() > deadline:
            sizes = [sorted(c.assignment()) for c in consumers]
            raise AssertionError(f"timed out after {timeout} s; assignments {sizes}")
        await asyncio.gather(*(consumer.poll(timeout_ms=100) for consumer in consumers))


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """One node for the module's tests; each test uses its own topic and group."""
    started = NodeProcess(tmp_path_factory.mktemp("group-consumer") / "node-1")
    try:
        yield started.start()
    finally:
        started.kill()


@pytest.fixture
def topic(request: pytest.FixtureRequest) -> str:
    name = str(request.node.originalname).removeprefix("test_group_")
    return "jobs-" + name.replace("_", "-")


@pytest.fixture
def group(topic: str) -> str:
    return topic.replace("jobs-", "workers-", 1)


@pytest.fixture
async def consumers(node: NodeProcess) -> AsyncIterator[list[AsyncConsumer]]:
    created: list[AsyncConsumer] = []
    yield created
    for consumer in created:
        await consumer.close()


def group_consumer(
    node: NodeProcess, consumers: list[AsyncConsumer], group: str, **options: Any
) -> AsyncConsumer:
    settings: dict[str, Any] = {"group_id": group, "auto_offset_reset": "earliest", **FAST}
    settings.update(options)
    consumer = AsyncConsumer(node.url, **settings)
    consumers.append(consumer)
    return consumer


async def test_group_splits_partitions_by_count(
    node: NodeProcess, topic: str, group: str, consumers: list[AsyncConsumer]
) -> None:
    node.create_topic(topic, partitions=6)
    first = [group_consumer(node, consumers, group) for _ in range(3)]
    for consumer in first:
        consumer.subscribe([topic])
    await poll_until(first, lambda: [len(c.assignment()) for c in first] == [2, 2, 2])

    fourth = group_consumer(node, consumers, group)
    fourth.subscribe([topic])
    everyone = [*first, fourth]
    await poll_until(
        everyone,
        lambda: sorted(len(c.assignment()) for c in everyone) == [1, 1, 2, 2],
    )

    owned = [tp for consumer in everyone for tp in consumer.assignment()]
    assert sorted(owned) == [TopicPartition(topic, p) for p in range(6)]
    metadata = fourth.group_metadata()
    assert metadata is not None
    assert metadata.state is MemberState.JOINED
    assert metadata.member_epoch == metadata.group_epoch


async def test_group_assign_and_subscribe_conflict(
    node: NodeProcess, topic: str, group: str, consumers: list[AsyncConsumer]
) -> None:
    node.create_topic(topic)
    subscribed = group_consumer(node, consumers, group)
    subscribed.subscribe([topic])
    with pytest.raises(IllegalStateError, match=r"call unsubscribe\(\) first"):
        subscribed.assign([(topic, 0)])

    assigned = group_consumer(node, consumers, group)
    assigned.assign([(topic, 0)])
    with pytest.raises(IllegalStateError, match=r"call unsubscribe\(\) or assign\(\[\]\) first"):
        assigned.subscribe([topic])
    await assigned.unsubscribe()
    assigned.subscribe([topic])
    assert assigned.subscription() == {topic}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"group_instance_id": "a"}, "needs a group"),
        ({"enable_auto_commit": True}, "needs a group"),
        (
            {"group_id": "g", "session_timeout_ms": 1000, "heartbeat_interval_ms": 1000},
            "must be lower than session_timeout_ms",
        ),
        ({"group_id": "g", "max_poll_interval_ms": 0}, "max_poll_interval_ms=0"),
        ({"group_id": "g", "group_instance_id": ""}, "non-empty"),
    ],
    ids=["instance-without-group", "auto-commit-without-group", "heartbeat", "poll", "instance"],
)
def test_group_invalid_options_raise(
    node: NodeProcess, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        AsyncConsumer(node.url, **options)


async def test_group_subscribe_invalid_topics(
    node: NodeProcess, topic: str, group: str, consumers: list[AsyncConsumer]
) -> None:
    without_group = AsyncConsumer(node.url)
    consumers.append(without_group)
    with pytest.raises(ValueError, match="pass group_id="):
        without_group.subscribe([topic])
    consumer = group_consumer(node, consumers, group)
    with pytest.raises(ValueError, match="one or more topic names"):
        consumer.subscribe([])
    with pytest.raises(ValueError, match="one or more topic names"):
        consumer.subscribe([topic, ""])


async def test_group_session_timeout_out_of_bounds(
    node: NodeProcess, topic: str, group: str, consumers: list[AsyncConsumer]
) -> None:
    node.create_topic(topic)
    consumer = group_consumer(
        node, consumers, group, session_timeout_ms=500, heartbeat_interval_ms=100
    )
    consumer.subscribe([topic])
    with pytest.raises(InvalidRequestError, match="session_timeout_ms 500"):
        await consumer.poll()


async def test_group_replaced_member_commit_fails(
    node: NodeProcess, topic: str, group: str, consumers: list[AsyncConsumer]
) -> None:
    node.create_topic(topic, partitions=2)
    node.post(f"/v1/topics/{topic}/records", {"records": [{"value": "a", "partition": 0}]})
    recorder = Recorder()
    first = group_consumer(node, consumers, group, group_instance_id="worker-1")
    first.subscribe([topic], recorder)
    await poll_until([first], lambda: len(first.assignment()) == 2)
    await first.poll(timeout_ms=2000)
    await first.commit()

    # A second process with the same instance id takes the member's place.
    second = group_consumer(node, consumers, group, group_instance_id="worker-1")
    second.subscribe([topic])
    await poll_until([second], lambda: len(second.assignment()) == 2)

    # The commit fails on the node (unknown_member) or, once a heartbeat
    # learned of the fencing, in the client before it is sent.
    with pytest.raises(CommitFailedError, match=f"group '{group}'"):
        await first.commit({(topic, 0): 0})
    offsets = node.get(f"/v1/groups/{group}/offsets")["offsets"]
    assert [(o["partition"], o["offset"]) for o in offsets] == [(0, 1), (1, 0)]

    # The replaced consumer learns it shares its identity and stops for good,
    # instead of joining again and replacing the other one in turn.
    with pytest.raises(FencedInstanceIdError, match="must not share a group_instance_id"):
        await poll_until([first], lambda: False)
    assert ("lost", [0, 1]) in recorder.calls
    assert ("revoked", [0, 1]) not in recorder.calls
    with pytest.raises(FencedInstanceIdError):
        await first.poll(timeout_ms=100)
    for _ in range(10):
        await second.poll(timeout_ms=150)
    assert len(second.assignment()) == 2
    members = node.get(f"/v1/groups/{group}")["members"]
    assert [m["member_id"] for m in members] == [second.group_metadata().member_id]


async def test_group_standalone_commit_rejected_while_active(
    node: NodeProcess, topic: str, group: str, consumers: list[AsyncConsumer]
) -> None:
    node.create_topic(topic)
    member = group_consumer(node, consumers, group)
    member.subscribe([topic])
    await poll_until([member], lambda: len(member.assignment()) == 1)

    standalone = group_consumer(node, consumers, group)
    standalone.assign([(topic, 0)])
    with pytest.raises(KaflowError, match="member") as raised:
        await standalone.commit({(topic, 0): 0})
    assert raised.value.code == "unknown_member"


async def test_group_max_poll_interval_leaves_then_rejoins(
    node: NodeProcess,
    topic: str,
    group: str,
    consumers: list[AsyncConsumer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="kaflow.client")
    node.create_topic(topic)
    recorder = Recorder()
    consumer = group_consumer(node, consumers, group, max_poll_interval_ms=1000)
    consumer.subscribe([topic], recorder)
    await poll_until([consumer], lambda: len(consumer.assignment()) == 1)
    first = consumer.group_metadata()
    assert first is not None

    def left() -> bool:
        metadata = consumer.group_metadata()
        return metadata is not None and metadata.state is MemberState.LEFT

    await asyncio.to_thread(wait_until, left, 20, "the consumer to leave the group")
    assert node.get(f"/v1/groups/{group}")["members"] == []
    warnings = [r for r in caplog.records if "max_poll_interval_ms" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING

    # Partitions stay in assignment() until poll() applies the loss.
    assert consumer.assignment() == {TopicPartition(topic, 0)}
    await consumer.poll(timeout_ms=100)
    await poll_until([consumer], lambda: len(consumer.assignment()) == 1)
    again = consumer.group_metadata()
    assert again is not None
    assert ("lost", [0]) in recorder.calls
    assert again.member_id != first.member_id


async def test_group_poll_inside_callback_raises(
    node: NodeProcess, topic: str, group: str, consumers: list[AsyncConsumer]
) -> None:
    node.create_topic(topic)
    errors: list[BaseException] = []
    consumer = group_consumer(node, consumers, group)

    class PollsInCallback(ConsumerRebalanceListener):
        async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
            try:
                await consumer.poll()
            except IllegalStateError as error:
                errors.append(error)

    consumer.subscribe([topic], PollsInCallback())
    await poll_until([consumer], lambda: len(consumer.assignment()) == 1)
    assert len(errors) == 1
    assert "return from the callback first" in str(errors[0])


async def test_group_auto_commit_commits_positions(
    node: NodeProcess, topic: str, group: str, consumers: list[AsyncConsumer]
) -> None:
    node.create_topic(topic)
    records = [{"value": str(i), "partition": 0} for i in range(5)]
    node.post(f"/v1/topics/{topic}/records", {"records": records})
    consumer = group_consumer(
        node, consumers, group, enable_auto_commit=True, auto_commit_interval_ms=100
    )
    consumer.subscribe([topic])
    seen: list[int] = []

    async def read_all() -> None:
        while len(seen) < 5:
            seen.extend(record.offset for record in await consumer.poll(timeout_ms=200))

    await asyncio.wait_for(read_all(), 20)
    await consumer.close()
    assert seen == [0, 1, 2, 3, 4]
    offsets = node.get(f"/v1/groups/{group}/offsets")["offsets"]
    assert [(o["partition"], o["offset"]) for o in offsets] == [(0, 5)]


def test_group_sync_consumer_callbacks_in_poll_thread(
    node: NodeProcess, topic: str, group: str
) -> None:
    node.create_topic(topic, partitions=4)
    total = 200
    done = threading.Event()

    def produce() -> None:
        with Producer(node.url, linger_ms=2) as producer:
            for i in range(total):
                producer.send(topic, str(i).encode(), partition=i % 4)

    seen: list[tuple[int, int]] = []
    callback_threads: list[tuple[str, int]] = []
    commit_errors: list[BaseException] = []
    lock = threading.Lock()

    def consume(name: str) -> None:
        consumer = Consumer(node.url, group_id=group, auto_offset_reset="earliest", **FAST)

        class CommitOnRevoke(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
                callback_threads.append((name, threading.get_ident()))
                try:
                    consumer.commit({tp: consumer.position(tp) for tp in revoked})
                except CommitFailedError as error:
                    commit_errors.append(error)

            def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
                callback_threads.append((name, threading.get_ident()))

        consumer.subscribe([topic], CommitOnRevoke())
        try:
            while not done.is_set():
                records = consumer.poll(timeout_ms=100, max_records=10)
                with lock:
                    seen.extend((r.partition, r.offset) for r in records)
                if records:
                    consumer.commit()
        finally:
            consumer.close()

    threads = [threading.Thread(target=produce, name="producer")]
    threads.append(threading.Thread(target=consume, args=("a",), name="consumer-a"))
    for thread in threads:
        thread.start()
    wait_until(lambda: len(seen) >= 40, 30, "consumer a to read records")
    second = threading.Thread(target=consume, args=("b",), name="consumer-b")
    second.start()
    threads.append(second)
    wait_until(lambda: len(seen) >= total, 60, f"all {total} records to be read")
    done.set()
    for thread in threads:
        thread.join(timeout=60)

    idents = {"a": threads[1].ident, "b": second.ident}
    assert callback_threads, "no rebalance callback ran"
    assert all(ident == idents[name] for name, ident in callback_threads)
    assert any(name == "a" for name, _ in callback_threads)
    assert commit_errors == []
    assert sorted(seen) == sorted(set(seen))
    assert len(seen) == total


def test_group_sync_poll_inside_callback_raises(node: NodeProcess, topic: str, group: str) -> None:
    node.create_topic(topic)
    errors: list[BaseException] = []
    with Consumer(node.url, group_id=group, **FAST) as consumer:

        class PollsInCallback(ConsumerRebalanceListener):
            def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
                try:
                    consumer.poll()
                except IllegalStateError as error:
                    errors.append(error)

        consumer.subscribe([topic], PollsInCallback())
        wait_until(
            lambda: bool(consumer.poll(timeout_ms=100) or consumer.assignment()),
            20,
            "the consumer to get its partition",
        )
    assert len(errors) == 1


async def test_group_commit_async_commits_positions(
    node: NodeProcess, topic: str, group: str, consumers: list[AsyncConsumer]
) -> None:
    node.create_topic(topic)
    records = [{"value": str(i), "partition": 0} for i in range(3)]
    node.post(f"/v1/topics/{topic}/records", {"records": records})
    consumer = group_consumer(node, consumers, group)
    consumer.subscribe([topic])
    seen: list[int] = []

    async def read_all() -> None:
        while len(seen) < 3:
            seen.extend(record.offset for record in await consumer.poll(timeout_ms=200))

    await asyncio.wait_for(read_all(), 20)

    task = consumer.commit_async()
    await task
    offsets = node.get(f"/v1/groups/{group}/offsets")["offsets"]
    assert [(o["partition"], o["offset"]) for o in offsets] == [(0, 3)]


def test_group_sync_commit_async_returns_future(node: NodeProcess, topic: str, group: str) -> None:
    node.create_topic(topic)
    node.post(f"/v1/topics/{topic}/records", {"records": [{"value": "a", "partition": 0}]})
    with Consumer(node.url, group_id=group, auto_offset_reset="earliest", **FAST) as consumer:
        consumer.subscribe([topic])
        wait_until(lambda: bool(consumer.poll(timeout_ms=200)), 20, "the record to be read")
        future = consumer.commit_async({(topic, 0): 1})
        assert future.result(timeout=30) is None
    offsets = node.get(f"/v1/groups/{group}/offsets")["offsets"]
    assert [(o["partition"], o["offset"]) for o in offsets] == [(0, 1)]


async def test_group_member_named_by_host_and_process(
    node: NodeProcess, topic: str, group: str, consumers: list[AsyncConsumer]
) -> None:
    node.create_topic(topic, partitions=1)
    unnamed = group_consumer(node, consumers, group)
    unnamed.subscribe([topic])
    await poll_until([unnamed], lambda: len(unnamed.assignment()) == 1)

    members = node.get(f"/v1/groups/{group}")["members"]

    assert [m["client_id"] for m in members] == [f"kaflow-{socket.gethostname()}-{os.getpid()}"]
