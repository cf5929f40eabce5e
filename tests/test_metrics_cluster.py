"""GET /metrics on every member of a real three-node cluster."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster_harness import ClusterMember, ClusterProcess, wait_for
from tests.test_metrics_process import Scrape, produce, scrape


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[ClusterProcess]:
    started = ClusterProcess(tmp_path / "cluster")
    try:
        started.start()
        yield started
    finally:
        started.close()


def lag_sum(results: list[Scrape]) -> float:
    """Return ``sum(kafka_consumergroup_lag)`` over the scraped members, as Prometheus would."""
    return sum(
        value
        for result in results
        for labels, value in result.samples.get("kafka_consumergroup_lag", [])
        if labels.get("consumergroup") == "billing"
    )


def caught_up(members: list[ClusterMember], leader: ClusterMember) -> bool:
    """Return True once every member has applied what the leader reports as committed."""
    commit_index = scrape(leader).value("kaflow_raft_commit_index")
    return all(
        scrape(member).value("kaflow_raft_applied_index") >= commit_index for member in members
    )


@pytest.mark.slow
def test_metrics_cluster_leader_only_exports(cluster: ClusterProcess) -> None:
    leader = cluster.wait_for_leader()
    followers = [member for member in cluster.members if member is not leader]
    leader.create_topic("orders", partitions=2)
    produce(leader, "orders", [{"value": "a", "partition": 0}] * 3)
    leader.post(
        "/v1/groups/billing/offsets",
        {"offsets": [{"topic": "orders", "partition": 0, "offset": 1}]},
    )
    wait_for(lambda: caught_up(cluster.members, leader), "every member applying the commits")

    leader_result = scrape(leader)
    assert leader_result.value("kaflow_raft_role", role="leader") == 1
    assert leader_result.value("kafka_brokers") == 3
    assert leader_result.value("kafka_topic_partition_current_offset", partition="0") == 3
    assert leader_result.value("kafka_consumergroup_lag", partition="0") == 2

    follower_results = [scrape(follower) for follower in followers]
    for result in follower_results:
        assert result.value("kaflow_raft_role", role="follower") == 1
        assert result.value("kaflow_node_ready") == 1
        assert "kafka_topic_partitions" not in result.samples
        assert "kafka_consumergroup_lag" not in result.samples
        assert "kaflow_raft_follower_lag_entries" not in result.samples

    # A sum over all scraped members counts each partition once.
    assert lag_sum([leader_result, *follower_results]) == 2


@pytest.mark.slow
def test_metrics_cluster_follower_lag_and_peers(cluster: ClusterProcess) -> None:
    leader = cluster.wait_for_leader()
    cluster.wait_registered()
    leader.create_topic("orders")
    produce(leader, "orders", [{"value": "a"}])
    peer_ids = {member.node_id for member in cluster.members if member is not leader}

    def leader_sees_caught_up_followers() -> bool:
        samples = scrape(leader).samples.get("kaflow_raft_follower_lag_entries", [])
        lags = {labels["peer"]: value for labels, value in samples}
        return set(lags) == peer_ids and all(lag == 0 for lag in lags.values())

    wait_for(leader_sees_caught_up_followers, "the leader reporting both followers at lag 0")

    for member in cluster.members:
        others = {other.node_id for other in cluster.members if other is not member}

        def connected_to_all(member: ClusterMember = member, others: set[str] = others) -> bool:
            samples = scrape(member).samples.get("kaflow_raft_peer_connected", [])
            return {labels["peer"] for labels, value in samples if value == 1} == others

        wait_for(connected_to_all, f"node {member.node_id} connected to {sorted(others)}")
