"""The scrape-time collectors and NodeMetrics, fed with a broker state the test controls.

One real node cannot be made a follower, a not-ready leader or the owner of
a group that vanishes mid-scrape on demand. These tests therefore give the
collector a small in-memory broker state, and tests/test_metrics_process.py
scrapes a real node.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kaflow.broker import (
    ClusterStatus,
    CommittedOffset,
    MemberStatus,
    PartitionInfo,
    ProduceRecord,
    RaftRole,
    StoredRecord,
    TopicInfo,
)
from kaflow.errors import NotReadyError, UnknownGroupError
from kaflow.observability import NodeMetrics
from kaflow.observability.node_metrics import record_payload_bytes

Samples = dict[str, list[tuple[dict[str, str], float]]]


@dataclass
class BrokerState:
    """An in-memory broker state with the four methods the collector reads."""

    role: RaftRole = RaftRole.LEADER
    ready: bool = True
    members: list[MemberStatus] = field(default_factory=list)
    topics: list[TopicInfo] = field(default_factory=list)
    groups: dict[str, list[CommittedOffset]] = field(default_factory=dict)
    # Groups listed by list_groups() whose offsets are gone by committed_offsets().
    vanished_groups: list[str] = field(default_factory=list)

    def cluster_status(self) -> ClusterStatus:
        return ClusterStatus(
            node_id="1",
            role=self.role,
            term=4,
            leader_id="1" if self.role is RaftRole.LEADER else "2",
            commit_index=120,
            applied_index=118,
            ready=self.ready,
            members=self.members,
            extra={"raft_log_entries": 20, "snapshot_index": 100},
        )

    def list_topics(self) -> list[TopicInfo]:
        if not self.ready:
            raise NotReadyError("node 1 is not ready")
        return self.topics

    def list_groups(self) -> list[str]:
        if not self.ready:
            raise NotReadyError("node 1 is not ready")
        return sorted([*self.groups, *self.vanished_groups])

    def committed_offsets(self, group: str) -> list[CommittedOffset]:
        if group not in self.groups:
            raise UnknownGroupError(f"consumer group {group!r} has no committed offsets")
        return self.groups[group]


def committed(topic: str, partition: int, offset: int, high_watermark: int) -> CommittedOffset:
    return CommittedOffset(topic, partition, offset, "", 0, high_watermark, 0)


def three_members() -> list[MemberStatus]:
    return [
        MemberStatus("1", "10.0.0.1:8093", "http://10.0.0.1:8092", RaftRole.LEADER, True),
        MemberStatus("2", "10.0.0.2:8093", None, None, True, lag_entries=0),
        MemberStatus("3", "10.0.0.3:8093", None, None, False, lag_entries=37),
    ]


def busy_state(role: RaftRole = RaftRole.LEADER) -> BrokerState:
    return BrokerState(
        role=role,
        members=three_members(),
        topics=[TopicInfo("orders", [PartitionInfo(0, 5, 40), PartitionInfo(1, 0, 12)], {})],
        groups={"billing": [committed("orders", 0, 30, 40), committed("orders", 1, 12, 12)]},
    )


def scrape(metrics: NodeMetrics) -> Samples:
    body, content_type = metrics.render(None)
    assert content_type.startswith("text/plain; version=0.0.4")
    samples: Samples = {}
    for family in text_string_to_metric_families(body.decode("utf-8")):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    found = [
        sample_value
        for sample_labels, sample_value in samples.get(name, [])
        if all(sample_labels.get(key) == wanted for key, wanted in labels.items())
    ]
    assert len(found) == 1, f"{name}{labels}: {samples.get(name)}"
    return found[0]


def test_collector_leader_exports_cluster_families() -> None:
    samples = scrape(NodeMetrics(busy_state(), process=False))
    assert value(samples, "kafka_brokers") == 3
    assert value(samples, "kafka_topic_partitions", topic="orders") == 2
    assert value(samples, "kafka_topic_partition_current_offset", partition="0") == 40
    assert value(samples, "kafka_topic_partition_oldest_offset", partition="0") == 5
    assert value(samples, "kafka_consumergroup_current_offset", partition="0") == 30
    assert value(samples, "kafka_consumergroup_lag", partition="0") == 10
    assert value(samples, "kafka_consumergroup_lag", partition="1") == 0
    assert value(samples, "kafka_consumergroup_lag_sum", consumergroup="billing") == 10


def test_collector_follower_leaves_out_cluster_families() -> None:
    samples = scrape(NodeMetrics(busy_state(RaftRole.FOLLOWER), process=False))
    assert value(samples, "kaflow_raft_role", role="follower") == 1
    assert value(samples, "kaflow_raft_role", role="leader") == 0
    families = ("kafka_brokers", "kafka_topic_partitions", "kafka_consumergroup_lag")
    for name in families:
        assert name not in samples, name


def test_collector_raft_indexes_and_peers() -> None:
    samples = scrape(NodeMetrics(busy_state(), process=False))
    assert value(samples, "kaflow_raft_term") == 4
    assert value(samples, "kaflow_raft_commit_index") == 120
    assert value(samples, "kaflow_raft_applied_index") == 118
    assert value(samples, "kaflow_raft_log_entries") == 20
    assert value(samples, "kaflow_raft_snapshot_index") == 100
    assert value(samples, "kaflow_raft_follower_lag_entries", peer="2") == 0
    assert value(samples, "kaflow_raft_follower_lag_entries", peer="3") == 37
    assert value(samples, "kaflow_raft_peer_connected", peer="2") == 1
    assert value(samples, "kaflow_raft_peer_connected", peer="3") == 0
    # The node itself is no peer of its own.
    peers = {labels["peer"] for labels, _ in samples["kaflow_raft_peer_connected"]}
    assert peers == {"2", "3"}


def test_collector_not_ready_leader_exports_node_families_only() -> None:
    state = busy_state()
    state.ready = False
    samples = scrape(NodeMetrics(state, process=False))
    assert value(samples, "kaflow_node_ready") == 0
    assert value(samples, "kaflow_node_info", node_id="1") == 1
    assert value(samples, "kaflow_raft_role", role="leader") == 1
    assert "kafka_topic_partitions" not in samples
    assert "kafka_brokers" not in samples


def test_collector_skips_vanished_group() -> None:
    state = busy_state()
    state.vanished_groups = ["gone"]
    samples = scrape(NodeMetrics(state, process=False))
    groups = {labels["consumergroup"] for labels, _ in samples["kafka_consumergroup_lag"]}
    assert groups == {"billing"}


def test_collector_skips_offsets_of_deleted_topic() -> None:
    state = busy_state()
    state.groups["billing"].append(committed("deleted", 0, 3, 0))
    samples = scrape(NodeMetrics(state, process=False))
    topics = {labels["topic"] for labels, _ in samples["kafka_consumergroup_lag"]}
    assert topics == {"orders"}


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        (ProduceRecord(b"key", b"value"), 8),
        (ProduceRecord(None, None), 0),
        (ProduceRecord(None, b"v", headers=(("trace", b"abc"), ("é", b""))), 1 + 5 + 3 + 2),
        (StoredRecord(7, 0, b"k", b"", (("h", b"xy"),)), 1 + 1 + 2),
    ],
    ids=["key-and-value", "null-key-and-value", "headers-utf8-name", "stored-record"],
)
def test_payload_bytes_counts_key_value_headers(
    record: ProduceRecord | StoredRecord, expected: int
) -> None:
    assert record_payload_bytes(record) == expected


def test_node_metrics_counts_records_in_and_out() -> None:
    metrics = NodeMetrics(busy_state(), process=False)
    metrics.count_produced("orders", [ProduceRecord(b"k", b"abc"), ProduceRecord(None, b"de")])
    metrics.count_produced("orders", [ProduceRecord(None, b"f")])
    metrics.count_fetched("orders", [StoredRecord(0, 0, b"k", b"abc")])
    samples = scrape(metrics)
    assert value(samples, "kaflow_records_in_total", topic="orders") == 3
    assert value(samples, "kaflow_bytes_in_total", topic="orders") == 7
    assert value(samples, "kaflow_records_out_total", topic="orders") == 1
    assert value(samples, "kaflow_bytes_out_total", topic="orders") == 4


def test_node_metrics_forget_topic_removes_series() -> None:
    metrics = NodeMetrics(busy_state(), process=False)
    metrics.count_produced("orders", [ProduceRecord(None, b"a")])
    metrics.count_produced("returns", [ProduceRecord(None, b"b")])
    metrics.forget_topic("returns")
    metrics.forget_topic("never-produced")
    samples = scrape(metrics)
    topics = {labels["topic"] for labels, _ in samples["kaflow_records_in_total"]}
    assert topics == {"orders"}


def test_node_metrics_request_histogram_buckets() -> None:
    metrics = NodeMetrics(busy_state(), process=False)
    metrics.observe_request("fetch_records", 200, 0.003)
    metrics.observe_request("fetch_records", 200, 29.0)
    samples = scrape(metrics)
    bucket = "kaflow_http_request_duration_seconds_bucket"
    labels = {"operation": "fetch_records", "status": "200"}
    assert value(samples, bucket, le="0.0025", **labels) == 0
    assert value(samples, bucket, le="0.005", **labels) == 1
    assert value(samples, bucket, le="10.0", **labels) == 1
    assert value(samples, bucket, le="30.0", **labels) == 2
    assert value(samples, "kaflow_http_request_duration_seconds_count", **labels) == 2


def test_node_metrics_openmetrics_render() -> None:
    metrics = NodeMetrics(busy_state(), process=False)
    body, content_type = metrics.render("application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    text = body.decode("utf-8")
    assert text.endswith("# EOF\n")
    lines = text.splitlines()
    assert "# TYPE kafka_consumergroup_lag gauge" in lines
    assert "# TYPE kaflow_records_in counter" in lines


def test_node_metrics_registries_are_separate() -> None:
    first = NodeMetrics(busy_state(), process=False)
    second = NodeMetrics(busy_state(), process=False)
    first.count_produced("orders", [ProduceRecord(None, b"a")])
    assert "kaflow_records_in_total" in scrape(first)
    assert "kaflow_records_in_total" not in scrape(second)
