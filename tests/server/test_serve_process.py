"""The HTTP API served by a real `kaflow serve` process (tests/harness.py)."""

from __future__ import annotations

import pytest

from tests.harness import HttpError, NodeProcess, http_json, wait_until


def test_serve_process_answers_and_logs_access(node: NodeProcess) -> None:
    node.create_topic("process-topic", partitions=2)
    node.post("/v1/topics/process-topic/records", {"records": [{"key": "k", "value": "v"}]})

    records = node.fetch_all("process-topic", 0) + node.fetch_all("process-topic", 1)
    with pytest.raises(HttpError) as missing:
        http_json("GET", f"{node.url}/v1/no-such-endpoint")

    assert [(r["key"], r["value"]) for r in records] == [("k", "v")]
    assert missing.value.status == 404
    assert missing.value.code == "not_found"
    wait_until(
        lambda: "/v1/no-such-endpoint" in node.tail_log(200),
        10,
        "access log line for the 404 in the node's log",
    )
    assert "status=404" in node.tail_log(200)
