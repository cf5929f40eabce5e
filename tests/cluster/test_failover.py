from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.cluster_harness import ClusterMember, ClusterProcess, wait_for
from tests.harness import HttpError, NodeProcess

# Upper bound on produce attempts in one test, so a broken cluster cannot loop forever.
MAX_ATTEMPTS = 2000


def produce_one(member: ClusterMember, topic: str, value: str) -> dict[str, Any] | None:
    """Produce one record; return its metadata, or None on a retriable failure."""
    try:
        body = member.post(
            f"/v1/topics/{topic}/records", {"records": [{"value": value}]}, timeout=15
        )
    except HttpError as exc:
        assert exc.code in {
            "not_ready",
            "leader_not_available",
            "not_leader",
            "request_timed_out",
            "unknown_outcome",
            "retriable_error",
        }, exc
        return None
    except OSError:
        return None
    record: dict[str, Any] = body["records"][0]
    return record


def produce_until(
    member: ClusterMember, topic: str, acked: list[tuple[int, str]], done: Callable[[], bool]
) -> None:
    """Produce numbered values through ``member`` until ``done()``; failed values are retried."""
    for _ in range(MAX_ATTEMPTS):
        if done():
            return
        value = f"v{len(acked)}"
        meta = produce_one(member, topic, value)
        if meta is not None:
            acked.append((meta["offset"], value))
        else:
            time.sleep(0.05)
    raise AssertionError(f"gave up after {MAX_ATTEMPTS} produce attempts, {len(acked)} acked")


def check_acked_readable(member: NodeProcess, topic: str, acked: list[tuple[int, str]]) -> None:
    records = member.fetch_all(topic, 0)
    by_offset = {record["offset"]: record["value"] for record in records}
    for offset, value in acked:
        assert by_offset.get(offset) == value, (member.node_id, offset, value)
    offsets = [offset for offset, _ in acked]
    assert offsets == sorted(offsets)
    assert len(set(offsets)) == len(offsets)
    duplicates = [v for v, n in Counter(r["value"] for r in records).items() if n > 1]
    # A retry after an unknown outcome may store a value twice; only report it.
    print(
        f"node {member.node_id}: {len(records)} records, duplicates of retried values: {duplicates}"
    )


def test_leader_kill_during_produce(cluster: ClusterProcess) -> None:
    old_leader = cluster.wait_for_leader()
    writer = cluster.followers()[0]
    writer.create_topic("events", 1)
    acked: list[tuple[int, str]] = []

    produce_until(writer, "events", acked, lambda: len(acked) >= 30)
    cluster.kill(old_leader)
    killed_at = len(acked)
    produce_until(writer, "events", acked, lambda: len(acked) >= killed_at + 30)

    new_leader = cluster.wait_for_leader(timeout=30)
    assert new_leader is not old_leader
    for member in cluster.running():
        wait_for(
            lambda member=member: (
                member.get("/v1/topics/events")["partitions"][0]["high_watermark"] > acked[-1][0]
            ),
            f"node {member.node_id} to apply the last acked record",
        )
        check_acked_readable(member, "events", acked)


def test_kill_all_and_restart_keeps_acked(cluster: ClusterProcess) -> None:
    writer = cluster.wait_for_leader()
    writer.create_topic("ledger", 1)
    acked: list[tuple[int, str]] = []
    produce_until(writer, "ledger", acked, lambda: len(acked) >= 40)

    cluster.kill_all()
    cluster.start()

    leader = cluster.wait_for_leader()
    for member in cluster.members:
        check_acked_readable(member, "ledger", acked)
    meta = leader.post("/v1/topics/ledger/records", {"records": [{"value": "after"}]})
    assert meta["records"][0]["offset"] > acked[-1][0]


def test_missing_secret_refuses_start(tmp_path: Path) -> None:
    node = NodeProcess(tmp_path / "node-1", extra_args=("--peer", "127.0.0.1:1"))
    node.env = {"KAFLOW_CLUSTER_SECRET": ""}

    try:
        node.start(timeout=30)
    except AssertionError as exc:
        message = str(exc)
    else:
        node.kill()
        raise AssertionError("a node with peers and no secret started")

    assert "exited with 1" in message
    log = node.log_path.read_text()
    assert "--cluster-secret" in log
    assert "KAFLOW_CLUSTER_SECRET" in log
