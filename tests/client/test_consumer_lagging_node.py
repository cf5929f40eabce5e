"""A node that is behind returns offset_out_of_range; the consumer must not reset on that alone.

Two single nodes stand in for two members of one cluster: ``behind`` contains
3 records of the partition and ``current`` contains 10. The consumer's node
list names both, as discovery would for a cluster.
"""

from __future__ import annotations

from pathlib import Path

from kaflow.client import AsyncConsumer
from tests.harness import NodeProcess


def produce(node: NodeProcess, count: int) -> None:
    records = [{"value": str(i), "partition": 0} for i in range(count)]
    node.post("/v1/topics/orders/records", {"records": records})


def two_nodes(node_factory: type[NodeProcess], tmp_path: Path) -> tuple[NodeProcess, NodeProcess]:
    behind = node_factory(tmp_path / "behind").start()
    current = node_factory(tmp_path / "current").start()
    for node, count in ((behind, 3), (current, 10)):
        node.create_topic("orders")
        produce(node, count)
    return behind, current


async def test_consumer_position_above_lagging_node_end_not_reset(
    node_factory: type[NodeProcess], tmp_path: Path
) -> None:
    behind, current = two_nodes(node_factory, tmp_path)
    async with AsyncConsumer(behind.url, auto_offset_reset="earliest") as consumer:
        await consumer._transport.discover()
        consumer._transport._urls = [behind.url, current.url]
        consumer.assign([("orders", 0)])
        consumer.seek(("orders", 0), 8)

        records = []
        for _ in range(10):
            records += await consumer.poll(timeout_ms=500)
            if records:
                break

    assert [r.offset for r in records] == [8, 9]


async def test_consumer_position_above_every_node_end_resets(
    node_factory: type[NodeProcess], tmp_path: Path
) -> None:
    behind, current = two_nodes(node_factory, tmp_path)
    async with AsyncConsumer(behind.url, auto_offset_reset="earliest") as consumer:
        await consumer._transport.discover()
        consumer._transport._urls = [behind.url, current.url]
        consumer.assign([("orders", 0)])
        consumer.seek(("orders", 0), 50)

        records = await consumer.poll(timeout_ms=500)
        position = await consumer.position(("orders", 0))

    # Reset to earliest: the position went back to 0, and poll may have read from there.
    assert [r.offset for r in records] == list(range(position))
