from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import crc32c
import msgpack
import pytest

from kaflow.replication.snapshot import (
    SnapshotFile,
    SnapshotFormatError,
    decode_snapshot,
    encode_snapshot,
    entry_ref,
    read_snapshot,
    write_snapshot,
)
from kaflow.replication.state import (
    GroupOffset,
    PartitionState,
    ReplicatedState,
    StateFormatError,
    TopicState,
    decode_state,
    encode_state,
)


def sample_state() -> ReplicatedState:
    state = ReplicatedState(index=42)
    state.topics["t"] = TopicState("t", 2, {"retention.ms": -1}, 3)
    state.partitions[("t", 0)] = PartitionState(5, 10)
    state.partitions[("t", 1)] = PartitionState(0, 0)
    state.groups["g"] = {("t", 0): GroupOffset(7, "meta", 1_700_000_000_000)}
    return state


def sample_snapshot() -> SnapshotFile:
    return SnapshotFile(
        state=encode_state(sample_state()),
        last=entry_ref(b"\x00last", 42, 3),
        prev=entry_ref(b"\x00prev", 41, 3),
        members=["127.0.0.1:9001", "127.0.0.1:9002"],
    )


def test_state_round_trip() -> None:
    assert decode_state(encode_state(sample_state())) == sample_state()


def test_state_encoding_is_order_independent() -> None:
    other = ReplicatedState(index=42)
    other.groups["g"] = {("t", 0): GroupOffset(7, "meta", 1_700_000_000_000)}
    other.partitions[("t", 1)] = PartitionState(0, 0)
    other.partitions[("t", 0)] = PartitionState(5, 10)
    other.topics["t"] = TopicState("t", 2, {"retention.ms": -1}, 3)

    assert encode_state(other) == encode_state(sample_state())


def test_state_damaged_byte_detected() -> None:
    data = bytearray(encode_state(sample_state()))
    data[10] ^= 0x01

    with pytest.raises(StateFormatError, match="CRC-32C mismatch"):
        decode_state(bytes(data))


def test_state_other_version_rejected() -> None:
    body = msgpack.packb({"v": 4, "index": 1, "topics": [], "partitions": [], "groups": []})
    data = struct.pack(">I", crc32c.crc32c(body)) + body

    with pytest.raises(StateFormatError, match="format version 4 is not supported"):
        decode_state(data)


def test_snapshot_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "snapshot"

    write_snapshot(path, sample_snapshot(), fsync=True)

    assert read_snapshot(path) == SnapshotFile(
        state=sample_snapshot().state,
        last=sample_snapshot().last,
        prev=sample_snapshot().prev,
        members=sorted(sample_snapshot().members),
    )
    assert path.read_bytes().startswith(b"KFLWSNAP")


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        (lambda data: data[:10], "shorter than its header"),
        (lambda data: b"NOTASNAP" + data[8:], "expected b'KFLWSNAP'"),
        (lambda data: data[:8] + b"\x00\x09" + data[10:], "format version 9 is not supported"),
        (lambda data: data[:-1] + bytes([data[-1] ^ 0xFF]), "CRC-32C mismatch"),
    ],
    ids=["truncated", "wrong-magic", "wrong-version", "flipped-byte"],
)
def test_snapshot_damage_detected(damage: Callable[[bytes], bytes], match: str) -> None:
    data = encode_snapshot(sample_snapshot())

    with pytest.raises(SnapshotFormatError, match=match):
        decode_snapshot(damage(data))


def test_entry_ref_matches_only_same_entry() -> None:
    ref = entry_ref(b"command", 5, 2)

    assert ref.matches(b"command", 5, 2)
    assert not ref.matches(b"commanD", 5, 2)
    assert not ref.matches(b"command", 6, 2)
    assert not ref.matches(b"command", 5, 3)
