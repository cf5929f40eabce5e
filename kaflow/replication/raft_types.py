"""Values the Raft adapter takes and reports: its settings and a status snapshot."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from kaflow.broker import RaftRole

__all__ = ["RaftSettings", "RaftStatus"]


@dataclass(frozen=True, slots=True)
class RaftSettings:
    """Settings of one Raft member; sizes in bytes, durations in seconds."""

    self_address: str
    peers: tuple[str, ...]
    raft_dir: Path
    password: str | None
    request_timeout_s: float
    # Force the snapshot file and the partition logs to disk at every compaction.
    fsync: bool
    # Largest command this member will propose; PySyncObj must never split an entry.
    max_command_bytes: int
    # Compact the Raft log after this many bytes of commands or this many entries.
    compaction_bytes: int = 64 * 1024 * 1024
    compaction_entries: int = 10_000


@dataclass(frozen=True, slots=True)
class RaftStatus:
    """A point-in-time view of this member, refreshed on the tick thread."""

    role: RaftRole
    term: int
    leader: str | None
    commit_index: int
    applied_index: int
    ready: bool
    log_entries: int
    snapshot_index: int
    # Peer Raft address -> whether a connection to it is up.
    peers_connected: dict[str, bool] = field(default_factory=dict)
    # Peer Raft address -> highest log index known to be replicated there (leader only).
    match_index: dict[str, int] = field(default_factory=dict)
