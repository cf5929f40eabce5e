"""The PySyncObj adapter with real Raft members on 127.0.0.1 and real files."""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.metadata
import importlib.util
import os
import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import kaflow.replication.raft.adapter as adapter_module
import kaflow.replication.raft.journal_files as journal_files_module
from kaflow.broker import ProduceRecord
from kaflow.config import NodeConfig
from kaflow.errors import (
    InternalError,
    InvalidConfigError,
    KaflowError,
    LeaderNotAvailableError,
    NotLeaderError,
    RequestTimedOutError,
    RetriableError,
    StorageError,
    UnknownOutcomeError,
)
from kaflow.node import Node
from kaflow.replication.commands import Append, AppendItem, CreateTopic, encode_command
from kaflow.replication.journal import RaftJournal
from kaflow.replication.raft import RaftNode, RaftSettings, check_pysyncobj_version
from kaflow.replication.state_machine import StateMachine
from kaflow.storage.manager import LogManager
from tests.harness import free_port
from tests.replication.conftest import make_batch

DEADLINE_S = 20.0


async def eventually(predicate: Any, message: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE_S
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {DEADLINE_S:.0f} s: {message}")
        await asyncio.sleep(0.01)


def node_config(data_dir: Path, **overrides: Any) -> NodeConfig:
    config = NodeConfig(data_dir=data_dir, raft_port=free_port(), port=free_port())
    return dataclasses.replace(config, **overrides)


def journal_entries(raft_dir: Path) -> list[tuple[bytes, int, int]]:
    with RaftJournal(raft_dir / "journal") as journal:
        return [journal[i] for i in range(len(journal))]


@pytest.fixture
async def member(tmp_path: Path) -> AsyncIterator[tuple[RaftNode, StateMachine]]:
    """A one-member Raft group that compacts after 200 KB of commands."""
    logs = LogManager(tmp_path / "member")
    logs.open_existing()
    machine = StateMachine(logs)
    settings = RaftSettings(
        self_address=f"127.0.0.1:{free_port()}",
        peers=(),
        raft_dir=tmp_path / "member" / "raft",
        password=None,
        request_timeout_s=10.0,
        fsync=True,
        max_command_bytes=4 * 1024 * 1024,
        compaction_bytes=200_000,
    )
    raft = RaftNode(settings, machine, asyncio.get_running_loop())
    raft.start()
    await asyncio.wait_for(raft.wait_ready(), DEADLINE_S)
    yield raft, machine
    await raft.stop()
    logs.close()


@pytest.mark.parametrize(
    ("reason", "error"),
    [
        (1, RetriableError),
        (2, LeaderNotAvailableError),
        (3, UnknownOutcomeError),
        (4, NotLeaderError),
        (5, UnknownOutcomeError),
        (6, InternalError),
        (7, UnknownOutcomeError),
    ],
    ids=[
        "queue-full",
        "missing-leader",
        "discarded",
        "not-leader",
        "leader-changed",
        "request-denied",
        "unknown-outcome",
    ],
)
def test_raft_failure_reason_translation(reason: int, error: type[KaflowError]) -> None:
    translated = adapter_module._translate_failure(reason)

    assert type(translated) is error
    assert translated.retriable is (error is not InternalError)


def test_raft_version_check_accepts_installed() -> None:
    check_pysyncobj_version()


def test_raft_version_check_rejects_other_release(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "0.3.16")

    with pytest.raises(InternalError, match=r"PySyncObj 0\.3\.16 is installed .* exactly 0\.3\.17"):
        check_pysyncobj_version()


async def test_raft_propose_applies_command(member: tuple[RaftNode, StateMachine]) -> None:
    raft, machine = member

    result = await raft.propose(encode_command(CreateTopic("t", 1, {})))

    assert result.ok
    assert machine.topic("t") is not None
    assert raft.is_leader()
    assert raft.status().term >= 1


async def test_raft_propose_cancelled_as_result_arrives(
    member: tuple[RaftNode, StateMachine], monkeypatch: pytest.MonkeyPatch
) -> None:
    raft, machine = member
    callers: list[asyncio.Task[Any]] = []
    settle = adapter_module._settle

    def settle_then_cancel(future: asyncio.Future[Any], value: Any) -> None:
        # The caller is cancelled after its result is set, before it resumes.
        settle(future, value)
        for caller in callers:
            caller.cancel()

    monkeypatch.setattr(adapter_module, "_settle", settle_then_cancel)
    caller = asyncio.ensure_future(raft.propose(encode_command(CreateTopic("t", 1, {}))))
    callers.append(caller)

    with pytest.raises(asyncio.CancelledError):
        await caller
    assert machine.topic("t") is not None


async def test_raft_compacts_by_bytes(member: tuple[RaftNode, StateMachine]) -> None:
    raft, machine = member
    assert (await raft.propose(encode_command(CreateTopic("t", 1, {})))).ok
    topic_id = raft.status().applied_index
    topic = machine.topic("t")
    assert topic is not None
    payload = os.urandom(64 * 1024)
    for _ in range(4):
        item = AppendItem("t", topic.created_index, 0, make_batch(payload), 1)
        assert (await raft.propose(encode_command(Append([item])))).ok

    await eventually(lambda: raft.status().snapshot_index > topic_id, "a snapshot is written")

    assert (raft.snapshot_path).is_file()
    # The snapshot holds metadata and entry references only, never the payloads.
    assert raft.snapshot_path.stat().st_size < 4096
    await eventually(lambda: raft.status().log_entries < 4, "the journal is compacted")


async def test_raft_propose_times_out_without_leader(tmp_path: Path) -> None:
    logs = LogManager(tmp_path / "lonely")
    logs.open_existing()
    settings = RaftSettings(
        self_address=f"127.0.0.1:{free_port()}",
        # A peer that never responds: one of two members is not a majority.
        peers=(f"127.0.0.1:{free_port()}",),
        raft_dir=tmp_path / "lonely" / "raft",
        password="s3cret",
        request_timeout_s=0.3,
        fsync=False,
        max_command_bytes=1024 * 1024,
    )
    raft = RaftNode(settings, StateMachine(logs), asyncio.get_running_loop())
    raft.start()
    try:
        with pytest.raises(RequestTimedOutError, match="not committed within 300 ms"):
            await raft.propose(encode_command(CreateTopic("t", 1, {})))
        assert not raft.is_ready()
    finally:
        await raft.stop()
        logs.close()


async def test_raft_journal_stores_bytes_uninflated(tmp_path: Path) -> None:
    node = Node(node_config(tmp_path / "data"))
    await node.start()
    await node.create_topic("t", 1, {})
    payload = os.urandom(64 * 1024)
    await node.produce("t", [ProduceRecord(None, payload)])
    await node.stop()

    largest = max(len(entry[0]) for entry in journal_entries(tmp_path / "data" / "raft"))

    # Pickle protocol 2 would store random bytes as latin-1 text, about 1.5x their size.
    assert len(payload) < largest < len(payload) * 1.05


async def test_raft_refuses_corrupt_snapshot(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    node = Node(node_config(data_dir))
    await node.start()
    await node.create_topic("t", 1, {})
    await node.produce("t", [ProduceRecord(None, b"v")])
    await node.compact()
    await node.stop()
    snapshot = data_dir / "raft" / "snapshot"
    damaged = bytearray(snapshot.read_bytes())
    damaged[-1] ^= 0xFF
    snapshot.write_bytes(bytes(damaged))

    again = Node(node_config(data_dir))
    with pytest.raises(StorageError, match=r"cannot load the Raft snapshot .* CRC-32C mismatch"):
        await again.start()
    await again.stop()

    assert (data_dir / "logs" / "t-0").is_dir()


async def test_raft_refuses_compacted_journal_without_snapshot(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    node = Node(node_config(data_dir))
    await node.start()
    await node.create_topic("t", 1, {})
    await node.compact()
    await node.produce("t", [ProduceRecord(None, b"v")])
    await node.stop()
    (data_dir / "raft" / "snapshot").unlink()

    with pytest.raises(StorageError, match="snapshot file it was compacted into is missing"):
        await Node(node_config(data_dir)).start()

    assert (data_dir / "logs" / "t-0").is_dir()


async def test_raft_refuses_logs_without_raft_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    node = Node(node_config(data_dir))
    await node.start()
    await node.create_topic("t", 1, {})
    await node.stop()
    shutil.rmtree(data_dir / "raft")
    (data_dir / "raft").mkdir()

    with pytest.raises(StorageError, match=r"contains partition logs but .* no Raft journal"):
        await Node(node_config(data_dir)).start()

    assert (data_dir / "logs" / "t-0").is_dir()


async def test_raft_bind_failure_rejected(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]

        with pytest.raises(InvalidConfigError, match=f"cannot bind the Raft address .*:{port}"):
            await Node(node_config(tmp_path / "data", raft_port=port)).start()


async def test_raft_finishes_interrupted_compaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class UntruncatedJournal(RaftJournal):
        """Behaves as if the process died after writing the snapshot, before truncating."""

        def deleteEntriesTo(self, entryTo: int) -> None:
            pass

    data_dir = tmp_path / "data"
    monkeypatch.setattr(journal_files_module, "RaftJournal", UntruncatedJournal)
    # The same Raft address again: the snapshot's member list replaces the configured one.
    config = node_config(data_dir)
    node = Node(config)
    await node.start()
    await node.create_topic("t", 1, {})
    await node.produce("t", [ProduceRecord(None, b"before")])
    await node.compact()
    await node.produce("t", [ProduceRecord(None, b"after")])
    await node.stop()
    assert journal_entries(data_dir / "raft")[0][1] == 1
    monkeypatch.undo()

    again = Node(config)
    await again.start()
    try:
        fetched = await again.fetch("t", 0, 0, 10, 1 << 20, 0)
        assert [record.value for record in fetched.records] == [b"before", b"after"]
    finally:
        await again.stop()
    assert journal_entries(data_dir / "raft")[0][1] > 1


@pytest.mark.skipif(
    importlib.util.find_spec("cryptography") is not None, reason="cryptography is installed"
)
async def test_raft_secret_needs_cryptography(tmp_path: Path) -> None:
    config = node_config(tmp_path / "data", peers=("127.0.0.1:1",), cluster_secret="s3cret")

    with pytest.raises(InvalidConfigError, match="pip install cryptography"):
        await Node(config).start()
