"""Build the Broker's ClusterStatus from the Raft adapter's status snapshot.

PySyncObj identifies peers only by Raft address. A peer's ``node_id`` is
therefore its Raft address, and its HTTP address is None.
"""

from __future__ import annotations

from kaflow.broker import ClusterStatus, MemberStatus, RaftRole
from kaflow.config import NodeConfig
from kaflow.replication.raft_types import RaftStatus

__all__ = ["build_cluster_status"]


def build_cluster_status(
    config: NodeConfig, status: RaftStatus | None, ready: bool, failure: BaseException | None
) -> ClusterStatus:
    """Return this node's view of the Raft group; ``status`` None means Raft has not started."""
    if status is None:
        return ClusterStatus(config.node_id, RaftRole.FOLLOWER, 0, None, 0, 0, False)
    leader_id = config.node_id if status.leader == config.raft_address else status.leader
    members = [
        MemberStatus(
            node_id=config.node_id,
            raft_address=config.raft_address,
            http_address=config.http_address,
            role=status.role,
            connected=True,
        )
    ]
    for address in config.peers:
        lag = None
        if status.role is RaftRole.LEADER and address in status.match_index:
            lag = max(0, status.commit_index - status.match_index[address])
        members.append(
            MemberStatus(
                node_id=address,
                raft_address=address,
                http_address=None,
                # A peer's role is known only when it is the leader.
                role=RaftRole.LEADER if status.leader == address else None,
                connected=status.peers_connected.get(address, False),
                lag_entries=lag,
            )
        )
    return ClusterStatus(
        node_id=config.node_id,
        role=status.role,
        term=status.term,
        leader_id=leader_id,
        commit_index=status.commit_index,
        applied_index=status.applied_index,
        ready=ready,
        members=members,
        extra={
            "raft_log_entries": status.log_entries,
            "snapshot_index": status.snapshot_index,
            "failure": str(failure) if failure is not None else None,
        },
    )
