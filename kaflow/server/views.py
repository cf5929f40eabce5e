"""JSON-ready forms of the broker's values, as docs/http-api.md lists them."""

from __future__ import annotations

import enum
from pathlib import PurePath
from typing import Any

from kaflow.broker import (
    ClusterStatus,
    CommittedOffset,
    MemberStatus,
    OffsetCommit,
    OffsetLookup,
    TopicInfo,
)

__all__ = [
    "render_cluster",
    "render_committed",
    "render_lookup",
    "render_offset_commit",
    "render_topic",
]


def render_topic(topic: TopicInfo) -> dict[str, Any]:
    return {
        "name": topic.name,
        "partitions": [
            {
                "partition": partition.partition,
                "log_start_offset": partition.log_start_offset,
                "high_watermark": partition.high_watermark,
            }
            for partition in topic.partitions
        ],
        "config": dict(topic.config),
    }


def render_lookup(topic: str, lookup: OffsetLookup) -> dict[str, Any]:
    return {
        "topic": topic,
        "partition": lookup.partition,
        "offset": lookup.offset,
        "timestamp": lookup.timestamp,
    }


def render_offset_commit(commit: OffsetCommit) -> dict[str, Any]:
    return {
        "topic": commit.topic,
        "partition": commit.partition,
        "offset": commit.offset,
        "metadata": commit.metadata,
    }


def render_committed(committed: CommittedOffset) -> dict[str, Any]:
    return {
        "topic": committed.topic,
        "partition": committed.partition,
        "offset": committed.offset,
        "metadata": committed.metadata,
        "commit_timestamp": committed.commit_timestamp,
        "high_watermark": committed.high_watermark,
        "log_start_offset": committed.log_start_offset,
        "lag": committed.lag,
    }


def _render_member(member: MemberStatus) -> dict[str, Any]:
    return {
        "node_id": member.node_id,
        "raft_address": member.raft_address,
        "http_address": member.http_address,
        "role": None if member.role is None else member.role.value,
        "connected": member.connected,
        "lag_entries": member.lag_entries,
    }


def render_cluster(status: ClusterStatus) -> dict[str, Any]:
    return {
        "node_id": status.node_id,
        "role": status.role.value,
        "term": status.term,
        "leader_id": status.leader_id,
        "commit_index": status.commit_index,
        "applied_index": status.applied_index,
        "ready": status.ready,
        "members": [_render_member(member) for member in status.members],
        "extra": _json_safe(status.extra),
    }


def _json_safe(value: Any) -> Any:
    """Convert ``value`` to JSON types; ``extra`` is free-form diagnostics from the node."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        # JSON has no NaN or Infinity.
        return value if value == value and abs(value) != float("inf") else str(value)
    if isinstance(value, enum.Enum):
        return _json_safe(value.value)
    if isinstance(value, dict):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_json_safe(item) for item in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, PurePath):
        return str(value)
    return repr(value)
