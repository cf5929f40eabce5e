"""Short real runs of `kaflow bench` against a `kaflow serve` process, with no speed assertions."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tests.cli.cli_runner import describe, run_kaflow
from tests.harness import NodeProcess, free_port

TOP_LEVEL_KEYS = {
    "mode",
    "topic",
    "stopped_by",
    "records",
    "bytes",
    "errors",
    "first_error",
    "counts",
    "elapsed_s",
    "throughput",
    "latency_ms",
    "cpu",
}
LATENCY_KEYS = {"count", "p50", "p90", "p99", "p99_9", "max", "mean"}


@pytest.fixture(scope="module")
def bench_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """One node shared by the runs of this module. Each test uses its own topic."""
    node = NodeProcess(tmp_path_factory.mktemp("bench") / "node-1")
    try:
        yield node.start()
    finally:
        node.kill()


def bench(node: NodeProcess, *args: str) -> subprocess.CompletedProcess[bytes]:
    return run_kaflow("bench", *args, bootstrap=node.url, timeout=120)


def bench_json(node: NodeProcess, *args: str) -> dict[str, Any]:
    result = bench(node, *args, "--output", "json")
    assert result.returncode == 0, describe(result)
    figures: dict[str, Any] = json.loads(result.stdout)
    assert set(figures) == TOP_LEVEL_KEYS
    assert set(figures["throughput"]) == {"records_per_s", "mb_per_s"}
    assert set(figures["cpu"]) == {"seconds", "us_per_record"}
    return figures


def assert_latency_ordered(latency: dict[str, Any], count: int) -> None:
    assert set(latency) == LATENCY_KEYS
    assert latency["count"] == count
    steps = [latency[name] for name in ("p50", "p90", "p99", "p99_9", "max")]
    assert steps == sorted(steps)


def stored_records(node: NodeProcess, topic: str) -> int:
    described = node.get(f"/v1/topics/{topic}")
    return sum(p["high_watermark"] - p["log_start_offset"] for p in described["partitions"])


def test_bench_produce_counts_and_shape(bench_node: NodeProcess) -> None:
    figures = bench_json(
        bench_node,
        "produce",
        "--topic",
        "bench-produce",
        "--create",
        "--partitions",
        "3",
        "--records",
        "300",
        "--record-size",
        "50",
        "--key-distribution",
        "sequential",
    )
    assert figures["mode"] == "produce"
    assert figures["stopped_by"] == "records"
    assert figures["records"] == 300
    assert figures["errors"] == 0
    assert figures["counts"] == {"sent": 300, "acknowledged": 300}
    key_bytes = sum(len(b"key-%d" % index) for index in range(300))
    assert figures["bytes"] == 300 * 50 + key_bytes
    assert_latency_ordered(figures["latency_ms"], 300)
    assert stored_records(bench_node, "bench-produce") == 300


def test_bench_produce_text_output(bench_node: NodeProcess) -> None:
    result = bench(bench_node, "produce", "--topic", "bench-text", "--create", "--records", "20")
    assert result.returncode == 0, describe(result)
    text = result.stdout.decode()
    assert "records: 20 " in text
    assert "latency: p50=" in text
    assert "client cpu:" in text


def test_bench_consume_records_and_duration(bench_node: NodeProcess) -> None:
    produced = bench_json(
        bench_node,
        "produce",
        "--topic",
        "bench-consume",
        "--create",
        "--partitions",
        "2",
        "--records",
        "250",
    )
    assert produced["records"] == 250

    by_count = bench_json(bench_node, "consume", "--topic", "bench-consume", "--records", "250")
    assert by_count["mode"] == "consume"
    assert by_count["stopped_by"] == "records"
    assert by_count["records"] == 250
    assert by_count["bytes"] == 250 * 100
    assert by_count["latency_ms"] is None
    assert by_count["counts"]["partitions"] == 2

    by_time = bench_json(bench_node, "consume", "--topic", "bench-consume", "--duration", "1")
    assert by_time["stopped_by"] == "duration"
    assert by_time["records"] == 250


def test_bench_e2e_counts_and_shape(bench_node: NodeProcess) -> None:
    figures = bench_json(
        bench_node, "e2e", "--topic", "bench-e2e", "--create", "--rate", "100", "--duration", "1"
    )
    assert figures["mode"] == "e2e"
    assert figures["stopped_by"] == "duration"
    assert figures["errors"] == 0
    assert figures["counts"] == {
        "sent": 100,
        "acknowledged": 100,
        "received": 100,
        "missing": 0,
        "duplicates": 0,
        "foreign": 0,
    }
    assert figures["records"] == 100
    assert figures["bytes"] == 100 * 100
    assert_latency_ordered(figures["latency_ms"], 100)


def test_bench_unknown_topic_exits_1(bench_node: NodeProcess) -> None:
    result = bench(bench_node, "produce", "--topic", "bench-missing", "--records", "5")
    assert result.returncode == 1, describe(result)
    assert b"error: unknown_topic" in result.stderr


def test_bench_unreachable_node_exits_3() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = run_kaflow(
        "bench", "consume", "--topic", "t", "--records", "1", "--timeout", "1", bootstrap=url
    )
    assert result.returncode == 3, describe(result)
    assert url.encode() in result.stderr


def test_bench_produce_stops_at_max_duration(bench_node: NodeProcess) -> None:
    figures = bench_json(
        bench_node,
        "produce",
        "--topic",
        "bench-max-duration",
        "--create",
        "--records",
        "1000000000",
        "--target-rate",
        "50",
        "--max-duration",
        "1",
    )
    assert figures["stopped_by"] == "max_duration"
    assert figures["errors"] == 0
    assert 0 < figures["records"] < 1_000_000_000
    assert figures["counts"]["sent"] == figures["records"]
    assert stored_records(bench_node, "bench-max-duration") == figures["records"]


def test_bench_consume_short_topic_stops_at_max_duration(bench_node: NodeProcess) -> None:
    bench_json(bench_node, "produce", "--topic", "bench-short", "--create", "--records", "30")

    figures = bench_json(
        bench_node, "consume", "--topic", "bench-short", "--records", "31", "--max-duration", "1"
    )
    assert figures["stopped_by"] == "max_duration"
    assert figures["records"] == 30
