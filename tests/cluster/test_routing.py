from __future__ import annotations

from tests.cluster_harness import ClusterProcess, wait_for


def test_cluster_status_lists_registered_members(cluster: ClusterProcess) -> None:
    leader = cluster.wait_for_leader()

    status = leader.cluster()

    assert status["role"] == "leader"
    assert status["leader_id"] == leader.node_id
    by_id = {member["node_id"]: member for member in status["members"]}
    assert sorted(by_id) == ["1", "2", "3"]
    for member in cluster.members:
        listed = by_id[member.node_id]
        assert listed["raft_address"] == member.raft_address
        assert listed["http_address"] == member.url
        assert listed["connected"] is True
    for node_id, listed in by_id.items():
        expected_role = "leader" if node_id == leader.node_id else "follower"
        assert listed["role"] == expected_role
        if node_id != leader.node_id:
            assert isinstance(listed["lag_entries"], int)


def test_follower_status_names_leader(cluster: ClusterProcess) -> None:
    leader = cluster.wait_for_leader()

    for follower in cluster.followers():
        status = follower.cluster()
        assert status["role"] == "follower"
        assert status["leader_id"] == leader.node_id
        assert status["term"] >= 1
        assert status["applied_index"] <= status["commit_index"]


def test_produce_through_follower_read_everywhere(cluster: ClusterProcess) -> None:
    follower = cluster.followers()[0]
    follower.create_topic("orders", 2)
    records = [{"key": f"k{i}", "value": f"v{i}"} for i in range(20)]

    acked = follower.post("/v1/topics/orders/records", {"records": records})["records"]

    assert len(acked) == 20
    expected = {
        partition: sorted(
            (meta["offset"], record["value"])
            for meta, record in zip(acked, records, strict=True)
            if meta["partition"] == partition
        )
        for partition in (0, 1)
    }

    def every_member_has_all() -> bool:
        for member in cluster.members:
            for partition in (0, 1):
                read = [(r["offset"], r["value"]) for r in member.fetch_all("orders", partition)]
                if read != expected[partition]:
                    return False
        return True

    wait_for(every_member_has_all, "every member to return the produced records")
