"""Idempotent produce in a 3-member cluster whose leader is SIGKILLed mid-stream."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster_harness import ClusterMember, ClusterProcess, wait_for
from tests.harness import HttpError, http_json

RETRIABLE_CODES = frozenset(
    {
        "not_ready",
        "leader_not_available",
        "not_leader",
        "request_timed_out",
        "unknown_outcome",
        "retriable_error",
    }
)
DEADLINE_S = 90.0


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[ClusterProcess]:
    # A short request timeout lets a write whose callback hangs after the
    # leader's death fail fast and be retried.
    started = ClusterProcess(tmp_path / "cluster", 3, ("--request-timeout-ms", "3000"))
    try:
        started.start()
        started.wait_registered()
        yield started
    finally:
        started.close()


def body_for(producer: dict[str, int], number: int) -> dict[str, Any]:
    return {
        **producer,
        "base_sequences": {"0": number},
        "records": [{"value": f"v{number}", "partition": 0}],
    }


def produce_with_retries(member: ClusterMember, body: dict[str, Any]) -> dict[str, Any]:
    """Send ``body`` to ``member`` until it succeeds; retriable failures are sent again."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        try:
            reply: dict[str, Any] = member.post("/v1/topics/events/records", body, timeout=15)
            return reply
        except HttpError as exc:
            assert exc.code in RETRIABLE_CODES, exc
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"no success for {body} within {DEADLINE_S:.0f} s")
        time.sleep(0.05)


def test_leader_kill_stores_every_record_once(cluster: ClusterProcess) -> None:
    old_leader = cluster.wait_for_leader()
    writer = cluster.followers()[0]
    writer.create_topic("events", 1)
    producer: dict[str, int] = http_json("POST", f"{writer.url}/v1/producers")[1]
    acked: dict[int, int] = {}
    acked_at_kill: list[int] = []
    failures: list[BaseException] = []

    def done() -> bool:
        return bool(acked_at_kill) and len(acked) >= acked_at_kill[0] + 40

    def stream() -> None:
        try:
            number = 0
            while not done():
                reply = produce_with_retries(writer, body_for(producer, number))
                acked[number] = reply["records"][0]["offset"]
                number += 1
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=stream)
    thread.start()
    wait_for(lambda: len(acked) >= 20 or bool(failures), "20 acked requests")
    cluster.kill(old_leader)
    acked_at_kill.append(len(acked))
    thread.join(timeout=DEADLINE_S * 2)

    assert not thread.is_alive()
    assert failures == []
    assert cluster.wait_for_leader(timeout=60) is not old_leader
    requests = len(acked)
    # A lost reply: the last request sent again, to each member, is not stored again.
    for member in cluster.running():
        resent = produce_with_retries(member, body_for(producer, requests - 1))
        assert resent["records"][0]["offset"] == requests - 1
    # Each request contains one record, so request n's record is at offset n.
    assert acked == {number: number for number in range(requests)}
    expected = [f"v{number}" for number in range(requests)]
    for member in cluster.running():
        wait_for(
            lambda member=member: (
                member.get("/v1/topics/events")["partitions"][0]["high_watermark"] >= requests
            ),
            f"node {member.node_id} to apply every record",
        )
        records = member.fetch_all("events", 0)
        assert [record["value"] for record in records] == expected, member.node_id
