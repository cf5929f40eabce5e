"""Kaflow-only scenarios: leader failover, follower catch-up with memory, restart with data.

- failover: a producer keeps one record in flight while the leader gets
  SIGKILL. The figure is the time from the kill until the first record sent
  after it is acknowledged.
- catch-up: a follower is stopped and ``catchup_mb`` MB of 1 KiB records
  are written. The figure is MB per second from the follower's restart until
  its applied index reaches the leader's commit index and it has no record
  range left to copy from a peer (``kaflow_catchup_open_gaps`` is 0). The records are then
  read back once and each node's RSS is sampled.
- restart: one node with ``restart_gib`` GiB of 8 KiB records is stopped
  with SIGTERM and started again. The figure is the time from the start
  until ``GET /v1/health/ready`` returns 200.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path
from typing import Any

from benchmarks.compare.measure import Settings
from benchmarks.compare.processes import HarnessError, http_ok, rss_bytes, wait_until
from benchmarks.compare.runner import run_client
from benchmarks.compare.servers import KaflowCluster
from kaflow.client import AsyncAdmin, AsyncProducer

__all__ = ["run_catchup", "run_failover", "run_restart"]

logger = logging.getLogger(__name__)

_CATCHUP_RECORD_BYTES = 1024
_FILL_RECORD_BYTES = 8192
# Records in flight while filling; with 8 KiB records one request carries about 2 MiB.
_FILL_WINDOW = 256
_SCENARIO_TIMEOUT_S = 1800.0


def run_failover(run_dir: Path) -> dict[str, Any]:
    cluster = KaflowCluster(run_dir / "failover")
    try:
        cluster.start()
        result = asyncio.run(_failover(cluster))
    finally:
        cluster.stop()
    cluster.remove_data()
    return result


async def _failover(cluster: KaflowCluster) -> dict[str, Any]:
    topic = "failover"
    async with AsyncAdmin(cluster.urls()) as admin:
        await admin.create_topic(topic, partitions=1)
    async with AsyncProducer(
        cluster.urls(), linger_ms=0, delivery_timeout_ms=30_000, retry_backoff_ms=20
    ) as producer:
        steady_until = time.monotonic() + 1.0
        while time.monotonic() < steady_until:
            await producer.send_and_wait(topic, b"before the kill")
        leader = cluster.leader_index()
        if leader is None:
            raise HarnessError("no Kaflow leader before the kill")
        killed_at = time.monotonic()
        cluster.processes[leader].kill()
        await producer.send_and_wait(topic, b"after the kill")
        recovered_s = time.monotonic() - killed_at
    new_leader = cluster.leader_index()
    logger.info("failover measured recovered_s=%.3f killed_node=%d", recovered_s, leader + 1)
    return {
        "recovered_s": round(recovered_s, 3),
        "killed_node": leader + 1,
        "new_leader": None if new_leader is None else new_leader + 1,
    }


def run_catchup(run_dir: Path, catchup_mb: float) -> dict[str, Any]:
    cluster = KaflowCluster(run_dir / "catchup")
    try:
        cluster.start()
        result = _catchup(cluster, catchup_mb)
    finally:
        cluster.stop()
    cluster.remove_data()
    return result


def _catchup(cluster: KaflowCluster, catchup_mb: float) -> dict[str, Any]:
    leader = cluster.leader_index()
    if leader is None:
        raise HarnessError("no Kaflow leader before the catch-up run")
    follower = (leader + 1) % cluster.nodes
    cluster.processes[follower].stop()
    records = max(1, int(catchup_mb * 1e6 / _CATCHUP_RECORD_BYTES))
    written = _write(cluster, "catchup", records, _CATCHUP_RECORD_BYTES, 1000)

    leader = cluster.leader_index()
    status = None if leader is None else cluster.status(leader)
    if status is None:
        raise HarnessError("the Kaflow leader did not report its commit index")
    target = int(status["commit_index"])

    started = time.monotonic()
    cluster.processes[follower].start()

    def caught_up() -> bool:
        # After a snapshot install the applied index jumps ahead of the data, which
        # the follower then copies from a peer: done only when no range is left open.
        cluster.processes[follower].check_running()
        body = cluster.status(follower)
        if body is None or int(body.get("applied_index") or 0) < target:
            return False
        return cluster.open_gaps(follower) == 0

    wait_until(caught_up, _SCENARIO_TIMEOUT_S, f"node {follower + 1} catch-up")
    seconds = time.monotonic() - started
    megabytes = records * _CATCHUP_RECORD_BYTES / 1e6
    read = run_client(
        "kaflow",
        "consume",
        Settings(
            endpoint=cluster.endpoint(),
            name="catchup",
            size=_CATCHUP_RECORD_BYTES,
            records=records,
            timeout_s=_SCENARIO_TIMEOUT_S,
        ),
    )
    rss = {p.label: rss_bytes(p.pid) / 2**20 for p in cluster.processes if p.running()}
    logger.info("catch-up measured seconds=%.3f megabytes=%.1f", seconds, megabytes)
    return {
        "megabytes": round(megabytes, 1),
        "seconds": round(seconds, 3),
        "mb_per_s": round(megabytes / seconds, 2),
        "write_mb_per_s": written.get("mb_per_s"),
        "read_records_per_s": read.get("records_per_s"),
        "rss_after_mib": rss,
    }


def _write(
    cluster: KaflowCluster, topic: str, records: int, size: int, window: int
) -> dict[str, Any]:
    return run_client(
        "kaflow",
        "produce",
        Settings(
            endpoint=cluster.endpoint(),
            name=topic,
            size=size,
            records=records,
            window=window,
            timeout_s=_SCENARIO_TIMEOUT_S,
        ),
    )


def run_restart(run_dir: Path, restart_gib: float, restarts: int) -> dict[str, Any]:
    """Fill one node with ``restart_gib`` GiB, then restart it ``restarts`` times."""
    node = KaflowCluster(run_dir / "restart", nodes=1)
    try:
        node.start()
        records = max(1, int(restart_gib * 2**30 / _FILL_RECORD_BYTES))
        written = _write(node, "restart", records, _FILL_RECORD_BYTES, _FILL_WINDOW)
        data_bytes = _directory_bytes(node.dir / "node-1")
        process = node.processes[0]

        def ready() -> bool:
            process.check_running()
            return http_ok(f"{node.urls()[0]}/v1/health/ready")

        seconds: list[float] = []
        for _ in range(restarts):
            process.stop(grace_s=60)
            started = time.monotonic()
            process.start()
            wait_until(ready, _SCENARIO_TIMEOUT_S, "restarted Kaflow node ready")
            seconds.append(round(time.monotonic() - started, 3))
        logger.info("restart measured seconds=%s data_bytes=%d", seconds, data_bytes)
    finally:
        node.stop()
    node.remove_data()
    return {
        "data_gib": round(data_bytes / 2**30, 2),
        "seconds": seconds,
        "write_mb_per_s": written.get("mb_per_s"),
    }


def _directory_bytes(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += (Path(root) / name).stat().st_size
            except OSError:
                continue
    return total
