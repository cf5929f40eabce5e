"""The adapter's guards for the Raft port, which carries pickled Python objects."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from pathlib import Path

import pytest

from kaflow.errors import InvalidConfigError
from kaflow.replication.raft import RaftNode
from kaflow.replication.state_machine import StateMachine
from kaflow.storage.manager import LogManager
from tests.replication.raft_group import RaftGroup


async def test_raft_peers_need_secret(tmp_path: Path) -> None:
    group = RaftGroup(tmp_path, 3)
    settings = dataclasses.replace(group.settings(0), password=None)
    logs = LogManager(tmp_path / "member")
    logs.open_existing()
    raft = RaftNode(settings, StateMachine(logs), asyncio.get_running_loop())
    try:
        with pytest.raises(InvalidConfigError, match="needs a cluster secret"):
            raft.start()
        assert not (settings.raft_dir / "journal").exists()
    finally:
        logs.close()


async def test_raft_binds_configured_address_only(tmp_path: Path) -> None:
    group = RaftGroup(tmp_path, 1).start()
    try:
        await group.wait_ready()
        port = int(group.addresses[0].rsplit(":", 1)[1])

        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
        # Another loopback address on the same port: bound to 0.0.0.0 it would accept.
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.2", port), timeout=5).close()
    finally:
        await group.close()
