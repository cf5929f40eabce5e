from __future__ import annotations

import subprocess
import sys

import pytest

from tests.cluster_harness import ClusterProcess, wait_for
from tests.harness import HttpError


def member_ids(status: dict[str, object]) -> list[str]:
    members = status["members"]
    assert isinstance(members, list)
    return sorted(member["node_id"] for member in members)


def test_add_then_remove_fourth_member(cluster: ClusterProcess) -> None:
    follower = cluster.followers()[0]
    leader = cluster.wait_for_leader()
    follower.create_topic("before", 1)
    follower.post("/v1/topics/before/records", {"records": [{"value": "x"}]})
    new = cluster.new_member()

    added = follower.post("/v1/cluster/members", {"raft_address": new.raft_address})
    new.start()
    cluster.wait_registered()

    assert added["action"] == "add"
    assert new.raft_address in [m["raft_address"] for m in added["members"]]
    assert member_ids(leader.cluster()) == ["1", "2", "3", "4"]
    wait_for(
        lambda: [r["value"] for r in new.fetch_all("before", 0)] == ["x"],
        "the new member to catch up",
    )

    removed = follower.delete(f"/v1/cluster/members/{new.node_id}")
    new.stop()

    assert removed["node_id"] == new.node_id
    assert new.raft_address not in [m["raft_address"] for m in removed["members"]]
    wait_for(
        lambda: all(member_ids(m.cluster()) == ["1", "2", "3"] for m in cluster.running()),
        "every member to drop node 4",
    )
    meta = leader.post("/v1/topics/before/records", {"records": [{"value": "y"}]})
    assert meta["records"][0]["offset"] == 1


def test_add_existing_member_conflicts(cluster: ClusterProcess) -> None:
    leader = cluster.wait_for_leader()
    other = cluster.followers()[0]

    with pytest.raises(HttpError) as raised:
        leader.post("/v1/cluster/members", {"raft_address": other.raft_address}, timeout=60)

    assert raised.value.status == 409
    assert raised.value.code == "member_already_exists"


def test_remove_unknown_node_not_found(cluster: ClusterProcess) -> None:
    with pytest.raises(HttpError) as raised:
        cluster.followers()[0].delete("/v1/cluster/members/nope")

    assert raised.value.status == 404
    assert raised.value.code == "unknown_node"


def test_add_invalid_address_rejected(cluster: ClusterProcess) -> None:
    with pytest.raises(HttpError) as raised:
        cluster.wait_for_leader().post("/v1/cluster/members", {"raft_address": "no-port"})

    assert raised.value.status == 400


def test_transfer_leadership_to_target(cluster: ClusterProcess) -> None:
    old_leader = cluster.wait_for_leader()
    target = cluster.followers()[0]

    moved = target.post("/v1/cluster/leader", {"target": target.node_id})

    assert moved["leader_id"] == target.node_id
    assert cluster.wait_for_leader() is target
    status = target.cluster()
    assert status["role"] == "leader"
    assert old_leader.cluster()["leader_id"] == target.node_id


def test_remove_leader_moves_leadership_first(cluster: ClusterProcess) -> None:
    old_leader = cluster.wait_for_leader()

    removed = old_leader.delete(f"/v1/cluster/members/{old_leader.node_id}")
    old_leader.stop()

    assert removed["node_id"] == old_leader.node_id
    survivors = cluster.running()
    new_leader = cluster.wait_for_leader(among=survivors)
    assert new_leader is not old_leader
    wait_for(
        lambda: all(len(m.cluster()["members"]) == 2 for m in survivors),
        "the survivors to list two members",
    )


def test_cli_remove_node_of_leader_succeeds(cluster: ClusterProcess) -> None:
    leader = cluster.wait_for_leader()
    follower = cluster.followers()[0]

    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "kaflow",
            "--bootstrap",
            follower.url,
            "cluster",
            "remove-node",
            leader.node_id,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    leader.stop()

    assert completed.returncode == 0, completed.stderr
    survivors = cluster.running()
    wait_for(
        lambda: all(len(m.cluster()["members"]) == 2 for m in survivors),
        "the survivors to list two members",
    )


def test_add_alias_of_member_rejected(cluster: ClusterProcess) -> None:
    leader = cluster.wait_for_leader()
    follower = cluster.followers()[0]
    host, port = follower.raft_address.rsplit(":", 1)

    with pytest.raises(HttpError) as caught:
        leader.post("/v1/cluster/members", {"raft_address": f"{host}:0{port}"})

    assert caught.value.status == 409
    assert caught.value.code == "member_already_exists"
    assert len(leader.cluster()["members"]) == 3
