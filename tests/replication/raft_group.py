"""In-process Raft groups for adapter tests: RaftNode members on 127.0.0.1 with real files.

Every member runs in this process on the test's event loop, so a test can
revert a PySyncObj patch or wrap a transport for all of them at once.
Set ``KAFLOW_TEST_WITHOUT_PATCH`` to a name from :data:`DISABLERS` to run a
test with that correction turned off and watch it fail.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pysyncobj.transport import TCPTransport

from kaflow.replication.commands import Append, AppendItem, CreateTopic, encode_command
from kaflow.replication.raft import RaftNode, RaftSettings, RaftTuning, patches
from kaflow.replication.raft import member as member_module
from kaflow.replication.state_machine import StateMachine
from kaflow.storage.manager import LogManager
from tests.harness import free_port
from tests.replication.conftest import make_batch

DEADLINE_S = 30.0
DISABLE_VARIABLE = "KAFLOW_TEST_WITHOUT_PATCH"


def _disable_sync_before_send(monkeypatch: pytest.MonkeyPatch) -> None:
    def send_without_sync(self: Any, node: Any, message: Any) -> bool:
        if isinstance(message, dict):
            message = self.chunk_labels.relabel(node, message)
        return bool(TCPTransport.send(self, node, message))

    monkeypatch.setattr(member_module.DurableTransport, "send", send_without_sync)


def _disable_sync_before_tick(monkeypatch: pytest.MonkeyPatch) -> None:
    def tick_without_sync(self: Any, timeToWait: float = 0.0) -> None:
        self.kaflow_before_tick()
        super(member_module.MemberSyncObj, self)._onTick(timeToWait)

    monkeypatch.setattr(member_module.MemberSyncObj, "_onTick", tick_without_sync)


def _disable_chunk_labels(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(patches.ChunkLabels, "relabel", lambda self, node, message: message)


def _reverter(name: str) -> Callable[[pytest.MonkeyPatch], None]:
    patch = next(patch for patch in patches.PATCHES if patch.name == name)

    def disable(monkeypatch: pytest.MonkeyPatch) -> None:
        # Installed first, so that RaftNode.start() finds them installed and leaves them.
        patches.install_patches()
        patch.revert()
        _RESTORE.append(patch.apply)

    return disable


_RESTORE: list[Callable[[], None]] = []

DISABLERS: dict[str, Callable[[pytest.MonkeyPatch], None]] = {
    "pickle_protocol_5": _reverter("pickle_protocol_5"),
    "tcp_send_rearm": _reverter("tcp_send_rearm"),
    "no_next_index_rewind": _reverter("no_next_index_rewind"),
    "chunk_labels": _disable_chunk_labels,
    "sync_before_send": _disable_sync_before_send,
    "sync_before_tick": _disable_sync_before_tick,
}


@pytest.fixture
def without_patch(monkeypatch: pytest.MonkeyPatch) -> Iterator[str | None]:
    """Turn off the correction named by KAFLOW_TEST_WITHOUT_PATCH for this test, if set."""
    name = os.environ.get(DISABLE_VARIABLE) or None
    if name is not None:
        if name not in DISABLERS:
            raise pytest.UsageError(f"{DISABLE_VARIABLE}={name!r}: use one of {sorted(DISABLERS)}")
        DISABLERS[name](monkeypatch)
    yield name
    while _RESTORE:
        _RESTORE.pop()()


@dataclass
class Member:
    """One in-process Raft member and its storage."""

    raft: RaftNode
    machine: StateMachine
    logs: LogManager
    address: str
    stopped: bool = False


@dataclass
class RaftGroup:
    """Members of one Raft group started on the running event loop."""

    root: Path
    size: int
    tuning: RaftTuning = field(default_factory=RaftTuning)
    fsync: bool = True
    request_timeout_s: float = 10.0
    max_command_bytes: int = 4 * 1024 * 1024
    members: list[Member] = field(default_factory=list)
    secret: str = field(default_factory=lambda: secrets.token_hex(8))

    def __post_init__(self) -> None:
        self.addresses = [f"127.0.0.1:{free_port()}" for _ in range(self.size)]

    def settings(self, number: int) -> RaftSettings:
        address = self.addresses[number]
        return RaftSettings(
            self_address=address,
            peers=tuple(other for other in self.addresses if other != address),
            raft_dir=self.root / f"member-{number}" / "raft",
            password=self.secret if self.size > 1 else None,
            request_timeout_s=self.request_timeout_s,
            fsync=self.fsync,
            max_command_bytes=self.max_command_bytes,
        )

    def start(self) -> RaftGroup:
        loop = asyncio.get_running_loop()
        for number in range(self.size):
            logs = LogManager(self.root / f"member-{number}")
            logs.open_existing()
            machine = StateMachine(logs)
            raft = RaftNode(self.settings(number), machine, loop, self.tuning)
            raft.start()
            self.members.append(Member(raft, machine, logs, self.addresses[number]))
        return self

    async def wait_ready(self) -> None:
        await asyncio.wait_for(
            asyncio.gather(*(member.raft.wait_ready() for member in self.members)), DEADLINE_S
        )

    def leader(self) -> Member | None:
        leaders = [member for member in self.members if member.raft.is_leader()]
        return leaders[0] if len(leaders) == 1 else None

    async def wait_leader(self) -> Member:
        await eventually(lambda: self.leader() is not None, "one member is the Raft leader")
        leader = self.leader()
        assert leader is not None
        return leader

    def followers(self) -> list[Member]:
        return [member for member in self.members if not member.raft.is_leader()]

    async def stop_member(self, member: Member) -> None:
        if member.stopped:
            return
        member.stopped = True
        await member.raft.stop()
        member.logs.close()

    async def close(self) -> None:
        for member in self.members:
            await self.stop_member(member)


async def eventually(
    predicate: Callable[[], bool], message: str, timeout_s: float = DEADLINE_S
) -> None:
    """Poll ``predicate`` on the event loop until it holds; fail after ``timeout_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s: {message}")
        await asyncio.sleep(0.01)


async def create_topic(member: Member, name: str) -> int:
    """Create a one-partition topic through ``member``; return its creation index."""
    result = await member.raft.propose(encode_command(CreateTopic(name, 1, {})))
    assert result.ok, result
    topic = member.machine.topic(name)
    assert topic is not None
    return topic.created_index


def append_command(topic: str, created_index: int, *values: bytes) -> bytes:
    item = AppendItem(topic, created_index, 0, make_batch(*values), len(values))
    return encode_command(Append([item]))
