"""Consumer group coordination on three real nodes: forwarding and leader failover."""

from __future__ import annotations

from typing import Any

from tests.cluster_harness import ClusterMember, ClusterProcess, wait_for
from tests.harness import HttpError

RETRIABLE = {
    "not_ready",
    "leader_not_available",
    "not_leader",
    "request_timed_out",
    "unknown_outcome",
}


def heartbeat(member: ClusterMember, body: dict[str, Any]) -> dict[str, Any] | None:
    """Send one heartbeat; return None on a retriable failure or a node that is down."""
    try:
        response: dict[str, Any] = member.post("/v1/groups/g/heartbeat", body, timeout=15)
    except HttpError as exc:
        assert exc.code in RETRIABLE, exc
        return None
    except OSError:
        return None
    return response


def beat_until(member: ClusterMember, body: dict[str, Any]) -> dict[str, Any]:
    found: list[dict[str, Any]] = []

    def answered() -> bool:
        response = heartbeat(member, body)
        if response is not None:
            found.append(response)
        return bool(found)

    wait_for(answered, "a heartbeat response")
    return found[0]


def settle(member: ClusterMember, state: dict[str, Any]) -> dict[str, Any]:
    """Heartbeat with the member's assignment as owned; return the latest response."""
    return beat_until(
        member,
        {
            "member_id": state["member_id"],
            "member_epoch": state["member_epoch"],
            "owned": state["assignment"],
        },
    )


def partitions(response: dict[str, Any]) -> set[tuple[str, int]]:
    return {(entry["topic"], p) for entry in response["assignment"] for p in entry["partitions"]}


def stable_pair(via: ClusterMember, session_timeout_ms: int) -> list[dict[str, Any]]:
    join = {"member_epoch": 0, "topics": ["orders"], "session_timeout_ms": session_timeout_ms}
    states = [beat_until(via, join), beat_until(via, join)]
    for _ in range(4):
        states = [settle(via, state) for state in states]
    assert partitions(states[0]) | partitions(states[1]) == {("orders", p) for p in range(4)}
    assert not partitions(states[0]) & partitions(states[1])
    return states


def test_heartbeat_via_follower_is_forwarded(group_cluster: ClusterProcess) -> None:
    leader = group_cluster.wait_for_leader()
    leader.create_topic("orders", partitions=4)
    follower = group_cluster.followers()[0]

    states = stable_pair(follower, 10_000)

    described = follower.get("/v1/groups/g")
    assert described["state"] == "stable"
    assert {m["last_heartbeat_ms_ago"] for m in described["members"]} == {None}
    on_leader = leader.get("/v1/groups/g")
    assert all(m["last_heartbeat_ms_ago"] is not None for m in on_leader["members"])
    assert {m["member_id"] for m in on_leader["members"]} == {s["member_id"] for s in states}


def test_failover_keeps_assignment_and_restarts_timers(group_cluster: ClusterProcess) -> None:
    leader = group_cluster.wait_for_leader()
    leader.create_topic("orders", partitions=4)
    follower = group_cluster.followers()[0]
    alive, silent = stable_pair(follower, 3000)

    group_cluster.kill(leader)
    new_leader = group_cluster.wait_for_leader()
    after = settle(follower, alive)

    assert after["member_id"] == alive["member_id"]
    assert after["member_epoch"] == alive["member_epoch"]
    assert partitions(after) == partitions(alive)
    described = new_leader.get("/v1/groups/g")
    assert silent["member_id"] in {m["member_id"] for m in described["members"]}

    def silent_fenced() -> bool:
        nonlocal after
        after = settle(follower, after)
        return len(partitions(after)) == 4

    wait_for(silent_fenced, "the silent member to be fenced by the new leader")
    members = new_leader.get("/v1/groups/g")["members"]
    assert [m["member_id"] for m in members] == [alive["member_id"]]
