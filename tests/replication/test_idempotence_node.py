"""Idempotent produce through an in-process Node with a one-member Raft group."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from kaflow.broker import ProduceRecord, ProducerIdAndEpoch, ProducerSequences
from kaflow.config import FsyncPolicy, NodeConfig
from kaflow.errors import (
    InvalidProducerEpochError,
    InvalidRecordError,
    InvalidRequestError,
    OutOfOrderSequenceError,
    UnknownPartitionError,
    UnknownProducerIdError,
)
from kaflow.node import Node
from kaflow.replication.producer_requests import check_producer_sequences
from tests.harness import free_port

NodeStarter = Callable[[], Awaitable[Node]]


@pytest.fixture
async def start_node(tmp_path: Path) -> AsyncIterator[NodeStarter]:
    """Start Nodes on one data directory, one after another; stop them at the end."""
    started: list[Node] = []
    # A restarted member keeps its Raft address: the snapshot lists the members.
    raft_port = free_port()

    async def start() -> Node:
        config = NodeConfig(
            data_dir=tmp_path / "data", raft_port=raft_port, port=0, fsync=FsyncPolicy.NEVER
        )
        node = Node(config)
        started.append(node)
        await node.start()
        return node

    yield start
    for node in started:
        await node.stop()


def records(*values: bytes, partition: int = 0) -> list[ProduceRecord]:
    return [ProduceRecord(None, value, partition=partition) for value in values]


def sequences(producer: ProducerIdAndEpoch, **by_partition: int) -> ProducerSequences:
    base_sequences = {int(name.removeprefix("p")): base for name, base in by_partition.items()}
    return ProducerSequences(producer.producer_id, producer.producer_epoch, base_sequences)


async def stored_values(node: Node, partition: int = 0) -> list[bytes | None]:
    fetched = await node.fetch("t", partition, 0, 1000, 1 << 20, 0)
    return [record.value for record in fetched.records]


async def test_node_retry_returns_original_metadata(start_node: NodeStarter) -> None:
    node = await start_node()
    await node.create_topic("t", 2, {})
    producer = await node.init_producer(None)
    request = [
        ProduceRecord(None, b"a", partition=0),
        ProduceRecord(None, b"b", partition=1, timestamp=5),
        ProduceRecord(None, b"c", partition=0),
    ]

    first = await node.produce("t", request, sequences(producer, p0=0, p1=0))
    retry = await node.produce("t", request, sequences(producer, p0=0, p1=0))

    assert retry == first
    assert [(meta.partition, meta.offset) for meta in first] == [(0, 0), (1, 0), (0, 1)]
    assert await stored_values(node, 0) == [b"a", b"c"]
    assert await stored_values(node, 1) == [b"b"]


async def test_node_coalesced_retry_stored_once(start_node: NodeStarter) -> None:
    node = await start_node()
    await node.create_topic("t", 1, {})
    producer = await node.init_producer(None)
    request = records(b"x", b"y")

    # The first request goes out alone; the next two wait and share one command.
    results = await asyncio.gather(
        node.produce("t", records(b"plain")),
        node.produce("t", request, sequences(producer, p0=0)),
        node.produce("t", request, sequences(producer, p0=0)),
    )

    assert node.replica.proposer.stats.largest_command_requests >= 2
    assert results[1] == results[2]
    assert await stored_values(node) == [b"plain", b"x", b"y"]


async def test_node_errors_for_bad_sequences(start_node: NodeStarter) -> None:
    node = await start_node()
    await node.create_topic("t", 1, {})
    producer = await node.init_producer(None)
    await node.produce("t", records(b"a"), sequences(producer, p0=0))

    with pytest.raises(OutOfOrderSequenceError, match="next expected sequence is 1"):
        await node.produce("t", records(b"b"), sequences(producer, p0=4))
    with pytest.raises(UnknownProducerIdError, match="producer id 99 is unknown"):
        await node.produce("t", records(b"b"), ProducerSequences(99, 0, {0: 0}))
    bumped = await node.init_producer(producer.producer_id)
    with pytest.raises(InvalidProducerEpochError, match="fenced"):
        await node.produce("t", records(b"b"), sequences(producer, p0=1))
    await node.produce("t", records(b"c"), sequences(bumped, p0=0))

    assert bumped == ProducerIdAndEpoch(producer.producer_id, 1)
    assert await stored_values(node) == [b"a", b"c"]


async def test_node_init_unknown_producer_rejected(start_node: NodeStarter) -> None:
    node = await start_node()

    with pytest.raises(UnknownProducerIdError):
        await node.init_producer(5)
    with pytest.raises(InvalidRequestError, match="producer_id is -1"):
        await node.init_producer(-1)


async def test_node_producer_state_survives_snapshot(start_node: NodeStarter) -> None:
    node = await start_node()
    await node.create_topic("t", 1, {})
    producer = await node.init_producer(None)
    first = await node.produce("t", records(b"a", b"b"), sequences(producer, p0=0))
    await node.compact()
    await node.produce("t", records(b"c"), sequences(producer, p0=2))
    await node.stop()

    # The restarted node loads the snapshot and replays the entry after it.
    again = await start_node()
    retry_first = await again.produce("t", records(b"a", b"b"), sequences(producer, p0=0))
    retry_second = await again.produce("t", records(b"c"), sequences(producer, p0=2))
    following = await again.produce("t", records(b"d"), sequences(producer, p0=3))

    assert retry_first == first
    assert [meta.offset for meta in retry_second] == [2]
    assert [meta.offset for meta in following] == [3]
    assert await stored_values(again) == [b"a", b"b", b"c", b"d"]


async def test_node_unknown_partition_checked_before_propose(start_node: NodeStarter) -> None:
    node = await start_node()
    await node.create_topic("t", 1, {})
    producer = await node.init_producer(None)

    with pytest.raises(UnknownPartitionError):
        await node.produce("t", records(b"a", partition=3), sequences(producer, p3=0))


@pytest.mark.parametrize(
    ("request_records", "producer", "error", "match"),
    [
        (
            [ProduceRecord(None, b"a")],
            ProducerSequences(0, 0, {0: 0}),
            InvalidRecordError,
            "record 0 has no partition",
        ),
        (
            records(b"a"),
            ProducerSequences(0, 0, {0: 0, 1: 0}),
            InvalidRequestError,
            r"base_sequences names partitions \[0, 1\] but the records go to partitions \[0\]",
        ),
        (
            records(b"a", partition=1),
            ProducerSequences(0, 0, {0: 0}),
            InvalidRequestError,
            "base_sequences names partitions",
        ),
        (
            records(b"a"),
            ProducerSequences(0, 2**15, {0: 0}),
            InvalidRequestError,
            "producer_epoch is 32768, outside 0..32767",
        ),
        (
            records(b"a"),
            ProducerSequences(0, 0, {0: 2**31}),
            InvalidRequestError,
            r"base_sequences\[0\] is 2147483648",
        ),
    ],
    ids=["no-partition", "extra-sequence", "missing-sequence", "epoch-range", "sequence-range"],
)
def test_producer_request_checks(
    request_records: list[ProduceRecord],
    producer: ProducerSequences,
    error: type[Exception],
    match: str,
) -> None:
    with pytest.raises(error, match=match):
        check_producer_sequences(request_records, producer)


def test_producer_request_check_accepts_fitting_fields() -> None:
    request = records(b"a", b"b") + records(b"c", partition=2)

    # Raises nothing: one sequence for each of the partitions 0 and 2.
    check_producer_sequences(request, ProducerSequences(3, 1, {0: 10, 2: 0}))
