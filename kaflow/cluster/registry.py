"""The member registry: every member's node id and advertised HTTP URL, keyed by Raft address.

PySyncObj identifies members only by Raft address. Each node proposes a
``register_member`` command once it is ready, so every member learns every
other member's node id and HTTP URL through the Raft log, and a follower can
name the leader's URL. The registry is part of the replicated state and of
its snapshot, under the key ``members``: an array of
``[raft_address str, node_id str, http_url str]`` sorted by Raft address. A
snapshot without the key has an empty registry.

Registering is an upsert with one more rule: a node id names one member, so
registering it at a new Raft address drops the entry at the old address.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from kaflow.replication.commands import RegisterMember, UnregisterMember

__all__ = [
    "MemberInfo",
    "apply_registry_command",
    "decode_members",
    "encode_members",
    "register",
    "unregister",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class MemberInfo:
    """A registered member: its Raft address, node id and advertised HTTP URL."""

    raft_address: str
    node_id: str
    http_url: str


def register(members: dict[str, MemberInfo], info: MemberInfo) -> bool:
    """Add or replace ``info`` in ``members``; return False if it was already there unchanged."""
    if members.get(info.raft_address) == info:
        return False
    for address, existing in list(members.items()):
        if existing.node_id == info.node_id and address != info.raft_address:
            del members[address]
    members[info.raft_address] = info
    return True


def unregister(members: dict[str, MemberInfo], raft_address: str) -> bool:
    """Remove the entry at ``raft_address``; return False if there was none."""
    return members.pop(raft_address, None) is not None


def encode_members(members: dict[str, MemberInfo]) -> dict[str, Any]:
    """Return the snapshot body entries of the registry."""
    return {
        "members": [
            [info.raft_address, info.node_id, info.http_url] for _, info in sorted(members.items())
        ]
    }


def decode_members(body: dict[str, Any]) -> dict[str, MemberInfo]:
    """Read the registry from a snapshot body; raise ValueError for a malformed entry."""
    rows = body.get("members", [])
    if not isinstance(rows, list):
        raise ValueError(f"state field 'members' must be an array, got {rows!r}")
    members: dict[str, MemberInfo] = {}
    for row in rows:
        if (
            not isinstance(row, list)
            or len(row) != 3
            or not all(isinstance(value, str) for value in row)
        ):
            raise ValueError(f"member entry must be three strings, got {row!r}")
        members[row[0]] = MemberInfo(row[0], row[1], row[2])
    return members


def apply_registry_command(
    members: dict[str, MemberInfo], command: RegisterMember | UnregisterMember, index: int
) -> None:
    """Apply a register_member or unregister_member command to ``members`` in place."""
    if isinstance(command, RegisterMember):
        info = MemberInfo(command.raft_address, command.node_id, command.http_url)
        if register(members, info):
            logger.info(
                "member registered node_id=%s raft=%s http=%s index=%d",
                info.node_id,
                info.raft_address,
                info.http_url,
                index,
            )
    elif unregister(members, command.raft_address):
        logger.info("member unregistered raft=%s index=%d", command.raft_address, index)
