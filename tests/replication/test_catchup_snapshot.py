"""Snapshots hold metadata only, compaction by size, and restarts that keep offsets exact."""

from __future__ import annotations

from pathlib import Path

from kaflow.broker import ProduceRecord
from kaflow.config import FsyncPolicy, NodeConfig
from kaflow.node import Node
from tests.harness import free_port, wait_until


def node_config(data_dir: Path, **overrides: int) -> NodeConfig:
    return NodeConfig(
        data_dir=data_dir,
        port=free_port(),
        raft_port=free_port(),
        fsync=FsyncPolicy.NEVER,
        **overrides,  # type: ignore[arg-type]
    )


async def produce_values(node: Node, values: list[bytes]) -> None:
    for start in range(0, len(values), 50):
        chunk = values[start : start + 50]
        await node.produce("t", [ProduceRecord(None, value, partition=0) for value in chunk])


async def read_all(node: Node) -> list[tuple[int, bytes | None]]:
    records: list[tuple[int, bytes | None]] = []
    offset = 0
    end = node.describe_topic("t").partitions[0].high_watermark
    while offset < end:
        fetched = await node.fetch("t", 0, offset, 1000, 1 << 20, 0)
        records.extend((record.offset, record.value) for record in fetched.records)
        offset = fetched.next_offset
    return records


async def test_snapshot_size_independent_of_records(tmp_path: Path) -> None:
    node = Node(node_config(tmp_path / "data"))
    await node.start()
    try:
        await node.create_topic("t", 1, {})
        await produce_values(node, [b"x" * 100 for _ in range(10)])
        await node.compact()
        small = node.replica.raft.snapshot_path.stat().st_size

        await produce_values(node, [b"y" * 1000 for _ in range(2000)])
        await node.compact()
        large = node.replica.raft.snapshot_path.stat().st_size
    finally:
        await node.stop()

    # 2 MB of records later only the offsets inside the snapshot grew by a few bytes.
    assert large - small < 64
    assert large < 4096


async def test_compaction_by_bytes_keeps_raft_log_short(tmp_path: Path) -> None:
    node = Node(node_config(tmp_path / "data", raft_compaction_bytes=200_000))
    await node.start()
    try:
        await node.create_topic("t", 1, {})
        await produce_values(node, [b"z" * 1000 for _ in range(1000)])

        raft = node.replica.raft
        wait_until(lambda: raft.snapshot_index > 0, 30, "a snapshot after 1 MB of commands")
        # Each command here carries 50 KB, so 200 KB of commands is about 4 entries.
        wait_until(lambda: raft.status().log_entries < 20, 30, "a compacted Raft log")
    finally:
        await node.stop()


async def test_restart_keeps_each_offset_once(tmp_path: Path) -> None:
    # The snapshot stores the member's Raft address, so every restart keeps the same one.
    config = node_config(tmp_path / "data")
    expected = [f"value-{i}".encode() for i in range(600)]

    node = Node(config)
    await node.start()
    try:
        await node.create_topic("t", 1, {})
        await produce_values(node, expected[:200])
        await node.compact()
        await produce_values(node, expected[200:400])
    finally:
        await node.stop()

    for round_values in (expected[400:500], expected[500:]):
        again = Node(config)
        await again.start()
        try:
            await produce_values(again, round_values)
            await again.compact()
        finally:
            await again.stop()

    last = Node(config)
    await last.start()
    try:
        records = await read_all(last)
    finally:
        await last.stop()

    assert [offset for offset, _ in records] == list(range(600))
    assert [value for _, value in records] == expected
