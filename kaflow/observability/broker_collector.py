"""Gauges computed from a broker's state each time Prometheus scrapes the node.

Every node exports its own Raft view (``kaflow_node_*``, ``kaflow_raft_*``).
The replicated topic and consumer group state is exported with the metric
names and labels of the Kafka exporter for Prometheus (danielqsj/kafka_exporter),
so dashboards and autoscaler queries written for it work unchanged:

=========================================  ====================================
family                                     value
=========================================  ====================================
``kafka_brokers``                          Raft members in the cluster
``kafka_topic_partitions{topic}``          partition count
``kafka_topic_partition_current_offset``   high watermark (``topic``, ``partition``)
``kafka_topic_partition_oldest_offset``    log start offset (``topic``, ``partition``)
``kafka_consumergroup_current_offset``     committed offset (``consumergroup``, ``topic``,
                                           ``partition``)
``kafka_consumergroup_lag``                high watermark minus committed offset, at least 0
``kafka_consumergroup_lag_sum``            lag summed over a topic's partitions
                                           (``consumergroup``, ``topic``)
=========================================  ====================================

Only the Raft leader exports these families. Every member has the same
replicated state, so a ``sum()`` over the scraped nodes would otherwise count
each partition once per member. While an election runs, no node exports them.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterator
from typing import Protocol

from prometheus_client.metrics_core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

import kaflow
from kaflow.broker import ClusterStatus, CommittedOffset, RaftRole, TopicInfo
from kaflow.errors import KaflowError, UnknownGroupError

__all__ = ["BrokerCollector", "BrokerState"]

logger = logging.getLogger(__name__)


class BrokerState(Protocol):
    """The part of :class:`kaflow.broker.Broker` the collector reads."""

    def cluster_status(self) -> ClusterStatus: ...

    def list_topics(self) -> list[TopicInfo]: ...

    def list_groups(self) -> list[str]: ...

    def committed_offsets(self, group: str) -> list[CommittedOffset]: ...


class BrokerCollector(Collector):
    """Reads a broker's state at scrape time; call ``collect`` on the broker's event loop."""

    def __init__(self, broker: BrokerState) -> None:
        self._broker = broker

    def collect(self) -> Iterator[Metric]:
        status = self._broker.cluster_status()
        yield from _node_families(status)
        yield from _raft_families(status)
        if status.role is RaftRole.LEADER:
            yield from self._cluster_families(status)

    def _cluster_families(self, status: ClusterStatus) -> Iterator[Metric]:
        try:
            topics = self._broker.list_topics()
            committed = self._committed_offsets()
        except KaflowError as exc:
            # The leader is still replaying its log or stopping: leave the
            # families out rather than export a partial state.
            logger.debug("cluster metrics skipped node_id=%s error=%s", status.node_id, exc)
            return

        brokers = GaugeMetricFamily("kafka_brokers", "Members of the Raft cluster.")
        brokers.add_metric([], len(status.members))
        yield brokers
        yield from _topic_families(topics)
        existing = {topic.name for topic in topics}
        yield from _group_families(
            {
                group: [offset for offset in offsets if offset.topic in existing]
                for group, offsets in committed.items()
            }
        )

    def _committed_offsets(self) -> dict[str, list[CommittedOffset]]:
        committed: dict[str, list[CommittedOffset]] = {}
        for group in self._broker.list_groups():
            try:
                committed[group] = self._broker.committed_offsets(group)
            except UnknownGroupError:
                # The group lost its last offset between the two calls.
                continue
        return committed


def _node_families(status: ClusterStatus) -> Iterator[Metric]:
    info = InfoMetricFamily("kaflow_node", "Identity of this node and the Kaflow version it runs.")
    info.add_metric([], {"node_id": status.node_id, "version": kaflow.__version__})
    yield info

    ready = GaugeMetricFamily(
        "kaflow_node_ready", "1 when the node has replayed its log and serves requests, else 0."
    )
    ready.add_metric([], 1 if status.ready else 0)
    yield ready


def _raft_families(status: ClusterStatus) -> Iterator[Metric]:
    role = GaugeMetricFamily(
        "kaflow_raft_role",
        "1 for this node's current Raft role, 0 for the others.",
        labels=["role"],
    )
    for candidate in RaftRole:
        role.add_metric([candidate.value], 1 if status.role is candidate else 0)
    yield role

    extra = status.extra
    indexes = (
        ("kaflow_raft_term", "Current Raft term.", status.term),
        (
            "kaflow_raft_commit_index",
            "Highest Raft log index known to be committed.",
            status.commit_index,
        ),
        (
            "kaflow_raft_applied_index",
            "Highest Raft log index applied to the state machine.",
            status.applied_index,
        ),
        (
            "kaflow_raft_log_entries",
            "Raft log entries kept since the last snapshot.",
            extra.get("raft_log_entries"),
        ),
        (
            "kaflow_raft_snapshot_index",
            "Raft log index the last snapshot covers.",
            extra.get("snapshot_index"),
        ),
    )
    for name, documentation, value in indexes:
        if isinstance(value, int) and not isinstance(value, bool):
            gauge = GaugeMetricFamily(name, documentation)
            gauge.add_metric([], value)
            yield gauge

    peers = [member for member in status.members if member.node_id != status.node_id]
    connected = GaugeMetricFamily(
        "kaflow_raft_peer_connected",
        "1 when this node has a Raft connection to the peer, else 0.",
        labels=["peer"],
    )
    for member in peers:
        connected.add_metric([member.node_id], 1 if member.connected else 0)
    yield connected

    # Only the leader tracks how far each follower has replicated.
    lag = GaugeMetricFamily(
        "kaflow_raft_follower_lag_entries",
        "Raft log entries between the commit index and what the follower has stored "
        "(exported by the leader only).",
        labels=["peer"],
    )
    for member in peers:
        if member.lag_entries is not None:
            lag.add_metric([member.node_id], member.lag_entries)
    yield lag


def _topic_families(topics: list[TopicInfo]) -> Iterator[Metric]:
    partitions = GaugeMetricFamily(
        "kafka_topic_partitions", "Partitions of the topic.", labels=["topic"]
    )
    current = GaugeMetricFamily(
        "kafka_topic_partition_current_offset",
        "High watermark of the partition: the offset the next record gets.",
        labels=["topic", "partition"],
    )
    oldest = GaugeMetricFamily(
        "kafka_topic_partition_oldest_offset",
        "Log start offset of the partition: the oldest offset still stored.",
        labels=["topic", "partition"],
    )
    for topic in topics:
        partitions.add_metric([topic.name], len(topic.partitions))
        for partition in topic.partitions:
            labels = [topic.name, str(partition.partition)]
            current.add_metric(labels, partition.high_watermark)
            oldest.add_metric(labels, partition.log_start_offset)
    yield partitions
    yield current
    yield oldest


def _group_families(committed: dict[str, list[CommittedOffset]]) -> Iterator[Metric]:
    labels = ["consumergroup", "topic", "partition"]
    current = GaugeMetricFamily(
        "kafka_consumergroup_current_offset",
        "Committed offset of the consumer group: the next offset it reads.",
        labels=labels,
    )
    lag = GaugeMetricFamily(
        "kafka_consumergroup_lag",
        "Records between the group's committed offset and the high watermark.",
        labels=labels,
    )
    lag_sum = GaugeMetricFamily(
        "kafka_consumergroup_lag_sum",
        "Lag of the consumer group summed over the topic's partitions.",
        labels=["consumergroup", "topic"],
    )
    for group, offsets in sorted(committed.items()):
        per_topic: defaultdict[str, int] = defaultdict(int)
        for offset in offsets:
            partition_labels = [group, offset.topic, str(offset.partition)]
            current.add_metric(partition_labels, offset.offset)
            lag.add_metric(partition_labels, offset.lag)
            per_topic[offset.topic] += offset.lag
        for topic, total in sorted(per_topic.items()):
            lag_sum.add_metric([group, topic], total)
    yield current
    yield lag
    yield lag_sum
