"""RaftJournal under real PySyncObj 0.3.17 SyncObj nodes on 127.0.0.1, ticked by hand.

The journal is plugged in by replacing ``pysyncobj.syncobj.createJournal``.
Two hooks make entries durable before they count. ``_onTick`` syncs before
PySyncObj's tick, whose leader branch counts the leader's own entries toward
the commit index. The transport's ``send`` syncs first, because a follower
acknowledges entries in the same message handler that appended them.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pysyncobj.syncobj
import pytest
from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf, replicated
from pysyncobj.transport import TCPTransport

from kaflow.replication.journal import RaftJournal

COMMANDS = 30
StartNode = Callable[..., "ValueList"]


def free_address() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


class SyncingTransport(TCPTransport):  # type: ignore[misc]
    """A TCP transport that syncs the journal before every message it sends."""

    def __init__(self, journal: RaftJournal, *args: Any) -> None:
        super().__init__(*args)
        self.journal = journal
        # Entries that were unsynced when a successful AppendEntries reply was sent.
        self.unsynced_at_ack: list[int] = []

    def send(self, node: Any, message: dict[str, Any]) -> bool:
        unsynced = self.journal.statistics().unsynced_entries
        self.journal.sync()
        if message["type"] == "next_node_idx" and message["success"]:
            self.unsynced_at_ack.append(unsynced)
        return bool(super().send(node, message))


class ValueList(SyncObj):  # type: ignore[misc]
    def __init__(
        self, conf: SyncObjConf, address: str, partners: list[str], journal: RaftJournal
    ) -> None:
        self.values: list[int] = []

        def transport_class(*args: Any) -> SyncingTransport:
            return SyncingTransport(journal, *args)

        self.journal = journal
        super().__init__(address, partners, conf, transportClass=transport_class)
        self.transport: SyncingTransport = self._SyncObj__transport

    def _onTick(self, timeToWait: float = 0.0) -> None:
        self.journal.sync()
        super()._onTick(timeToWait)

    @replicated  # type: ignore[untyped-decorator]
    def append_value(self, value: int) -> int:
        self.values.append(value)
        return len(self.values)


def tick_until(
    node: ValueList | list[ValueList], predicate: Callable[[], bool], timeout: float = 20.0
) -> None:
    nodes = node if isinstance(node, list) else [node]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            statuses = [member.getStatus() for member in nodes]
            pytest.fail(f"condition not reached within {timeout} s: {statuses}")
        for member in nodes:
            member.doTick(0.005)


@pytest.fixture
def start_node(monkeypatch: pytest.MonkeyPatch) -> Iterator[StartNode]:
    nodes: list[ValueList] = []

    def start(
        journal: RaftJournal, address: str | None = None, partners: list[str] | None = None
    ) -> ValueList:
        monkeypatch.setattr(pysyncobj.syncobj, "createJournal", lambda _path: journal)
        conf = SyncObjConf(
            autoTick=False,
            raftMinTimeout=0.1,
            raftMaxTimeout=0.2,
            appendEntriesPeriod=0.02,
        )

        node = ValueList(conf, address or free_address(), partners or [], journal)
        nodes.append(node)
        return node

    yield start
    for node in nodes:
        node.destroy()


def test_syncobj_commit_and_replay(tmp_path: Path, start_node: StartNode) -> None:
    journal = RaftJournal(tmp_path / "raft")
    node = start_node(journal)
    tick_until(node, node._isLeader)
    results: list[tuple[Any, int]] = []
    for value in range(COMMANDS):
        node.append_value(value, callback=lambda result, error: results.append((result, error)))
    tick_until(node, lambda: len(results) == COMMANDS)
    first_term = node.raftCurrentTerm
    stats = journal.statistics()
    node.destroy()

    assert [error for _, error in results] == [FAIL_REASON.SUCCESS] * COMMANDS
    assert sorted(result for result, _ in results) == list(range(1, COMMANDS + 1))
    assert stats.unsynced_entries == 0
    assert stats.data_fsyncs >= 1
    # Index 1 is PySyncObj's initial no-op and index 2 the new leader's no-op.
    assert stats.entries == COMMANDS + 2

    reopened = RaftJournal(tmp_path / "raft")
    assert reopened.getCurrentTerm() == first_term
    restarted = start_node(reopened)
    # The stored commit index lets the node replay before it is elected again.
    tick_until(restarted, lambda: len(restarted.values) == COMMANDS)
    tick_until(restarted, restarted._isLeader)

    assert restarted.values == list(range(COMMANDS))
    assert restarted.raftCurrentTerm > first_term
    assert reopened.getCurrentTerm() == restarted.raftCurrentTerm


def test_three_node_replication(tmp_path: Path, start_node: StartNode) -> None:
    addresses = [free_address() for _ in range(3)]
    journals = [RaftJournal(tmp_path / f"node-{number}") for number in range(3)]
    nodes = [
        start_node(journal, address, [other for other in addresses if other != address])
        for journal, address in zip(journals, addresses, strict=True)
    ]
    tick_until(nodes, lambda: sum(node._isLeader() for node in nodes) == 1)
    results: list[int] = []
    for value in range(COMMANDS):
        # Commands submitted on every node, so followers forward them to the leader.
        nodes[value % 3].append_value(value, callback=lambda _result, error: results.append(error))
    tick_until(nodes, lambda: len(results) == COMMANDS)
    tick_until(nodes, lambda: all(len(node.values) == COMMANDS for node in nodes))

    follower_acks = [
        count for node in nodes if not node._isLeader() for count in node.transport.unsynced_at_ack
    ]
    assert results == [FAIL_REASON.SUCCESS] * COMMANDS
    assert nodes[0].values == nodes[1].values == nodes[2].values
    assert sorted(nodes[0].values) == list(range(COMMANDS))
    assert list(journals[0][0:]) == list(journals[1][0:]) == list(journals[2][0:])
    # Followers appended entries that were still unsynced when the reply went out,
    # so the transport hook is what made them durable first.
    assert any(count > 0 for count in follower_acks)
