"""Apply rules for consumer group commands, run by the state machine in log order.

Because these checks run at apply, in Raft log order, a member fenced by one
command cannot commit through a later one, and a delete or offset reset
cannot slip in after a member joined.

- ``group_update`` replaces the group record if its ``base_version`` is the
  stored record's version (0 when there is none). Otherwise apply rejects it
  with code :data:`VERSION_CONFLICT`, and the coordinator computes it again.
  The stored record's version becomes the command's Raft index.
- ``commit_offsets`` with ``member_id`` needs that member in the group, its
  current member epoch, and every partition owned by it (revoking included).
  Without ``member_id`` it is accepted only while the group has no members.
- ``group_delete`` and ``reset_offsets`` need a group without members.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Final

from kaflow.errors import (
    GroupNotEmptyError,
    StaleGenerationError,
    UnknownGroupError,
    UnknownGroupMemberError,
)
from kaflow.replication.commands import CommitOffsets, GroupDelete, GroupUpdate, ResetOffsets
from kaflow.replication.results import CommandResult, Rejection
from kaflow.replication.state import ReplicatedState

__all__ = [
    "VERSION_CONFLICT",
    "apply_group_delete",
    "apply_group_update",
    "check_member_commit",
    "check_no_members",
]

logger = logging.getLogger(__name__)

# Rejection code of a group_update computed from a record that has changed since.
VERSION_CONFLICT: Final = "group_version_conflict"


def apply_group_update(state: ReplicatedState, command: GroupUpdate, index: int) -> CommandResult:
    """Store the command's record, or reject it when it was computed from an older record."""
    stored = state.group_records.get(command.group)
    stored_version = stored.version if stored is not None else 0
    if command.base_version != stored_version:
        return CommandResult(
            Rejection(
                VERSION_CONFLICT,
                f"group {command.group!r} record is at version {stored_version}, the update "
                f"was computed from version {command.base_version}",
                {"group": command.group, "version": stored_version},
            )
        )
    state.group_records[command.group] = dataclasses.replace(
        command.record, group=command.group, version=index
    )
    return CommandResult()


def check_no_members(state: ReplicatedState, command: GroupDelete | ResetOffsets) -> None:
    """Raise GroupNotEmptyError while the group has members."""
    record = state.group_records.get(command.group)
    if record is not None and record.members:
        action = "deleted" if isinstance(command, GroupDelete) else "reset"
        raise GroupNotEmptyError(
            f"consumer group {command.group!r} has {len(record.members)} active member(s), "
            f"so its offsets cannot be {action}; stop its consumers (or wait for their "
            "session timeout) and try again",
            group=command.group,
            members=len(record.members),
        )


def apply_group_delete(state: ReplicatedState, command: GroupDelete) -> None:
    """Delete the group's record and offsets; raise if it has members or does not exist."""
    check_no_members(state, command)
    if command.group not in state.group_records and command.group not in state.groups:
        raise UnknownGroupError(f"consumer group {command.group!r} not found", group=command.group)
    state.group_records.pop(command.group, None)
    state.groups.pop(command.group, None)
    logger.info("group deleted group=%s", command.group)


def check_member_commit(state: ReplicatedState, command: CommitOffsets) -> None:
    """Raise unless the commit may be stored under the group's current membership."""
    record = state.group_records.get(command.group)
    members = record.members if record is not None else {}
    if command.member_id is None:
        if members:
            raise UnknownGroupMemberError(
                f"consumer group {command.group!r} has active members, so commits must carry "
                "member_id and member_epoch; commit as a member of the group or use another "
                "group id",
                group=command.group,
            )
        return

    member = members.get(command.member_id)
    if member is None:
        raise UnknownGroupMemberError(
            f"member {command.member_id!r} is not in consumer group {command.group!r}; the "
            "commit is not stored; join the group again with member_epoch 0",
            group=command.group,
            member_id=command.member_id,
        )
    if command.member_epoch != member.member_epoch:
        raise StaleGenerationError(
            f"commit from member {command.member_id!r} carries member_epoch "
            f"{command.member_epoch}, but its current epoch is {member.member_epoch}; the "
            "commit is not stored",
            group=command.group,
            member_id=command.member_id,
            member_epoch=command.member_epoch,
            current_member_epoch=member.member_epoch,
        )
    for entry in command.offsets:
        if (entry.topic, entry.partition) not in member.owned:
            raise StaleGenerationError(
                f"member {command.member_id!r} does not own partition {entry.topic}-"
                f"{entry.partition} in consumer group {command.group!r}; the commit is not "
                "stored",
                group=command.group,
                member_id=command.member_id,
                topic=entry.topic,
                partition=entry.partition,
            )
