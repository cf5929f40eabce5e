"""GET /metrics of a real `kaflow serve` process after produce, fetch and offset commits."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from tests.harness import HttpError, NodeProcess, http_json, wait_until


@dataclass(frozen=True)
class Scrape:
    """One parsed exposition, indexed by sample name."""

    content_type: str
    families: dict[str, str]
    samples: dict[str, list[tuple[dict[str, str], float]]]

    def value(self, name: str, **labels: str) -> float:
        """Return the one sample of ``name`` whose labels include ``labels``."""
        found = [
            value
            for sample_labels, value in self.samples.get(name, [])
            if all(sample_labels.get(key) == wanted for key, wanted in labels.items())
        ]
        assert len(found) == 1, f"{name}{labels}: {len(found)} samples in {self.samples.get(name)}"
        return found[0]

    def samples_match(self, name: str, labels: dict[str, str]) -> bool:
        return any(
            all(sample_labels.get(key) == wanted for key, wanted in labels.items())
            for sample_labels, _ in self.samples.get(name, [])
        )

    def label_sets(self, name: str) -> list[dict[str, str]]:
        return [labels for labels, _ in self.samples.get(name, [])]


def scrape(node: NodeProcess, accept: str | None = None) -> Scrape:
    request = urllib.request.Request(f"{node.url}/metrics")
    if accept is not None:
        request.add_header("Accept", accept)
    with urllib.request.urlopen(request, timeout=30) as response:
        content_type = response.headers["Content-Type"]
        text = response.read().decode("utf-8")
    parse = (
        openmetrics_families
        if content_type.startswith("application/openmetrics-text")
        else text_string_to_metric_families
    )
    families: dict[str, str] = {}
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in parse(text):
        families[family.name] = family.type
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return Scrape(content_type, families, samples)


def produce(node: NodeProcess, topic: str, records: list[dict[str, object]]) -> None:
    node.post(f"/v1/topics/{topic}/records", {"records": records})


@pytest.fixture(scope="module")
def busy_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """A node with topic 'orders' (2 partitions), 5 records, one fetch and group 'billing'.

    The tests share it, so each leaves 'orders' and 'billing' as they are.
    """
    node = NodeProcess(tmp_path_factory.mktemp("metrics") / "node-1")
    try:
        node.start()
        _fill(node)
        yield node
    finally:
        node.kill()


def _fill(node: NodeProcess) -> None:
    node.create_topic("orders", partitions=2)
    produce(
        node,
        "orders",
        [
            {"key": "k1", "value": "abc", "partition": 0},
            {"key": "k2", "value": "defg", "partition": 0},
            {"value": "h", "partition": 0, "headers": [{"name": "src", "value": "web"}]},
            {"key": "k4", "value": None, "partition": 1},
        ],
    )
    produce(node, "orders", [{"value": "xyz", "partition": 1}])
    node.get("/v1/topics/orders/partitions/0/records?offset=1")
    node.post(
        "/v1/groups/billing/offsets",
        {"offsets": [{"topic": "orders", "partition": 0, "offset": 1}]},
    )
    node.post(
        "/v1/groups/billing/offsets",
        {"offsets": [{"topic": "orders", "partition": 1, "offset": 2}]},
    )


def test_metrics_single_node_raft_state(busy_node: NodeProcess) -> None:
    # The Raft status behind the gauges is refreshed on the Raft tick thread,
    # so the applied index catches up with the commands shortly after them.
    # create_topic, two produces and two commits are five committed commands.
    wait_until(
        lambda: scrape(busy_node).value("kaflow_raft_applied_index") >= 5,
        30,
        "kaflow_raft_applied_index reaching 5",
    )
    result = scrape(busy_node)
    assert result.value("kaflow_node_info", node_id="1") == 1
    assert result.value("kaflow_node_ready") == 1
    assert result.value("kaflow_raft_role", role="leader") == 1
    assert result.value("kaflow_raft_role", role="follower") == 0
    assert result.value("kaflow_raft_role", role="candidate") == 0
    assert result.value("kaflow_raft_term") >= 1
    assert result.value("kaflow_raft_applied_index") >= 5
    assert result.value("kaflow_raft_commit_index") >= result.value("kaflow_raft_applied_index")
    assert result.value("kafka_brokers") == 1


def test_metrics_partition_offsets_use_exporter_names(busy_node: NodeProcess) -> None:
    result = scrape(busy_node)
    assert result.value("kafka_topic_partitions", topic="orders") == 2
    current = "kafka_topic_partition_current_offset"
    assert result.value(current, topic="orders", partition="0") == 3
    assert result.value(current, topic="orders", partition="1") == 2
    oldest = "kafka_topic_partition_oldest_offset"
    assert result.value(oldest, topic="orders", partition="0") == 0
    assert result.value(oldest, topic="orders", partition="1") == 0


def test_metrics_consumer_group_lag(busy_node: NodeProcess) -> None:
    result = scrape(busy_node)
    group = {"consumergroup": "billing", "topic": "orders"}
    assert result.value("kafka_consumergroup_current_offset", partition="0", **group) == 1
    assert result.value("kafka_consumergroup_current_offset", partition="1", **group) == 2
    assert result.value("kafka_consumergroup_lag", partition="0", **group) == 2
    assert result.value("kafka_consumergroup_lag", partition="1", **group) == 0
    assert result.value("kafka_consumergroup_lag_sum", **group) == 2
    assert sorted(
        labels["partition"] for labels in result.label_sets("kafka_consumergroup_lag")
    ) == ["0", "1"]


def test_metrics_records_and_bytes_in_out(busy_node: NodeProcess) -> None:
    result = scrape(busy_node)
    assert result.families["kaflow_records_in"] == "counter"
    assert result.value("kaflow_records_in_total", topic="orders") == 5
    # Keys, values, header names and header values:
    # k1+abc, k2+defg, h+src+web, k4, xyz.
    assert result.value("kaflow_bytes_in_total", topic="orders") == 5 + 6 + 7 + 2 + 3
    # The fetch from offset 1 of partition 0 returned two records.
    assert result.value("kaflow_records_out_total", topic="orders") == 2
    assert result.value("kaflow_bytes_out_total", topic="orders") == 6 + 7


def test_metrics_request_histogram_by_operation(busy_node: NodeProcess) -> None:
    count = "kaflow_http_request_duration_seconds_count"
    cases = {
        "produce_200": {"operation": "produce_records", "status": "200"},
        "fetch_200": {"operation": "fetch_records", "status": "200"},
        "fetch_404": {"operation": "fetch_records", "status": "404"},
        "unmatched_404": {"operation": "unmatched", "status": "404"},
    }
    before = scrape(busy_node)
    produce(busy_node, "orders", [{"value": "one", "partition": 1}])
    busy_node.get("/v1/topics/orders/partitions/1/records?offset=0")
    with pytest.raises(HttpError) as unknown:
        busy_node.get("/v1/topics/absent/partitions/0/records?offset=0")
    assert unknown.value.status == 404
    with pytest.raises(HttpError) as missing:
        http_json("GET", f"{busy_node.url}/v1/no-such-endpoint")
    assert missing.value.status == 404
    after = scrape(busy_node)

    assert after.families["kaflow_http_request_duration_seconds"] == "histogram"

    def counted(result: Scrape, case: str) -> float:
        labels = cases[case]
        return result.value(count, **labels) if result.samples_match(count, labels) else 0

    for case in cases:
        assert counted(after, case) - counted(before, case) == 1, case
    produce_200 = cases["produce_200"]
    buckets = "kaflow_http_request_duration_seconds_bucket"
    assert after.value(buckets, le="+Inf", **produce_200) == after.value(count, **produce_200)
    assert after.value("kaflow_http_request_duration_seconds_sum", **produce_200) > 0


def test_metrics_resource_families(busy_node: NodeProcess) -> None:
    result = scrape(busy_node)
    assert result.value("kaflow_log_open_files") >= 1
    assert result.value("kaflow_log_max_open_files") == 256
    assert result.value("kaflow_log_file_cache_misses_total") >= 1
    requests = result.value("kaflow_group_commit_requests_total")
    assert requests >= 2
    assert 1 <= result.value("kaflow_group_commit_commands_total") <= requests
    assert result.value("kaflow_raft_journal_entries") >= 1
    assert result.value("kaflow_raft_journal_fsyncs_total") >= 1
    assert result.value("kaflow_raft_journal_failed") == 0
    assert result.value("kaflow_catchup_open_gaps") == 0
    assert result.value("kaflow_catchup_gaps_closed_total") == 0
    assert result.value("process_open_fds") >= 1
    assert result.value("process_resident_memory_bytes") > 0


def test_metrics_deleted_topic_series_removed(busy_node: NodeProcess) -> None:
    busy_node.create_topic("returns")
    produce(busy_node, "returns", [{"value": "r"}])
    busy_node.post(
        "/v1/groups/refunds/offsets",
        {"offsets": [{"topic": "returns", "partition": 0, "offset": 0}]},
    )
    before = scrape(busy_node)
    assert before.value("kafka_topic_partitions", topic="returns") == 1
    assert before.value("kafka_consumergroup_lag", consumergroup="refunds") == 1
    assert before.value("kaflow_records_in_total", topic="returns") == 1

    http_json("DELETE", f"{busy_node.url}/v1/topics/returns")
    after = scrape(busy_node)
    assert not after.samples_match("kafka_topic_partitions", {"topic": "returns"})
    assert not after.samples_match("kafka_consumergroup_lag", {"consumergroup": "refunds"})
    assert not after.samples_match("kaflow_records_in_total", {"topic": "returns"})
    assert after.value("kafka_topic_partitions", topic="orders") == 2


def test_metrics_openmetrics_negotiated(busy_node: NodeProcess) -> None:
    result = scrape(busy_node, accept="application/openmetrics-text; version=1.0.0")
    assert result.content_type.startswith("application/openmetrics-text")
    plain = scrape(busy_node)
    assert plain.content_type.startswith("text/plain; version=0.0.4")


def test_metrics_unknown_query_parameter_rejected(busy_node: NodeProcess) -> None:
    with pytest.raises(urllib.error.HTTPError) as rejected:
        urllib.request.urlopen(f"{busy_node.url}/metrics?format=json", timeout=30)
    assert rejected.value.code == 400


def test_metrics_idempotent_retry_not_counted(node: NodeProcess) -> None:
    node.create_topic("retried", partitions=1)
    producer = node.post("/v1/producers", {})
    body = {
        "producer_id": producer["producer_id"],
        "producer_epoch": producer["producer_epoch"],
        "base_sequences": {"0": 0},
        "records": [{"value": "a", "partition": 0}, {"value": "b", "partition": 0}],
    }

    first = node.post("/v1/topics/retried/records", body)
    retry = node.post("/v1/topics/retried/records", body)

    assert retry == first
    assert scrape(node).value("kaflow_records_in_total", topic="retried") == 2
