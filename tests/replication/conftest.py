from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kaflow.replication.commands import Command, encode_command
from kaflow.replication.results import CommandResult
from kaflow.replication.state_machine import StateMachine
from kaflow.storage.batch import BatchRecord, encode_batch
from kaflow.storage.manager import LogManager


def make_batch(*values: bytes, timestamp: int = 1_000) -> bytes:
    """Encode values as one batch with base offset 0, as a proposer does."""
    return encode_batch([BatchRecord(timestamp, None, value) for value in values])


class Applier:
    """Feeds commands to a state machine at consecutive Raft indexes, starting at 2."""

    def __init__(self, machine: StateMachine) -> None:
        self.machine = machine
        self.index = 1

    def __call__(self, command: Command) -> CommandResult:
        self.index += 1
        return self.machine.apply(encode_command(command), self.index)


@pytest.fixture
def logs(tmp_path: Path) -> Iterator[LogManager]:
    manager = LogManager(tmp_path / "node")
    manager.open_existing()
    yield manager
    manager.close()


@pytest.fixture
def machine(logs: LogManager) -> StateMachine:
    return StateMachine(logs)


@pytest.fixture
def apply(machine: StateMachine) -> Applier:
    return Applier(machine)
