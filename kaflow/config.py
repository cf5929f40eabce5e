"""Node settings shared by the CLI, the node and the HTTP frontend."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DEFAULT_HTTP_PORT", "DEFAULT_RAFT_PORT", "FsyncPolicy", "NodeConfig"]

DEFAULT_HTTP_PORT = 8092
DEFAULT_RAFT_PORT = 8093


class FsyncPolicy(enum.Enum):
    """When the node forces written data to stable storage.

    ``ALWAYS`` fsyncs before a write is acknowledged, so acknowledged data
    survives power loss. ``NEVER`` leaves flushing to the kernel: data
    survives a process crash but the last seconds of writes can be lost on
    power loss or a kernel crash.
    """

    ALWAYS = "always"
    NEVER = "never"


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """Settings of one Kaflow node.

    Sizes are bytes and durations are milliseconds unless the name says
    otherwise.
    """

    data_dir: Path = Path("kaflow-data")
    node_id: str = "1"
    host: str = "127.0.0.1"
    port: int = DEFAULT_HTTP_PORT
    # Address PySyncObj binds for Raft traffic; defaults to host:raft_port.
    raft_host: str = "127.0.0.1"
    raft_port: int = DEFAULT_RAFT_PORT
    # Raft addresses ("host:port") of the other members; empty for one node.
    peers: tuple[str, ...] = ()
    # HTTP URL the other members and clients use to reach this node; None means http_address.
    advertised_url: str | None = None
    # Shared secret that authenticates and encrypts Raft traffic.
    cluster_secret: str | None = None
    fsync: FsyncPolicy = FsyncPolicy.ALWAYS
    # Largest HTTP request body accepted, in bytes.
    max_request_bytes: int = 8 * 1024 * 1024
    # Largest partition count one topic may have.
    max_partitions: int = 1000
    # Largest number of segment and index files kept open at once.
    max_open_files: int = 256
    # How long a write waits for Raft commit before failing with request_timed_out.
    request_timeout_ms: int = 10_000
    # How often the node checks retention.ms and retention.bytes.
    retention_check_interval_ms: int = 5 * 60 * 1000
    # The Raft log is compacted into a snapshot after this many bytes of commands or this
    # many entries, whichever comes first; PySyncObj keeps the uncompacted log in memory.
    raft_compaction_bytes: int = 64 * 1024 * 1024
    raft_compaction_entries: int = 10_000
    # Bounds of the session.timeout.ms a consumer group member may request (Kafka's
    # group.min.session.timeout.ms and group.max.session.timeout.ms).
    group_min_session_timeout_ms: int = 1000
    group_max_session_timeout_ms: int = 30 * 60 * 1000
    # heartbeat.interval.ms returned to group members; the coordinator lowers it to a
    # third of a member's session timeout when that is shorter.
    group_heartbeat_interval_ms: int = 3000

    @property
    def raft_address(self) -> str:
        return f"{self.raft_host}:{self.raft_port}"

    @property
    def http_address(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def advertised_http_url(self) -> str:
        """The URL this node registers in the member registry."""
        return self.advertised_url or self.http_address
