"""Build the Broker's ClusterStatus from the Raft adapter's status and the member registry.

PySyncObj identifies members only by Raft address. The member registry
(kaflow.cluster.registry) maps each address to a node id and an advertised
HTTP URL; a member that has not registered yet is listed with its Raft
address as node id and no HTTP address.
"""

from __future__ import annotations

from kaflow.broker import ClusterStatus, MemberStatus, RaftRole
from kaflow.cluster.registry import MemberInfo
from kaflow.config import NodeConfig
from kaflow.replication.raft_types import RaftStatus

__all__ = ["build_cluster_status"]


def build_cluster_status(
    config: NodeConfig,
    status: RaftStatus | None,
    ready: bool,
    failure: BaseException | None,
    registry: dict[str, MemberInfo] | None = None,
) -> ClusterStatus:
    """Return this node's view of the Raft group; ``status`` None means Raft has not started."""
    if status is None:
        return ClusterStatus(config.node_id, RaftRole.FOLLOWER, 0, None, 0, 0, False)
    registry = registry or {}

    def node_id_of(address: str) -> str:
        info = registry.get(address)
        return info.node_id if info is not None else address

    leader_id = None
    if status.leader is not None:
        leader_id = (
            config.node_id if status.leader == config.raft_address else node_id_of(status.leader)
        )
    members = [
        MemberStatus(
            node_id=config.node_id,
            raft_address=config.raft_address,
            http_address=config.advertised_http_url,
            role=status.role,
            connected=True,
        )
    ]
    for address in sorted(status.peers_connected):
        members.append(_peer_status(address, status, registry.get(address)))
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


def _peer_status(address: str, status: RaftStatus, info: MemberInfo | None) -> MemberStatus:
    lag = None
    role: RaftRole | None = None
    if status.leader == address:
        role = RaftRole.LEADER
    elif status.role is RaftRole.LEADER:
        # The leader's other members follow it; a follower knows only who leads.
        role = RaftRole.FOLLOWER
        if address in status.match_index:
            lag = max(0, status.commit_index - status.match_index[address])
    return MemberStatus(
        node_id=info.node_id if info is not None else address,
        raft_address=address,
        http_address=info.http_url if info is not None else None,
        role=role,
        connected=status.peers_connected.get(address, False),
        lag_entries=lag,
    )
