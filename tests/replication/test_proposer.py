"""GroupCommitProposer against a real state machine; only the Raft round trip is replaced.

The stand-in for Raft applies each command to a StateMachine on real storage,
but can hold a command "in flight" until the test opens a gate, which makes
coalescing observable without timing assumptions.
"""

from __future__ import annotations

import asyncio

import pytest

from kaflow.errors import RequestTimedOutError, UnknownTopicError
from kaflow.replication.commands import Append, AppendItem, CreateTopic, decode_command
from kaflow.replication.proposer import GroupCommitProposer
from kaflow.replication.results import AppendedBatch, CommandResult, Rejection
from kaflow.replication.state_machine import StateMachine
from tests.replication.conftest import Applier, make_batch


class GatedRaft:
    """Applies proposed commands to a state machine once its gate is open."""

    def __init__(self, apply: Applier) -> None:
        self.apply = apply
        self.gate = asyncio.Event()
        self.gate.set()
        self.commands: list[Append] = []
        self.fail_next: BaseException | None = None

    async def propose(self, data: bytes) -> CommandResult:
        command = decode_command(data)
        assert isinstance(command, Append)
        self.commands.append(command)
        await self.gate.wait()
        if self.fail_next is not None:
            error, self.fail_next = self.fail_next, None
            raise error
        return self.apply(command)


@pytest.fixture
def topic_id(apply: Applier) -> int:
    assert apply(CreateTopic("t", 2, {})).ok
    return apply.index


@pytest.fixture
def raft(apply: Applier) -> GatedRaft:
    return GatedRaft(apply)


def item(topic_id: int, *values: bytes, partition: int = 0) -> AppendItem:
    return AppendItem("t", topic_id, partition, make_batch(*values), len(values))


async def wait_for_commands(raft: GatedRaft, count: int) -> None:
    async with asyncio.timeout(5):
        while len(raft.commands) < count:
            await asyncio.sleep(0)


async def test_proposer_idle_request_proposed_alone(raft: GatedRaft, topic_id: int) -> None:
    proposer = GroupCommitProposer(raft.propose)

    for index in range(3):
        outcomes = await proposer.append([item(topic_id, b"v%d" % index)])
        assert outcomes == [AppendedBatch(index, index)]

    assert len(raft.commands) == 3
    assert proposer.stats.commands == 3


async def test_proposer_first_request_not_delayed(raft: GatedRaft, topic_id: int) -> None:
    proposer = GroupCommitProposer(raft.propose)
    raft.gate.clear()

    task = asyncio.create_task(proposer.append([item(topic_id, b"a")]))
    await wait_for_commands(raft, 1)

    assert not task.done()
    raft.gate.set()
    assert await task == [AppendedBatch(0, 0)]


async def test_proposer_coalesces_while_in_flight(
    raft: GatedRaft, topic_id: int, machine: StateMachine
) -> None:
    proposer = GroupCommitProposer(raft.propose)
    raft.gate.clear()
    first = asyncio.create_task(proposer.append([item(topic_id, b"first")]))
    await wait_for_commands(raft, 1)

    waiting = [
        asyncio.create_task(proposer.append([item(topic_id, b"r%d-a" % n, b"r%d-b" % n)]))
        for n in range(10)
    ]
    await asyncio.sleep(0)
    assert len(raft.commands) == 1
    raft.gate.set()
    results = await asyncio.gather(first, *waiting)

    assert len(raft.commands) == 2
    assert len(raft.commands[1].items) == 10
    assert results[0] == [AppendedBatch(0, 0)]
    assert results[1:] == [[AppendedBatch(1 + 2 * n, 2 + 2 * n)] for n in range(10)]
    partition = machine.partition("t", 0)
    assert partition is not None and partition.log_end_offset == 21


async def test_proposer_returns_each_request_its_items(raft: GatedRaft, topic_id: int) -> None:
    proposer = GroupCommitProposer(raft.propose)
    raft.gate.clear()
    blocker = asyncio.create_task(proposer.append([item(topic_id, b"x", partition=1)]))
    await wait_for_commands(raft, 1)

    two = asyncio.create_task(
        proposer.append([item(topic_id, b"a", partition=0), item(topic_id, b"b", partition=1)])
    )
    one = asyncio.create_task(proposer.append([item(topic_id, b"c", b"d", partition=0)]))
    raft.gate.set()

    assert await blocker == [AppendedBatch(0, 0)]
    assert await two == [AppendedBatch(0, 0), AppendedBatch(1, 1)]
    assert await one == [AppendedBatch(1, 2)]


async def test_proposer_caps_command_bytes(raft: GatedRaft, topic_id: int) -> None:
    payload = b"p" * 400
    size = len(item(topic_id, payload).batch)
    proposer = GroupCommitProposer(raft.propose, max_command_bytes=3 * size)
    raft.gate.clear()
    first = asyncio.create_task(proposer.append([item(topic_id, payload)]))
    await wait_for_commands(raft, 1)

    rest = [asyncio.create_task(proposer.append([item(topic_id, payload)])) for _ in range(7)]
    await asyncio.sleep(0)
    raft.gate.set()
    await asyncio.gather(first, *rest)

    assert [len(command.items) for command in raft.commands] == [1, 3, 3, 1]


async def test_proposer_oversized_request_goes_alone(raft: GatedRaft, topic_id: int) -> None:
    proposer = GroupCommitProposer(raft.propose, max_command_bytes=200)
    raft.gate.clear()
    first = asyncio.create_task(proposer.append([item(topic_id, b"s")]))
    await wait_for_commands(raft, 1)

    big = asyncio.create_task(proposer.append([item(topic_id, b"B" * 1000)]))
    small = asyncio.create_task(proposer.append([item(topic_id, b"s")]))
    await asyncio.sleep(0)
    raft.gate.set()

    assert await first == [AppendedBatch(0, 0)]
    assert await big == [AppendedBatch(1, 1)]
    assert await small == [AppendedBatch(2, 2)]
    assert [len(command.items) for command in raft.commands] == [1, 1, 1]


async def test_proposer_error_fails_whole_command(raft: GatedRaft, topic_id: int) -> None:
    proposer = GroupCommitProposer(raft.propose)
    raft.gate.clear()
    first = asyncio.create_task(proposer.append([item(topic_id, b"a")]))
    await wait_for_commands(raft, 1)
    raft.fail_next = RequestTimedOutError("timed out")
    raft.gate.set()

    with pytest.raises(RequestTimedOutError):
        await first
    assert await proposer.append([item(topic_id, b"b")]) == [AppendedBatch(0, 0)]


async def test_proposer_item_rejection_reaches_its_request(raft: GatedRaft, topic_id: int) -> None:
    proposer = GroupCommitProposer(raft.propose)

    outcomes = await proposer.append(
        [item(topic_id + 100, b"stale"), item(topic_id, b"ok", partition=1)]
    )

    assert isinstance(outcomes[0], Rejection)
    assert isinstance(outcomes[0].to_error(), UnknownTopicError)
    assert outcomes[1] == AppendedBatch(0, 0)


async def test_proposer_skips_cancelled_request(raft: GatedRaft, topic_id: int) -> None:
    proposer = GroupCommitProposer(raft.propose)
    raft.gate.clear()
    first = asyncio.create_task(proposer.append([item(topic_id, b"a")]))
    await wait_for_commands(raft, 1)
    abandoned = asyncio.create_task(proposer.append([item(topic_id, b"never")]))
    kept = asyncio.create_task(proposer.append([item(topic_id, b"b")]))
    await asyncio.sleep(0)

    abandoned.cancel()
    raft.gate.set()

    assert await first == [AppendedBatch(0, 0)]
    assert await kept == [AppendedBatch(1, 1)]
    assert [len(command.items) for command in raft.commands] == [1, 1]


async def test_proposer_close_fails_pending(raft: GatedRaft, topic_id: int) -> None:
    proposer = GroupCommitProposer(raft.propose)
    raft.gate.clear()
    first = asyncio.create_task(proposer.append([item(topic_id, b"a")]))
    await wait_for_commands(raft, 1)
    pending = asyncio.create_task(proposer.append([item(topic_id, b"b")]))
    await asyncio.sleep(0)

    proposer.close(RuntimeError("stopping"))
    raft.gate.set()

    with pytest.raises(RuntimeError, match="stopping"):
        await pending
    assert await first == [AppendedBatch(0, 0)]
    assert len(raft.commands) == 1
