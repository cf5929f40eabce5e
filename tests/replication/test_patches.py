"""The corrections to PySyncObj 0.3.17 in kaflow.replication.raft.patches and the transport.

Each test names the correction it depends on. To see a test fail without
it, set KAFLOW_TEST_WITHOUT_PATCH to that name (see tests/replication/raft_group.py).
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import threading
import time
import zlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pysyncobj.pickle
import pytest
from pysyncobj.poller import createPoller
from pysyncobj.tcp_connection import CONNECTION_STATE, TcpConnection

from kaflow.replication.raft import RaftTuning
from kaflow.replication.raft.patches import ChunkLabels, install_patches, pickled_size
from kaflow.replication.raft.tuning import build_conf
from tests.replication.raft_group import (
    DEADLINE_S,
    Member,
    RaftGroup,
    append_command,
    create_topic,
    eventually,
    without_patch,
)

__all__ = ["without_patch"]  # a fixture, used by name

RECORD_BYTES = 100 * 1024


@pytest.fixture
async def chunking_group(tmp_path: Path, without_patch: str | None) -> AsyncIterator[RaftGroup]:
    """Three members whose batch size forces every 100 KiB record into chunks."""
    tuning = RaftTuning(append_entries_batch_bytes=16 * 1024)
    group = RaftGroup(tmp_path, 3, tuning=tuning, request_timeout_s=5.0).start()
    try:
        await group.wait_ready()
        yield group
    finally:
        await group.close()


def test_patch_pickle_keeps_bytes_size(without_patch: str | None) -> None:
    """Needs pickle_protocol_5; protocol 2 stores random bytes as latin-1 text, 1.5x larger."""
    install_patches()
    payload = os.urandom(64 * 1024)

    size = pickled_size((payload, 7, 1))

    assert size < len(payload) * 1.01


def test_chunk_labels_mark_last_chunk() -> None:
    batch = 16 * 1024
    # Just below a chunk boundary, so the pickle framing pushes the entry past it.
    entry = (os.urandom(3 * batch - 5), 9, 2)
    pickled = pysyncobj.pickle.dumps(entry)
    labels = ChunkLabels(lambda index: entry if index == 9 else None)
    # PySyncObj labels 'finish' once pos + batch reaches the raw command length.
    sent = []
    for pos in range(0, len(pickled), batch):
        if pos == 0:
            label = "start"
        elif pos + batch >= len(entry[0]):
            label = "finish"
        else:
            label = "process"
        message = {"type": "append_entries", "transmission": label, "prevLogIdx": 8}
        message["data"] = pickled[pos : pos + batch]
        sent.append(labels.relabel("peer", message)["transmission"])

    assert sent == ["start"] + ["process"] * (len(sent) - 2) + ["finish"]
    assert labels.corrected >= 1


def test_chunk_labels_pass_other_messages() -> None:
    labels = ChunkLabels(lambda index: None)
    message = {"type": "next_node_idx", "success": True}

    assert labels.relabel("peer", message) is message


async def test_patch_chunked_entries_replicate(
    chunking_group: RaftGroup, caplog: pytest.LogCaptureFixture
) -> None:
    """Needs chunk_labels: without it a follower unpickles a truncated entry and its tick fails.

    PySyncObj's label is wrong only when a chunk boundary falls between the
    raw command length and the pickled entry length, so the record size is
    chosen from a probe entry to put one there. A failed tick skips the rest
    of that tick's messages and timers; here the follower recovers when the
    next chunk, also labelled finish, completes the entry, so the test
    counts the failed ticks.
    """
    batch = 16 * 1024
    leader = await chunking_group.wait_leader()
    created = await create_topic(leader, "t")
    assert (await leader.raft.propose(append_command("t", created, os.urandom(RECORD_BYTES)))).ok
    journal = leader.raft.journal
    assert journal is not None
    probe = journal[-1]
    raw, pickled = len(probe[0]), pickled_size(probe)
    assert pickled > raw
    # The next multiple of the batch size, minus half the pickle overhead.
    shift = (raw // batch + 1) * batch - (pickled - raw) // 2 - raw
    values = [os.urandom(RECORD_BYTES + shift) for _ in range(3)]

    for value in values:
        result = await leader.raft.propose(append_command("t", created, value))
        assert result.ok
        entry = journal[-1]
        assert len(entry[0]) // batch < pickled_size(entry) // batch

    await eventually(
        lambda: all(_end_offset(member) == len(values) + 1 for member in chunking_group.members),
        "every member applied the chunked entries",
    )
    for member in chunking_group.members:
        records = member.logs.get("t", 0).read_records(1, 1 << 24, 10)
        assert [record.value for record in records] == values
    failed_ticks = [record for record in caplog.records if record.name.startswith("pysyncobj")]
    assert failed_ticks == []


def _end_offset(member: Member) -> int:
    partition = member.machine.partition("t", 0)
    return partition.log_end_offset if partition is not None else -1


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    yield server
    server.close()


def test_patch_tcp_send_delivers_large_message(
    listener: socket.socket, without_patch: str | None
) -> None:
    """Needs tcp_send_rearm: a message larger than the socket buffer stalls until another send."""
    install_patches()
    poller = createPoller("auto")
    connection = TcpConnection(poller, sendBufferSize=16 * 1024, recvBufferSize=16 * 1024)
    assert connection.connect("127.0.0.1", listener.getsockname()[1])
    peer, _ = listener.accept()
    received = bytearray()
    reader = threading.Thread(target=_read_frame, args=(peer, received), daemon=True)
    # Ticks until the connection is up and its drained write buffer stopped write events.
    for _ in range(3):
        poller.poll(0.05)
    assert connection.state == CONNECTION_STATE.CONNECTED
    message = os.urandom(2 * 1024 * 1024)

    connection.send(message)
    reader.start()
    deadline = time.monotonic() + DEADLINE_S / 3
    while reader.is_alive() and time.monotonic() < deadline:
        poller.poll(0.01)
    connection.disconnect()
    peer.close()

    assert not reader.is_alive(), "the message did not arrive"
    assert pysyncobj.pickle.loads(zlib.decompress(bytes(received))) == message


def _read_frame(peer: socket.socket, received: bytearray) -> None:
    header = b""
    while len(header) < 4:
        header += peer.recv(4 - len(header))
    (length,) = struct.unpack("i", header)
    while len(received) < length:
        chunk = peer.recv(length - len(received))
        if not chunk:
            return
        received.extend(chunk)


async def test_large_records_replicate(tmp_path: Path, without_patch: str | None) -> None:
    """Three members with the default tuning carry 100 KiB random records, 8 per command."""
    group = RaftGroup(tmp_path, 3).start()
    try:
        await group.wait_ready()
        leader = await group.wait_leader()
        created = await create_topic(leader, "t")
        values = [os.urandom(RECORD_BYTES) for _ in range(24)]

        for start in range(0, len(values), 8):
            command = append_command("t", created, *values[start : start + 8])
            assert (await leader.raft.propose(command)).ok

        await eventually(
            lambda: all(_end_offset(member) == len(values) for member in group.members),
            "every member applied the records",
        )
        for member in group.members:
            records = member.logs.get("t", 0).read_records(0, 1 << 26, 100)
            assert [record.value for record in records] == values
    finally:
        await group.close()


def test_tuning_avoids_timer_latency(tmp_path: Path) -> None:
    """PySyncObj's defaults ship entries only every 0.1 s, about 100 ms per commit."""
    group = RaftGroup(tmp_path, 3)
    tuning = RaftTuning()

    conf = build_conf(group.settings(0), tuning, lambda *_: None, lambda _: None, tmp_path / "s")

    assert conf.appendEntriesUseBatch is False
    assert conf.autoTickPeriod <= 0.005
    assert conf.leaderFallbackTimeout <= 5.0
    # Every command up to the largest allowed fits in one entry, which is never chunked.
    assert conf.appendEntriesBatchSizeBytes > group.max_command_bytes
    assert conf.bindAddress == group.addresses[0]
    assert conf.password == group.secret


async def test_patch_followers_keep_acknowledged_entries(
    tmp_path: Path, without_patch: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    """Needs no_next_index_rewind; without it, pipelined appends make followers cut their logs."""
    group = RaftGroup(tmp_path, 3).start()
    try:
        await group.wait_ready()
        leader = await group.wait_leader()
        term = leader.raft.status().term
        created = await create_topic(leader, "t")
        caplog.set_level("INFO", logger="kaflow.replication.journal")

        for _ in range(10):
            commands = [append_command("t", created, os.urandom(512)) for _ in range(100)]
            results = await asyncio.gather(*(leader.raft.propose(c) for c in commands))
            assert all(result.ok for result in results)

        await eventually(
            lambda: all(_end_offset(member) == 1000 for member in group.members),
            "every member applied the records",
        )
        assert leader.raft.status().term == term, "a leader change makes truncation legitimate"
        messages = [record.getMessage() for record in caplog.records]
        assert [m for m in messages if "truncated Raft journal" in m] == []
    finally:
        await group.close()
