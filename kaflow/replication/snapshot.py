"""The Raft snapshot file (PySyncObj's "full dump"), written at log compaction.

PySyncObj needs three things back from a dump: the last two log entries
the snapshot covers and the cluster members. Kaflow stores, next to its own
state snapshot, only a reference to each of those two entries (index, term,
size and CRC-32C of the command) instead of the command bytes, because an
append command carries record payloads. On load, the Raft adapter takes the
entries from the Raft journal, which keeps them after compaction, and
checks them against these references.

File layout, version 1 (integers big-endian)::

    offset  size  field     meaning
    0       8     magic     b"KFLWSNAP"
    8       2     version   1
    10      4     crc       CRC-32C of every byte after this field
    14      n     body      msgpack map, below

Body keys:

``state``    bin, the state machine's snapshot (see kaflow.replication.state).
``last``     array ``[index, term, size, crc]`` of the last entry covered.
``prev``     the same for the entry before it.
``members``  array of str, the Raft addresses of every member.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import crc32c
import msgpack

__all__ = [
    "SNAPSHOT_FORMAT_VERSION",
    "EntryRef",
    "SnapshotFile",
    "SnapshotFormatError",
    "decode_snapshot",
    "encode_snapshot",
    "entry_ref",
    "read_snapshot",
    "write_snapshot",
]

SNAPSHOT_FORMAT_VERSION = 1
_MAGIC = b"KFLWSNAP"
_HEADER = struct.Struct(">8sHI")


class SnapshotFormatError(ValueError):
    """The file is not a snapshot this version can read."""


@dataclass(frozen=True, slots=True)
class EntryRef:
    """Identifies one Raft log entry without its command bytes."""

    index: int
    term: int
    size: int
    crc: int

    def matches(self, command: bytes, index: int, term: int) -> bool:
        return (
            index == self.index
            and term == self.term
            and len(command) == self.size
            and crc32c.crc32c(command) == self.crc
        )


def entry_ref(command: bytes, index: int, term: int) -> EntryRef:
    return EntryRef(index, term, len(command), crc32c.crc32c(command))


@dataclass(frozen=True, slots=True)
class SnapshotFile:
    state: bytes
    last: EntryRef
    prev: EntryRef
    members: list[str]


def encode_snapshot(snapshot: SnapshotFile) -> bytes:
    def ref(entry: EntryRef) -> list[int]:
        return [entry.index, entry.term, entry.size, entry.crc]

    body: bytes = msgpack.packb(
        {
            "state": snapshot.state,
            "last": ref(snapshot.last),
            "prev": ref(snapshot.prev),
            "members": sorted(snapshot.members),
        },
        use_bin_type=True,
    )
    return _HEADER.pack(_MAGIC, SNAPSHOT_FORMAT_VERSION, crc32c.crc32c(body)) + body


def _entry_ref(value: Any, name: str) -> EntryRef:
    if not (isinstance(value, list) and len(value) == 4 and all(isinstance(v, int) for v in value)):
        raise SnapshotFormatError(f"snapshot field {name!r} must be 4 integers, got {value!r}")
    return EntryRef(*value)


def decode_snapshot(data: bytes) -> SnapshotFile:
    """Decode a snapshot file's bytes; raise SnapshotFormatError if they are damaged."""
    if len(data) < _HEADER.size:
        raise SnapshotFormatError(f"snapshot of {len(data)} bytes is shorter than its header")
    magic, version, stored_crc = _HEADER.unpack_from(data)
    if magic != _MAGIC:
        raise SnapshotFormatError(f"snapshot starts with {magic!r}, expected {_MAGIC!r}")
    if version != SNAPSHOT_FORMAT_VERSION:
        raise SnapshotFormatError(
            f"snapshot format version {version} is not supported; this node reads version "
            f"{SNAPSHOT_FORMAT_VERSION}"
        )

    body = data[_HEADER.size :]
    actual_crc = crc32c.crc32c(body)
    if actual_crc != stored_crc:
        raise SnapshotFormatError(
            f"snapshot CRC-32C mismatch: stored {stored_crc:#010x}, computed {actual_crc:#010x}"
        )
    try:
        fields = msgpack.unpackb(body, raw=False)
    except (ValueError, msgpack.UnpackException) as exc:
        raise SnapshotFormatError(f"snapshot body is not valid msgpack: {exc}") from exc

    state = fields.get("state") if isinstance(fields, dict) else None
    members = fields.get("members") if isinstance(fields, dict) else None
    if not isinstance(state, bytes) or not (
        isinstance(members, list) and all(isinstance(m, str) for m in members)
    ):
        raise SnapshotFormatError("snapshot body lacks a 'state' blob or a 'members' list")
    return SnapshotFile(
        state,
        _entry_ref(fields.get("last"), "last"),
        _entry_ref(fields.get("prev"), "prev"),
        members,
    )


def write_snapshot(path: Path | str, snapshot: SnapshotFile, fsync: bool) -> None:
    """Write ``snapshot`` to ``path``; with ``fsync``, force it to disk before returning."""
    with open(path, "wb") as file:
        file.write(encode_snapshot(snapshot))
        file.flush()
        if fsync:
            os.fsync(file.fileno())


def read_snapshot(path: Path | str) -> SnapshotFile:
    with open(path, "rb") as file:
        return decode_snapshot(file.read())
