"""Kill a node process in the middle of a produce stream and check what survives.

These tests run real `kaflow serve` processes. The producer records every
acknowledged record; after a SIGKILL and a restart every acknowledged record
must be readable exactly once, in the order it was acknowledged.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from pathlib import Path
from typing import Any

from tests.harness import HttpError, NodeProcess, wait_until

PARTITIONS = 3


class AckLog:
    """Values a producer thread sent and the ones the node acknowledged."""

    def __init__(self) -> None:
        # partition -> [(offset, value)] in the order this producer saw the acks
        self.acked: dict[int, list[tuple[int, str]]] = defaultdict(list)
        self.sent: set[str] = set()
        self.acked_count = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.errors: list[str] = []


def produce_until_stopped(node: NodeProcess, topic: str, log: AckLog, batch: int, tag: str) -> None:
    """Produce batches of unique values until ``log.stop`` is set or the node dies."""
    sequence = 0
    while not log.stop.is_set():
        values = [f"{tag}-b{batch}-{sequence + i:08d}" for i in range(batch)]
        records = [{"key": f"k{sequence + i}", "value": value} for i, value in enumerate(values)]
        sequence += batch
        with log.lock:
            log.sent.update(values)
        try:
            answer = node.post(f"/v1/topics/{topic}/records", {"records": records}, timeout=10)
        except (HttpError, OSError) as exc:
            log.errors.append(repr(exc))
            return
        with log.lock:
            for value, meta in zip(values, answer["records"], strict=True):
                log.acked[meta["partition"]].append((meta["offset"], value))
            log.acked_count += len(values)


def read_values(node: NodeProcess, topic: str) -> dict[int, dict[int, str]]:
    """Return partition -> {offset: value} for everything readable."""
    return {
        p: {r["offset"]: r["value"] for r in node.fetch_all(topic, p)} for p in range(PARTITIONS)
    }


def assert_acked_survived(log: AckLog, stored: dict[int, dict[int, str]]) -> None:
    """Every acked value is at its acked offset, once; offsets have no holes."""
    all_stored = [value for values in stored.values() for value in values.values()]
    assert len(all_stored) == len(set(all_stored)), "a record is stored twice"
    assert set(all_stored) <= log.sent, "a stored record was never sent"

    for partition, offsets in stored.items():
        assert sorted(offsets) == list(range(len(offsets))), f"partition {partition} has holes"

    for partition, acked in log.acked.items():
        wrong = [
            (o, v, stored[partition].get(o)) for o, v in acked if stored[partition].get(o) != v
        ]
        assert not wrong, f"partition {partition}: acked records not at their offset: {wrong[:5]}"


def run_produce_and_kill(
    node: NodeProcess, topic: str, acked_before_kill: int, tag: str = "run1"
) -> AckLog:
    log = AckLog()
    producers = [
        threading.Thread(
            target=produce_until_stopped, args=(node, topic, log, batch, tag), daemon=True
        )
        for batch in (1, 7, 25)
    ]
    for producer in producers:
        producer.start()

    wait_until(lambda: log.acked_count >= acked_before_kill, 120, "producers made progress")
    node.kill()
    log.stop.set()
    for producer in producers:
        producer.join(timeout=30)
    return log


def test_kill9_mid_stream_keeps_acked_records(node_factory: Any, tmp_path: Path) -> None:
    node = node_factory(tmp_path / "node").start()
    node.create_topic("orders", partitions=PARTITIONS)

    log = run_produce_and_kill(node, "orders", acked_before_kill=3000)
    node.start()

    assert_acked_survived(log, read_values(node, "orders"))


def test_kill9_twice_then_produce_continues(node_factory: Any, tmp_path: Path) -> None:
    node = node_factory(tmp_path / "node").start()
    node.create_topic("payments", partitions=PARTITIONS)

    first = run_produce_and_kill(node, "payments", acked_before_kill=1000)
    node.start()
    second = run_produce_and_kill(node, "payments", acked_before_kill=1000, tag="run2")
    node.start()

    merged = AckLog()
    for log in (first, second):
        merged.sent |= log.sent
        for partition, acked in log.acked.items():
            merged.acked[partition].extend(acked)
    stored = read_values(node, "payments")
    assert_acked_survived(merged, stored)

    answer = node.post("/v1/topics/payments/records", {"records": [{"value": "after"}]})
    partition = answer["records"][0]["partition"]
    assert answer["records"][0]["offset"] == len(stored[partition])


def test_restart_keeps_topics_and_group_offsets(node_factory: Any, tmp_path: Path) -> None:
    node = node_factory(tmp_path / "node").start()
    node.create_topic("inventory", partitions=2, **{"retention.ms": -1})
    node.post("/v1/topics/inventory/records", {"records": [{"value": "a", "partition": 1}]})
    node.post(
        "/v1/groups/stock-service/offsets",
        {"offsets": [{"topic": "inventory", "partition": 1, "offset": 1, "metadata": "m"}]},
    )

    assert node.stop() == 0
    node.start()

    topic = node.get("/v1/topics/inventory")
    assert topic["config"]["retention.ms"] == -1
    assert [p["high_watermark"] for p in topic["partitions"]] == [0, 1]
    committed = node.get("/v1/groups/stock-service/offsets")["offsets"]
    assert [(c["partition"], c["offset"], c["metadata"]) for c in committed] == [(1, 1, "m")]
