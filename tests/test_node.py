"""A real Node in-process: storage on tmp_path, a one-member Raft group on a free port."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from kaflow.broker import OffsetCommit, ProduceRecord, RaftRole, StoredRecord
from kaflow.config import NodeConfig
from kaflow.errors import (
    EmptyRecordsError,
    InvalidConfigError,
    InvalidOffsetError,
    InvalidPartitionsError,
    InvalidRecordError,
    InvalidRequestError,
    NotReadyError,
    OffsetOutOfRangeError,
    RecordTooLargeError,
    RequestTooLargeError,
    StorageError,
    TopicAlreadyExistsError,
    TopicCollisionError,
    UnknownGroupError,
    UnknownPartitionError,
    UnknownTopicError,
)
from kaflow.node import Node
from kaflow.partitioner import key_partition
from tests.harness import free_port

DEADLINE_S = 20.0


async def eventually(predicate: Callable[[], bool], message: str) -> None:
    """Poll ``predicate`` on the event loop until it holds; fail after DEADLINE_S."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE_S
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {DEADLINE_S:.0f} s: {message}")
        await asyncio.sleep(0.01)


def make_config(data_dir: Path, **overrides: object) -> NodeConfig:
    config = NodeConfig(data_dir=data_dir, raft_port=free_port(), port=free_port())
    return dataclasses.replace(config, **overrides)  # type: ignore[arg-type]


NodeStarter = Callable[..., Awaitable[Node]]


@pytest.fixture
async def start_node(tmp_path: Path) -> AsyncIterator[NodeStarter]:
    """Start Nodes on tmp_path/data (the same directory each time); stop them at the end."""
    started: list[Node] = []

    async def start(**overrides: object) -> Node:
        node = Node(make_config(tmp_path / "data", **overrides))
        started.append(node)
        await node.start()
        return node

    yield start
    for node in started:
        await node.stop()


@pytest.fixture
async def node(start_node: NodeStarter) -> Node:
    return await start_node()


def values(records: list[StoredRecord]) -> list[bytes | None]:
    return [record.value for record in records]


async def test_node_create_produce_fetch(node: Node) -> None:
    info = await node.create_topic("orders", 2, {"retention.ms": "3600000"})
    assert [p.partition for p in info.partitions] == [0, 1]
    assert info.config["retention.ms"] == 3_600_000

    produced = await node.produce(
        "orders",
        [ProduceRecord(None, b"a", partition=1), ProduceRecord(b"k", b"b", (("h", b"1"),), 1, 7)],
    )

    assert [(r.partition, r.offset) for r in produced] == [(1, 0), (1, 1)]
    assert produced[1].timestamp == 7
    fetched = await node.fetch("orders", 1, 0, 100, 1 << 20, 0)
    assert values(fetched.records) == [b"a", b"b"]
    assert fetched.records[1].key == b"k"
    assert fetched.records[1].headers == (("h", b"1"),)
    assert fetched.records[1].timestamp == 7
    assert fetched.records[0].timestamp == produced[0].timestamp
    assert (fetched.next_offset, fetched.high_watermark, fetched.log_start_offset) == (2, 2, 0)


async def test_node_produce_results_in_request_order(node: Node) -> None:
    await node.create_topic("t", 3, {})
    records = [ProduceRecord(None, b"%d" % n, partition=n % 3) for n in range(9)]

    produced = await node.produce("t", records)

    assert [(r.partition, r.offset) for r in produced] == [(n % 3, n // 3) for n in range(9)]
    for partition in range(3):
        fetched = await node.fetch("t", partition, 0, 10, 1 << 20, 0)
        assert values(fetched.records) == [b"%d" % n for n in range(partition, 9, 3)]


async def test_node_keyed_records_follow_murmur2(node: Node) -> None:
    await node.create_topic("t", 7, {})

    produced = await node.produce("t", [ProduceRecord(key, b"v") for key in (b"a", b"bb", b"a")])

    assert [r.partition for r in produced] == [key_partition(k, 7) for k in (b"a", b"bb", b"a")]


async def test_node_keyless_records_spread_round_robin(node: Node) -> None:
    await node.create_topic("t", 4, {})

    produced = await node.produce("t", [ProduceRecord(None, b"v") for _ in range(8)])

    assert sorted(r.partition for r in produced) == [0, 0, 1, 1, 2, 2, 3, 3]


async def test_node_concurrent_produce_coalesces(node: Node) -> None:
    await node.create_topic("t", 1, {})
    before = node.replica.proposer.stats.commands

    results = await asyncio.gather(
        *[node.produce("t", [ProduceRecord(None, b"%d" % n)]) for n in range(50)]
    )

    offsets = sorted(result[0].offset for result in results)
    assert offsets == list(range(50))
    assert node.replica.proposer.stats.commands - before < 50


async def test_node_fetch_long_poll_wakes_on_produce(node: Node) -> None:
    await node.create_topic("t", 1, {})
    fetch = asyncio.create_task(node.fetch("t", 0, 0, 10, 1 << 20, 30_000))
    await eventually(
        lambda: node.replica.waiters.waiting() == 1, "fetch waits at the high watermark"
    )

    await node.produce("t", [ProduceRecord(None, b"late")])

    result = await asyncio.wait_for(fetch, DEADLINE_S)
    assert values(result.records) == [b"late"]
    assert result.next_offset == 1


async def test_node_fetch_long_poll_ends_on_topic_delete(node: Node) -> None:
    await node.create_topic("t", 1, {})
    fetch = asyncio.create_task(node.fetch("t", 0, 0, 10, 1 << 20, 30_000))
    await eventually(lambda: node.replica.waiters.waiting() == 1, "fetch waits")

    await node.delete_topic("t")

    with pytest.raises(UnknownTopicError):
        await asyncio.wait_for(fetch, DEADLINE_S)


async def test_node_fetch_long_poll_ends_on_stop(node: Node) -> None:
    await node.create_topic("t", 1, {})
    fetch = asyncio.create_task(node.fetch("t", 0, 0, 10, 1 << 20, 30_000))
    await eventually(lambda: node.replica.waiters.waiting() == 1, "fetch waits")

    await node.stop()

    with pytest.raises(NotReadyError):
        await asyncio.wait_for(fetch, DEADLINE_S)


async def test_node_fetch_long_poll_expires_empty(node: Node) -> None:
    await node.create_topic("t", 1, {})
    await node.produce("t", [ProduceRecord(None, b"a")])

    result = await node.fetch("t", 0, 1, 10, 1 << 20, 50)

    assert result.records == []
    assert (result.next_offset, result.high_watermark) == (1, 1)


async def test_node_fetch_out_of_range_details(node: Node) -> None:
    await node.create_topic("t", 1, {})
    await node.produce("t", [ProduceRecord(None, b"a")])

    with pytest.raises(OffsetOutOfRangeError, match=r"valid offsets are 0 .* to 1") as raised:
        await node.fetch("t", 0, 2, 10, 1 << 20, 0)

    assert raised.value.details["offset"] == 2
    assert raised.value.details["log_start_offset"] == 0
    assert raised.value.details["high_watermark"] == 1


async def test_node_fetch_limits_records(node: Node) -> None:
    await node.create_topic("t", 1, {})
    await node.produce("t", [ProduceRecord(None, b"%d" % n) for n in range(10)])

    by_count = await node.fetch("t", 0, 3, 4, 1 << 20, 0)
    by_bytes = await node.fetch("t", 0, 3, 100, 1, 0)

    assert values(by_count.records) == [b"3", b"4", b"5", b"6"]
    assert by_count.next_offset == 7
    assert values(by_bytes.records)[0] == b"3"


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ((-1, 1, 1, 0), InvalidOffsetError),
        ((0, 0, 1, 0), InvalidRequestError),
        ((0, 1, 0, 0), InvalidRequestError),
        ((0, 1, 1, -5), InvalidRequestError),
    ],
    ids=["negative-offset", "zero-records", "zero-bytes", "negative-wait"],
)
async def test_node_fetch_rejects_bad_arguments(
    node: Node, arguments: tuple[int, int, int, int], error: type[Exception]
) -> None:
    await node.create_topic("t", 1, {})

    with pytest.raises(error, match="must be an integer >="):
        await node.fetch("t", 0, *arguments)


async def test_node_lookup_offset(node: Node) -> None:
    await node.create_topic("t", 1, {})
    await node.produce("t", [ProduceRecord(None, b"%d" % n, timestamp=100 * n) for n in range(5)])

    assert node.lookup_offset("t", 0, "earliest").offset == 0
    assert node.lookup_offset("t", 0, "latest").offset == 5
    at = node.lookup_offset("t", 0, 250)
    assert (at.offset, at.timestamp) == (3, 300)
    assert node.lookup_offset("t", 0, 10_000).offset is None
    with pytest.raises(InvalidOffsetError, match="use 'earliest', 'latest' or a timestamp"):
        node.lookup_offset("t", 0, "newest")


async def test_node_commit_and_read_offsets(node: Node) -> None:
    await node.create_topic("t", 2, {})
    await node.produce("t", [ProduceRecord(None, b"v", partition=0) for _ in range(5)])

    await node.commit_offsets("g", [OffsetCommit("t", 0, 2, "meta"), OffsetCommit("t", 1, 9)])

    committed = node.committed_offsets("g")
    assert [(c.topic, c.partition, c.offset, c.metadata) for c in committed] == [
        ("t", 0, 2, "meta"),
        ("t", 1, 9, ""),
    ]
    assert [c.lag for c in committed] == [3, 0]
    assert committed[0].high_watermark == 5
    assert committed[0].commit_timestamp > 0
    assert node.list_groups() == ["g"]


async def test_node_commit_offsets_rejects_invalid(node: Node) -> None:
    await node.create_topic("t", 1, {})

    with pytest.raises(UnknownPartitionError):
        await node.commit_offsets("g", [OffsetCommit("t", 3, 0)])
    with pytest.raises(UnknownTopicError):
        await node.commit_offsets("g", [OffsetCommit("missing", 0, 0)])
    with pytest.raises(InvalidOffsetError, match="offset -1 is negative"):
        await node.commit_offsets("g", [OffsetCommit("t", 0, -1)])
    with pytest.raises(UnknownGroupError, match="'g' has no committed offsets"):
        node.committed_offsets("g")


async def test_node_topic_lifecycle(node: Node) -> None:
    await node.create_topic("a.b", 1, {})
    with pytest.raises(TopicAlreadyExistsError):
        await node.create_topic("a.b", 1, {})
    with pytest.raises(TopicCollisionError):
        await node.create_topic("a_b", 1, {})
    with pytest.raises(InvalidPartitionsError):
        await node.create_topic("big", 1001, {})

    altered = await node.alter_topic("a.b", 3, {"segment.bytes": 2048, "retention.ms": None})
    assert len(altered.partitions) == 3
    assert altered.config["segment.bytes"] == 2048
    with pytest.raises(InvalidPartitionsError, match="cannot shrink"):
        await node.alter_topic("a.b", 2, {})
    assert [t.name for t in node.list_topics()] == ["a.b"]

    await node.delete_topic("a.b")
    with pytest.raises(UnknownTopicError):
        node.describe_topic("a.b")
    assert node.list_topics() == []


async def test_node_rejects_invalid_produce(node: Node) -> None:
    await node.create_topic("t", 2, {"max.message.bytes": 100})

    with pytest.raises(RecordTooLargeError, match=r"max\.message\.bytes=100") as raised:
        await node.produce("t", [ProduceRecord(None, b"ok"), ProduceRecord(None, b"x" * 200)])
    assert raised.value.details["index"] == 1
    assert raised.value.details["limit"] == 100
    with pytest.raises(UnknownTopicError):
        await node.produce("missing", [ProduceRecord(None, b"v")])
    with pytest.raises(UnknownPartitionError):
        await node.produce("t", [ProduceRecord(None, b"v", partition=2)])
    with pytest.raises(InvalidRecordError, match="timestamp -1"):
        await node.produce("t", [ProduceRecord(None, b"v", timestamp=-1)])
    with pytest.raises(EmptyRecordsError):
        await node.produce("t", [])
    assert all(p.high_watermark == 0 for p in node.describe_topic("t").partitions)


async def test_node_produce_over_request_limit(start_node: NodeStarter) -> None:
    node = await start_node(max_request_bytes=1000)
    await node.create_topic("t", 1, {})

    with pytest.raises(RequestTooLargeError, match="more than the node's limit of 1000") as raised:
        await node.produce("t", [ProduceRecord(None, b"x" * 600) for _ in range(2)])

    assert raised.value.details["max_request_bytes"] == 1000
    assert node.describe_topic("t").partitions[0].high_watermark == 0


async def test_node_cluster_status(node: Node) -> None:
    status = node.cluster_status()

    assert status.role is RaftRole.LEADER
    assert status.leader_id == node.node_id
    assert status.term >= 1
    assert status.ready
    assert [member.node_id for member in status.members] == [node.node_id]


async def test_node_restart_keeps_data(start_node: NodeStarter) -> None:
    node = await start_node()
    await node.create_topic("t", 2, {"retention.ms": -1})
    await node.produce("t", [ProduceRecord(None, b"%d" % n, partition=0) for n in range(3)])
    await node.commit_offsets("g", [OffsetCommit("t", 0, 2)])
    await node.stop()

    again = await start_node()

    assert again.describe_topic("t").config["retention.ms"] == -1
    fetched = await again.fetch("t", 0, 0, 10, 1 << 20, 0)
    assert values(fetched.records) == [b"0", b"1", b"2"]
    assert again.committed_offsets("g")[0].offset == 2
    produced = await again.produce("t", [ProduceRecord(None, b"3", partition=0)])
    assert produced[0].offset == 3


async def test_node_restart_after_compaction(start_node: NodeStarter, tmp_path: Path) -> None:
    node = await start_node()
    await node.create_topic("t", 1, {})
    await node.produce("t", [ProduceRecord(None, b"before")])
    index = await node.compact()
    await node.produce("t", [ProduceRecord(None, b"after")])
    await node.stop()
    assert index > 1
    assert (tmp_path / "data" / "raft" / "snapshot").is_file()

    again = await start_node()

    fetched = await again.fetch("t", 0, 0, 10, 1 << 20, 0)
    assert values(fetched.records) == [b"before", b"after"]
    assert again.cluster_status().extra["snapshot_index"] == index
    await again.produce("t", [ProduceRecord(None, b"third")])
    fetched = await again.fetch("t", 0, 0, 10, 1 << 20, 0)
    assert values(fetched.records) == [b"before", b"after", b"third"]


async def test_node_retention_advances_log_start(start_node: NodeStarter) -> None:
    node = await start_node(retention_check_interval_ms=50)
    await node.create_topic("t", 1, {"segment.bytes": 1024, "retention.bytes": 1024})
    for _ in range(10):
        await node.produce("t", [ProduceRecord(None, b"x" * 300)])

    await eventually(
        lambda: node.describe_topic("t").partitions[0].log_start_offset > 0,
        "retention advances the log start offset",
    )

    start = node.describe_topic("t").partitions[0].log_start_offset
    with pytest.raises(OffsetOutOfRangeError):
        await node.fetch("t", 0, 0, 10, 1 << 20, 0)
    fetched = await node.fetch("t", 0, start, 100, 1 << 20, 0)
    assert fetched.records[-1].offset == 9


async def test_node_not_ready_before_start(tmp_path: Path) -> None:
    node = Node(make_config(tmp_path / "data"))

    assert not node.is_ready()
    with pytest.raises(NotReadyError):
        node.list_topics()
    with pytest.raises(NotReadyError):
        await node.produce("t", [ProduceRecord(None, b"v")])


async def test_node_peers_require_cluster_secret(tmp_path: Path) -> None:
    node = Node(make_config(tmp_path / "data", peers=("127.0.0.1:1",)))

    with pytest.raises(InvalidConfigError, match="needs a cluster secret"):
        await node.start()


async def test_node_storage_failure_stops_node(start_node: NodeStarter) -> None:
    node = await start_node()
    await node.create_topic("t", 1, {})
    await node.produce("t", [ProduceRecord(None, b"kept")])
    assert node.replica.logs is not None
    node.replica.logs.get("t", 0).close()

    with pytest.raises(StorageError):
        await node.produce("t", [ProduceRecord(None, b"failed")])
    await asyncio.wait_for(node.wait_stopped(), DEADLINE_S)

    assert isinstance(node.failure, StorageError)
    assert not node.is_ready()
    again = await start_node()
    fetched = await again.fetch("t", 0, 0, 10, 1 << 20, 0)
    # The failed command was committed before apply failed, so the replay applies it.
    assert values(fetched.records) == [b"kept", b"failed"]
