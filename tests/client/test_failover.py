from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from kaflow.client import AsyncProducer, RecordMetadata
from tests.cluster_harness import ClusterProcess

pytestmark = pytest.mark.slow


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[ClusterProcess]:
    cluster = ClusterProcess(tmp_path / "cluster", size=3).start()
    try:
        cluster.wait_registered()
        yield cluster
    finally:
        cluster.close()


async def test_producer_leader_kill_stores_each_record_once(
    cluster: ClusterProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="kaflow.client")
    leader = cluster.wait_for_leader()
    leader.create_topic("orders", partitions=2)
    total, kill_after = 300, 60

    futures: list[asyncio.Future[RecordMetadata]] = []
    async with AsyncProducer(
        [member.url for member in cluster.members], linger_ms=2, delivery_timeout_ms=90_000
    ) as producer:
        for i in range(total):
            futures.append(await producer.send("orders", f"order-{i}".encode(), partition=i % 2))
            if i == kill_after:
                await asyncio.gather(*futures)
                # Let the next batches reach the nodes before the leader dies.
                in_flight = [
                    await producer.send("orders", b"in-flight", partition=p) for p in (0, 1)
                ]
                futures.extend(in_flight)
                await asyncio.to_thread(cluster.kill, leader)
        await producer.flush()
        metadata = [future.result() for future in futures]

    assert any("retrying request" in r.getMessage() for r in caplog.records)
    survivor = cluster.wait_for_leader()
    stored = [r["value"] for p in (0, 1) for r in survivor.fetch_all("orders", p)]
    assert sorted(stored) == sorted(
        [f"order-{i}" for i in range(total)] + ["in-flight", "in-flight"]
    )
    offsets = {(m.partition, m.offset) for m in metadata}
    assert len(offsets) == len(metadata)
