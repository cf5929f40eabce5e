"""Durability of acknowledged writes: fsync ordering in the Raft adapter, and kill -9 of a cluster.

An entry counts as stored only after the journal's fdatasync covers it: a
follower's AppendEntries reply is sent after the fsync (sync_before_send),
and the leader counts its own entries toward the commit index only after
the fsync (sync_before_tick). KAFLOW_TEST_WITHOUT_PATCH set to either name
turns that hook off, and the matching test fails.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from pysyncobj.transport import TCPTransport

from kaflow.errors import RequestTimedOutError
from kaflow.replication.journal import RaftJournal
from kaflow.replication.raft import member as member_module
from tests.cluster_harness import ClusterProcess
from tests.harness import HttpError, http_json, wait_until
from tests.replication.raft_group import (
    RaftGroup,
    append_command,
    create_topic,
    eventually,
    without_patch,
)

__all__ = ["without_patch"]  # a fixture, used by name

COMMANDS = 20


@pytest.fixture
def acks_seen(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """Record (acknowledged index, last fsynced index) for each successful follower reply."""
    seen: list[tuple[int, int]] = []
    original = TCPTransport.send

    def recording_send(self: Any, node: Any, message: Any) -> bool:
        if isinstance(message, dict) and message.get("type") == "next_node_idx":
            journal: RaftJournal = self._journal
            stats = journal.statistics()
            if message["success"]:
                seen.append(
                    (message["next_node_idx"] - 1, stats.last_index - stats.unsynced_entries)
                )
        return bool(original(self, node, message))

    monkeypatch.setattr(TCPTransport, "send", recording_send)
    return seen


@pytest.fixture
async def group(
    tmp_path: Path, without_patch: str | None, acks_seen: list[tuple[int, int]]
) -> AsyncIterator[RaftGroup]:
    raft_group = RaftGroup(tmp_path, 3, request_timeout_s=10.0).start()
    try:
        await raft_group.wait_ready()
        yield raft_group
    finally:
        await raft_group.close()


async def test_follower_ack_after_fsync(group: RaftGroup, acks_seen: list[tuple[int, int]]) -> None:
    """Needs sync_before_send: a follower must not acknowledge entries before fsyncing them."""
    leader = await group.wait_leader()
    created = await create_topic(leader, "t")

    for number in range(COMMANDS):
        assert (await leader.raft.propose(append_command("t", created, b"v%d" % number))).ok

    assert len(acks_seen) >= COMMANDS
    unsynced = [(acked, synced) for acked, synced in acks_seen if acked > synced]
    assert unsynced == []


async def test_leader_commit_after_fsync(
    tmp_path: Path, without_patch: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Needs sync_before_tick: a leader must not count its own unsynced entries as stored."""
    commits: list[tuple[int, int]] = []
    original = RaftJournal.setRaftCommitIndex

    def recording(self: RaftJournal, raftCommitIndex: int) -> None:
        stats = self.statistics()
        commits.append((raftCommitIndex, stats.last_index - stats.unsynced_entries))
        original(self, raftCommitIndex)

    monkeypatch.setattr(RaftJournal, "setRaftCommitIndex", recording)
    # One member: no follower reply makes the leader sync before it commits.
    group = RaftGroup(tmp_path, 1).start()
    try:
        await group.wait_ready()
        leader = await group.wait_leader()
        created = await create_topic(leader, "t")
        for number in range(COMMANDS):
            assert (await leader.raft.propose(append_command("t", created, b"v%d" % number))).ok
    finally:
        await group.close()

    assert len(commits) >= COMMANDS
    assert [(commit, synced) for commit, synced in commits if commit > synced] == []


async def test_forwarded_command_times_out(
    group: RaftGroup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A command whose reply from the leader is lost fails with request_timed_out, not a hang."""
    leader = await group.wait_leader()
    created = await create_topic(leader, "t")
    follower = group.followers()[0]
    await eventually(lambda: follower.machine.topic("t") is not None, "the follower has the topic")
    original = member_module.DurableTransport.send

    def drop_replies(self: Any, node: Any, message: Any) -> bool:
        if isinstance(message, dict) and message.get("type") == "apply_command_response":
            return True
        return bool(original(self, node, message))

    monkeypatch.setattr(member_module.DurableTransport, "send", drop_replies)
    short_timeout = dataclasses.replace(follower.raft._settings, request_timeout_s=1.0)
    monkeypatch.setattr(follower.raft, "_settings", short_timeout)

    with pytest.raises(RequestTimedOutError, match="not committed within") as caught:
        await follower.raft.propose(append_command("t", created, b"lost reply"))

    assert caught.value.retriable


async def test_leader_steps_down_without_majority(group: RaftGroup) -> None:
    """Fails with PySyncObj's default leaderFallbackTimeout, which keeps a cut-off leader 30 s.

    To see it fail, build the group with RaftTuning(leader_fallback_timeout_s=30.0).
    """
    leader = await group.wait_leader()
    for follower in group.followers():
        await group.stop_member(follower)

    # The default tuning steps down after 3 s without a majority.
    await eventually(lambda: not leader.raft.is_leader(), "the cut-off leader steps down", 15.0)


@pytest.mark.slow
def test_cluster_kill_all_keeps_acked_records(tmp_path: Path) -> None:
    """kill -9 of every member during produce with fsync=always loses no acknowledged record."""
    cluster = ClusterProcess(tmp_path, 3, ("--fsync", "always"))
    try:
        cluster.start()
        cluster.wait_registered()
        leader = cluster.wait_for_leader()
        leader.create_topic("t", partitions=1)
        acked = _produce_until_killed(cluster, leader.url)

        for member in cluster.members:
            member.spawn()
        for member in cluster.members:
            member.wait_started()
        for member in cluster.members:
            wait_until(
                functools.partial(_has_records, member, len(acked)),
                60,
                f"node {member.node_id} replayed its log",
            )
            stored = {record["value"] for record in member.fetch_all("t", 0)}
            missing = [value for value in acked if value not in stored]
            assert missing == [], f"node {member.node_id} lost acknowledged records"
    finally:
        cluster.close()


def _produce_until_killed(cluster: ClusterProcess, url: str) -> list[str]:
    """Produce from 4 threads; SIGKILL every member after 40 acks; return the acked values."""
    acked: list[str] = []
    lock = threading.Lock()
    enough = threading.Event()

    def produce(worker: int) -> None:
        for number in range(10_000):
            value = f"w{worker}-{number}-{os.urandom(4).hex()}"
            body = {"records": [{"value": value}]}
            try:
                http_json("POST", f"{url}/v1/topics/t/records", body, timeout=10)
            except (HttpError, OSError):
                return
            with lock:
                acked.append(value)
                if len(acked) >= 40:
                    enough.set()

    with ThreadPoolExecutor(4) as pool:
        for worker in range(4):
            pool.submit(produce, worker)
        assert enough.wait(60), "fewer than 40 records were acknowledged"
        cluster.kill_all()
    with lock:
        return list(acked)


def _has_records(member: Any, count: int) -> bool:
    try:
        described = member.get("/v1/topics/t")
    except (HttpError, OSError):
        return False
    return int(described["partitions"][0]["high_watermark"]) >= count
