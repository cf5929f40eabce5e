"""Consumer groups with member processes that join, get killed, stopped and restarted.

Each test runs against one node and against a three-node cluster. Members
are `tests/group_consumer_proc.py` processes with a 1500 ms session
timeout; they print what they process, and the checks read those lines.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.cluster_harness import ClusterProcess
from tests.group_members import (
    CommittedWatcher,
    MemberProcess,
    Producing,
    overlapping_segments,
    processed_counts,
)
from tests.harness import HttpError, NodeProcess, wait_until

SESSION_MS = 1500
MEMBER_OPTIONS = ("--session-timeout-ms", str(SESSION_MS), "--heartbeat-interval-ms", "150")
PARTITIONS = 6


@dataclass
class Deployment:
    """The nodes and names of one test.

    ``urls`` are for clients and ``node`` for HTTP checks. The nodes are
    shared by the tests of this module, so each test gets its own topic and
    group.
    """

    urls: list[str]
    node: NodeProcess
    cluster: ClusterProcess | None = None
    topic: str = ""
    group: str = ""


@pytest.fixture(
    scope="module",
    params=[
        pytest.param(1, id="one-node"),
        pytest.param(3, id="three-nodes", marks=pytest.mark.slow),
    ],
)
def nodes(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("group-nodes")
    if request.param == 1:
        node = NodeProcess(root / "node-1")
        try:
            node.start()
            yield Deployment([node.url], node)
        finally:
            node.kill()
        return
    cluster = ClusterProcess(root / "cluster", size=3)
    try:
        cluster.start()
        cluster.wait_registered()
        leader = cluster.wait_for_leader()
        yield Deployment([member.url for member in cluster.members], leader, cluster)
    finally:
        cluster.close()


@pytest.fixture
def deployment(nodes: Deployment, request: pytest.FixtureRequest) -> Deployment:
    suffix = request.node.originalname.removeprefix("test_group_").replace("_", "-")
    return Deployment(nodes.urls, nodes.node, nodes.cluster, f"jobs-{suffix}", f"workers-{suffix}")


@pytest.fixture
def members(tmp_path: Path) -> Iterator[list[MemberProcess]]:
    started: list[MemberProcess] = []
    yield started
    for member in started:
        member.kill()


def describe(deployment: Deployment) -> dict[str, Any]:
    """Return the group's description; a group without members or offsets yet has no members."""
    try:
        body: dict[str, Any] = deployment.node.get(f"/v1/groups/{deployment.group}")
    except HttpError as error:
        if error.code != "unknown_group":
            raise
        return {"group": deployment.group, "members": [], "offsets": []}
    return body


def assignment_sizes(deployment: Deployment) -> list[int]:
    """Return the sorted partition counts of the members, or [] while partitions are revoking."""
    described = describe(deployment)
    if any(member["revoking"] for member in described["members"]):
        return []
    return sorted(
        sum(len(entry["partitions"]) for entry in member["assignment"])
        for member in described["members"]
    )


def committed(deployment: Deployment) -> dict[int, int]:
    try:
        offsets = deployment.node.get(f"/v1/groups/{deployment.group}/offsets")["offsets"]
    except HttpError as error:
        if error.code != "unknown_group":
            raise
        return {}
    return {int(entry["partition"]): int(entry["offset"]) for entry in offsets}


def high_watermarks(deployment: Deployment) -> dict[int, int]:
    described = deployment.node.get(f"/v1/topics/{deployment.topic}")
    return {int(p["partition"]): int(p["high_watermark"]) for p in described["partitions"]}


def wait_group(
    deployment: Deployment,
    members: list[MemberProcess],
    predicate: Callable[[], Any],
    timeout: float,
    message: str,
) -> None:
    """Wait for ``predicate``; on timeout, fail with the group's and the members' state."""
    try:
        wait_until(predicate, timeout, message, 0.1)
    except AssertionError as error:
        lines = [str(error), json.dumps(describe(deployment), indent=1)]
        for member in members:
            events = [e for e in member.snapshot() if e["event"] not in ("record", "commit")]
            lines.append(f"{member.name} owns {sorted(member.owned())}: {events}")
            lines.append(member.tail(15))
        raise AssertionError("\n".join(lines)) from None


def start_member(
    tmp_path: Path,
    members: list[MemberProcess],
    deployment: Deployment,
    name: str,
    *extra: str,
) -> MemberProcess:
    member = MemberProcess(
        tmp_path, name, deployment.urls, deployment.group, deployment.topic, *MEMBER_OPTIONS, *extra
    ).start()
    members.append(member)
    return member


def wait_all_consumed(deployment: Deployment) -> None:
    def consumed() -> bool:
        ends = high_watermarks(deployment)
        return committed(deployment) == ends

    wait_until(consumed, 60, "the group to commit every partition's high watermark", 0.1)


def test_group_split_join_kill_and_stop(
    deployment: Deployment, members: list[MemberProcess], tmp_path: Path
) -> None:
    deployment.node.create_topic(deployment.topic, partitions=PARTITIONS)

    # Without lag the lag-aware assignor balances by count.
    first = [start_member(tmp_path, members, deployment, f"m{i}") for i in range(3)]
    wait_group(
        deployment,
        members,
        lambda: (
            assignment_sizes(deployment) == [2, 2, 2] and all(len(m.owned()) == 2 for m in first)
        ),
        30,
        "three members to own two partitions each",
    )

    # A fourth member joins while records flow; lag now weighs in, so only
    # "every member has work" is certain.
    producing = Producing(deployment.urls, deployment.topic, PARTITIONS).start()
    for member in first:
        member.wait_for(lambda m: m.of("record"), "process a record")
    fourth = start_member(tmp_path, members, deployment, "m3")
    wait_group(
        deployment,
        members,
        lambda: (
            len(sizes := assignment_sizes(deployment)) == 4 and min(sizes) >= 1 and fourth.owned()
        ),
        30,
        "the fourth member to get partitions",
    )

    # A SIGKILLed member's partitions move to the others once its session times out.
    fourth.wait_for(lambda m: m.of("record"), "process a record")
    victim = max(first, key=lambda m: len(m.owned()))
    victim_partitions = victim.owned()
    victim.kill()
    survivors = [m for m in [*first, fourth] if m is not victim]
    wait_group(
        deployment,
        members,
        lambda: (
            victim_partitions <= set().union(*(m.owned() for m in survivors))
            and sum(assignment_sizes(deployment)) == PARTITIONS
            and len(describe(deployment)["members"]) == 3
        ),
        20,
        f"partitions {victim_partitions} of the killed member to move",
    )

    # A member that stops itself before committing is fenced; its late commit is rejected.
    stopped = start_member(tmp_path, members, deployment, "m4", "--stop-before-commit", "1")
    stopped.wait_for(lambda m: m.of("stopping"), "stop itself", timeout=30)
    stopping = stopped.of("stopping")[0]
    wait_group(
        deployment,
        members,
        lambda: (
            stopping["member_id"]
            not in {member["member_id"] for member in describe(deployment)["members"]}
        ),
        20,
        "the stopped member to be fenced",
    )
    stopped.signal(signal.SIGCONT)
    stopped.wait_for(lambda m: m.of("commit_failed"), "report the rejected commit")
    stopped.wait_for(lambda m: m.of("lost"), "report its partitions lost")

    sent = producing.stop()
    wait_all_consumed(deployment)
    for member in members:
        if member.process is not None and member.process.poll() is None:
            assert member.terminate() == 0, member.tail()

    late_commits = [
        event
        for event in stopped.of("commit")
        if event["sent_as"] == stopping["member_id"] and event["t"] > stopping["t"]
    ]
    assert late_commits == []
    rejected = stopped.of("commit_failed")[0]
    assert rejected["sent_as"] == stopping["member_id"]
    assert rejected["t"] > stopping["t"]
    assert overlapping_segments(members) == []
    counts = processed_counts(members)
    assert len(counts) == len(sent), "some records were never processed"


def test_group_rolling_restart_exactly_once(
    deployment: Deployment, members: list[MemberProcess], tmp_path: Path
) -> None:
    deployment.node.create_topic(deployment.topic, partitions=PARTITIONS)
    running = [start_member(tmp_path, members, deployment, f"m{i}") for i in range(3)]
    wait_group(
        deployment,
        members,
        lambda: assignment_sizes(deployment) == [2, 2, 2],
        30,
        "three members to own two partitions each",
    )
    producing = Producing(deployment.urls, deployment.topic, PARTITIONS).start()

    # Each member in turn commits in its revoke callback, leaves, and is replaced.
    for index, old in enumerate(list(running)):
        old.wait_for(lambda m: m.of("record"), "process a record")
        assert old.terminate() == 0, old.tail()
        new = start_member(tmp_path, members, deployment, f"m{index}-restarted")
        new.wait_for(lambda m: m.owned(), "get partitions")
        running[index] = new

    sent = producing.stop()
    wait_all_consumed(deployment)
    for member in running:
        assert member.terminate() == 0, member.tail()

    counts = processed_counts(members)
    duplicates = {key: count for key, count in counts.items() if count > 1}
    assert duplicates == {}
    assert len(counts) == len(sent)
    assert overlapping_segments(members) == []
    assert all(not member.of("commit_failed") for member in members)


def test_group_static_member_restart_keeps_partitions(
    deployment: Deployment, members: list[MemberProcess], tmp_path: Path
) -> None:
    deployment.node.create_topic(deployment.topic, partitions=PARTITIONS)
    # The static member's longer session leaves time for a process restart.
    static = ("--instance-id", "static-1", "--session-timeout-ms", "8000")
    dynamic = [start_member(tmp_path, members, deployment, f"m{i}") for i in range(2)]
    first = start_member(tmp_path, members, deployment, "static", *static)
    wait_group(
        deployment,
        members,
        lambda: assignment_sizes(deployment) == [2, 2, 2] and len(first.owned()) == 2,
        30,
        "three members to own two partitions each",
    )
    before = describe(deployment)
    records = [{"value": f"v-{i}", "partition": i % PARTITIONS} for i in range(60)]
    deployment.node.post(f"/v1/topics/{deployment.topic}/records", {"records": records})
    wait_all_consumed(deployment)
    static_partitions = first.owned()
    restarted_at = first.snapshot()[-1]["t"]

    assert first.terminate() == 0, first.tail()
    second = start_member(tmp_path, members, deployment, "static-again", *static)
    second.wait_for(lambda m: m.owned(), "get partitions")

    after = describe(deployment)
    assert second.owned() == static_partitions
    assert after["group_epoch"] == before["group_epoch"]
    assert second.of("assigned")[0]["group_epoch"] == before["group_epoch"]
    others_before = {
        m["member_id"]: m["assignment"] for m in before["members"] if not m["group_instance_id"]
    }
    others_after = {
        m["member_id"]: m["assignment"] for m in after["members"] if not m["group_instance_id"]
    }
    assert others_after == others_before
    for member in dynamic:
        moves = [
            e
            for e in member.snapshot()
            if e["event"] in ("assigned", "revoked", "lost") and e["t"] > restarted_at
        ]
        assert moves == [], f"{member.name} saw a rebalance"
    # The new process resumes from the committed offsets: nothing is processed twice.
    assert second.of("record") == []
    for member in members:
        assert member.terminate() == 0, member.tail()
    counts = processed_counts(members)
    assert sorted(counts.values()) == [1] * len(records)


def test_group_consumer_survives_leader_kill(
    deployment: Deployment, members: list[MemberProcess], tmp_path: Path
) -> None:
    if deployment.cluster is None:
        pytest.skip("a leader failover needs a cluster")
    cluster = deployment.cluster
    deployment.node.create_topic(deployment.topic, partitions=PARTITIONS)
    # A longer session keeps the member through the leader election.
    first = start_member(tmp_path, members, deployment, "m0", "--session-timeout-ms", "8000")
    first.wait_for(lambda m: len(m.owned()) == PARTITIONS, "own every partition")
    producing = Producing(deployment.urls, deployment.topic, PARTITIONS).start()
    watcher = CommittedWatcher(cluster, deployment.group).start()
    first.wait_for(lambda m: len(m.of("commit")) >= 3, "commit three times")

    leader = cluster.wait_for_leader()
    cluster.kill(leader)
    deployment.node = cluster.wait_for_leader()
    first.wait_for(lambda m: len(m.of("commit")) >= 3 + 5, "commit after the failover", timeout=60)
    sent = producing.stop()
    wait_all_consumed(deployment)
    before_restart = committed(deployment)
    assert first.terminate() == 0, first.tail()

    # A new consumer bootstrapped from another node resumes at the committed offsets.
    survivor = next(m for m in cluster.running() if m is not deployment.node)
    second = MemberProcess(
        tmp_path,
        "m1",
        [survivor.url],
        deployment.group,
        deployment.topic,
        *MEMBER_OPTIONS,
    ).start()
    members.append(second)
    second.wait_for(lambda m: len(m.owned()) == PARTITIONS, "own every partition")
    extra = [f"after-{i}" for i in range(PARTITIONS)]
    body = {"records": [{"value": value, "partition": i} for i, value in enumerate(extra)]}
    deployment.node.post(f"/v1/topics/{deployment.topic}/records", body)
    second.wait_for(lambda m: len(m.of("record")) >= PARTITIONS, "process the new records")
    assert second.terminate() == 0, second.tail()
    watcher.stop()
    cluster.restart(leader)

    resumed = {e["partition"]: e["offset"] for e in reversed(second.of("record"))}
    assert resumed == before_restart
    stored = [
        record["value"]
        for partition in range(PARTITIONS)
        for record in deployment.node.fetch_all(deployment.topic, partition)
    ]
    assert sorted(stored) == sorted(sent + extra)
    assert watcher.backwards() == []
