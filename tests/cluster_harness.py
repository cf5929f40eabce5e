"""Start a cluster of real `kaflow serve` processes on 127.0.0.1 for tests.

:class:`ClusterProcess` gives each member a data directory under the test's
directory, a free HTTP port and a free Raft port, the other members as
peers, and one shared cluster secret. Members can be stopped, killed and
restarted one by one; the leader is found through ``GET /v1/cluster``.
Each member's output goes to ``<name>.log`` next to its data directory.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from tests.harness import HttpError, NodeProcess, free_port, http_json, wait_until

__all__ = ["ClusterMember", "ClusterProcess"]

DEFAULT_TIMEOUT_S = 60.0


class ClusterMember(NodeProcess):
    """One cluster member: a NodeProcess with fixed HTTP and Raft ports and peers."""

    def __init__(
        self,
        data_dir: Path,
        node_id: str,
        http_port: int,
        raft_port: int,
        peers: list[str],
        secret: str,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        super().__init__(
            data_dir, node_id, extra_args=extra_args, env={"KAFLOW_CLUSTER_SECRET": secret}
        )
        self.http_port = http_port
        self.raft_port = raft_port
        self.peers = peers
        self.url = f"http://127.0.0.1:{http_port}"

    @property
    def raft_address(self) -> str:
        return f"127.0.0.1:{self.raft_port}"

    def command(self) -> list[str]:
        command = super().command()
        command[command.index("--port") + 1] = str(self.http_port)
        for peer in self.peers:
            command += ["--peer", peer]
        return command

    def spawn(self) -> None:
        """Start the process without waiting for it to become ready."""
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self.ready_file.unlink(missing_ok=True)
        env = dict(os.environ)
        env.update(self.env or {})
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, env=env
            )

    def wait_started(self, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        """Wait until the ready file exists and /v1/health/ready returns 200."""
        wait_until(
            self._ready_file_written, timeout, f"node {self.node_id} ready file\n{self.tail_log()}"
        )
        wait_until(
            self.is_ready, timeout, f"node {self.node_id} /v1/health/ready\n{self.tail_log()}"
        )

    def start(self, timeout: float = DEFAULT_TIMEOUT_S) -> NodeProcess:
        self.spawn()
        self.wait_started(timeout)
        return self

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def cluster(self, timeout: float = 5.0) -> dict[str, Any]:
        """Return this member's GET /v1/cluster body."""
        body: dict[str, Any] = self.get("/v1/cluster", timeout=timeout)
        return body

    def post(self, path: str, body: Any, timeout: float = 60.0) -> Any:
        # Membership changes may retry for up to 15 s on the leader, plus a forward.
        return http_json("POST", self.url + path, body, timeout=timeout)[1]

    def delete(self, path: str, timeout: float = 60.0) -> Any:
        return http_json("DELETE", self.url + path, timeout=timeout)[1]


class ClusterProcess:
    """N `kaflow serve` processes forming one Raft group on 127.0.0.1."""

    def __init__(self, root: Path, size: int = 3, extra_args: tuple[str, ...] = ()) -> None:
        self.root = root
        self.secret = secrets.token_hex(16)
        self.extra_args = extra_args
        ports = [(free_port(), free_port()) for _ in range(size)]
        raft_addresses = [f"127.0.0.1:{raft}" for _, raft in ports]
        self.members: list[ClusterMember] = []
        for index, (http_port, raft_port) in enumerate(ports):
            peers = [address for i, address in enumerate(raft_addresses) if i != index]
            self.members.append(self._member(str(index + 1), http_port, raft_port, peers))

    def _member(
        self, node_id: str, http_port: int, raft_port: int, peers: list[str]
    ) -> ClusterMember:
        return ClusterMember(
            self.root / f"node-{node_id}",
            node_id,
            http_port,
            raft_port,
            peers,
            self.secret,
            self.extra_args,
        )

    def new_member(self) -> ClusterMember:
        """Build (but do not start) one more member whose peers are the current members."""
        node_id = str(len(self.members) + 1)
        peers = [member.raft_address for member in self.members]
        member = self._member(node_id, free_port(), free_port(), peers)
        self.members.append(member)
        return member

    # Lifecycle.

    def start(self, timeout: float = DEFAULT_TIMEOUT_S) -> ClusterProcess:
        """Start every member at once and wait until each is ready."""
        for member in self.members:
            self._spawn(member)
        for member in self.members:
            member.wait_started(timeout)
        return self

    def _spawn(self, member: ClusterMember) -> None:
        member.spawn()

    def stop(self, member: ClusterMember) -> int:
        return member.stop()

    def kill(self, member: ClusterMember) -> None:
        member.kill()

    def restart(self, member: ClusterMember, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        if member.is_running():
            member.stop()
        member.spawn()
        member.wait_started(timeout)

    def kill_all(self) -> None:
        for member in self.members:
            if member.is_running():
                assert member.process is not None
                member.process.send_signal(signal.SIGKILL)
        for member in self.members:
            member.kill()

    def close(self) -> None:
        """Kill every member that still runs; for test teardown."""
        for member in self.members:
            member.kill()

    # Queries.

    def running(self) -> list[ClusterMember]:
        return [member for member in self.members if member.is_running()]

    def by_raft_address(self, address: str) -> ClusterMember:
        for member in self.members:
            if member.raft_address == address:
                return member
        raise AssertionError(f"no member has Raft address {address}")

    def leader_address(self, among: Iterable[ClusterMember] | None = None) -> str | None:
        """Return the leader's Raft address if the given members agree on one that leads."""
        views: set[str | None] = set()
        for member in among if among is not None else self.running():
            try:
                status = member.cluster()
            except (HttpError, OSError):
                return None
            leader_id = status["leader_id"]
            leader = next(
                (m["raft_address"] for m in status["members"] if m["node_id"] == leader_id),
                None,
            )
            views.add(leader)
        if len(views) != 1:
            return None
        return views.pop()

    def wait_for_leader(
        self, timeout: float = DEFAULT_TIMEOUT_S, among: list[ClusterMember] | None = None
    ) -> ClusterMember:
        """Wait until the running members agree on a leader that is ready; return it."""
        found: list[ClusterMember] = []

        def agreed() -> bool:
            address = self.leader_address(among)
            if address is None:
                return False
            leader = self.by_raft_address(address)
            if not leader.is_running() or not leader.is_ready():
                return False
            found[:] = [leader]
            return True

        wait_until(agreed, timeout, "the running members to agree on a ready leader", 0.1)
        return found[0]

    def followers(self) -> list[ClusterMember]:
        leader = self.wait_for_leader()
        return [member for member in self.running() if member is not leader]

    def wait_registered(self, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        """Wait until every running member lists every member with an HTTP address."""

        def registered() -> bool:
            for member in self.running():
                try:
                    members = member.cluster()["members"]
                except (HttpError, OSError):
                    return False
                if len(members) != len(self.running()) or any(
                    m["http_address"] is None for m in members
                ):
                    return False
            return True

        wait_until(registered, timeout, "every member to be registered on every member", 0.1)


def wait_for(predicate: Callable[[], bool], message: str, timeout: float = 60.0) -> None:
    """Poll ``predicate`` with the cluster tests' default deadline."""
    wait_until(predicate, timeout, message, 0.1)
