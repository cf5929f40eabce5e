"""Consumer group coordination endpoints: heartbeat, describe, delete, reset offsets.

Heartbeats, reads of committed offsets, deletes and executed offset resets
run on the Raft leader, as Kafka's group coordinator serves them: a
follower that is behind could otherwise hand a newly assigned member an
older committed offset. A follower forwards such a request once to the
leader (kaflow.cluster.forward) and returns the leader's response.
Describe and dry-run resets are served from this node's applied state.
docs/groups.md describes the protocol.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final

from aiohttp import web

from kaflow.broker import GroupDescription
from kaflow.cluster.forward import forward_to_leader, is_forwarded
from kaflow.cluster.handlers import ClusterAdmin
from kaflow.coordinator.admin import RESET_TARGETS
from kaflow.coordinator.model import TopicPartition, render_partitions
from kaflow.coordinator.reconcile import (
    JOIN_EPOCH,
    HeartbeatRequest,
    HeartbeatResponse,
)
from kaflow.coordinator.service import DEFAULT_REBALANCE_TIMEOUT_MS
from kaflow.errors import InvalidRequestError, NotLeaderError
from kaflow.groups import validate_group_name
from kaflow.server.context import BROKER_KEY, CONFIG_KEY
from kaflow.server.fields import INT32_MAX, INT64_MAX, Fields, expect_object
from kaflow.server.handlers.groups import optional_name
from kaflow.server.media import JSON_ONLY, json_response, read_body
from kaflow.server.params import Query
from kaflow.server.views import render_committed
from kaflow.topics import validate_topic_name

__all__ = ["committed_offsets", "delete_group", "describe_group", "heartbeat", "reset_offsets"]

_HEARTBEAT_FIELDS: Final = frozenset(
    {
        "member_id",
        "member_epoch",
        "group_instance_id",
        "topics",
        "session_timeout_ms",
        "rebalance_timeout_ms",
        "owned",
        "client_id",
    }
)
_RESET_FIELDS: Final = frozenset({"topic", "partitions", "to", "value", "execute"})
# Most topics one subscription or owned list may name.
_MAX_TOPICS: Final = 10_000


async def heartbeat(request: web.Request) -> web.Response:
    Query(request.query, ())
    group = validate_group_name(request.match_info["group"])
    body, _ = await read_body(request, JSON_ONLY)
    body = expect_object(body, "body")
    parsed = _parse_heartbeat(body)
    broker = request.app[BROKER_KEY]

    async def run() -> web.Response:
        return json_response(_render_heartbeat(await broker.heartbeat(group, parsed)))

    return await _on_leader(request, body, run)


async def committed_offsets(request: web.Request) -> web.Response:
    Query(request.query, ())
    group = validate_group_name(request.match_info["group"])
    broker = request.app[BROKER_KEY]

    async def run() -> web.Response:
        broker.require_group_coordinator()
        committed = broker.committed_offsets(group)
        return json_response({"group": group, "offsets": [render_committed(c) for c in committed]})

    return await _on_leader(request, None, run)


def _parse_heartbeat(body: dict[str, Any]) -> HeartbeatRequest:
    fields = Fields(body, "body", InvalidRequestError)
    fields.reject_unknown(_HEARTBEAT_FIELDS)
    member_epoch = fields.required_int("member_epoch", -2, INT32_MAX)

    member_id = optional_name(fields, "member_id")
    group_instance_id = optional_name(fields, "group_instance_id")
    client_id = optional_name(fields, "client_id")
    topics = _parse_topics(fields)
    if member_epoch == JOIN_EPOCH and topics is None:
        raise InvalidRequestError(
            "topics is required on join (member_epoch 0); send the topics to subscribe to",
            field="topics",
        )
    if member_epoch != JOIN_EPOCH and member_id is None:
        raise InvalidRequestError(
            f"member_id is required with member_epoch {member_epoch}; send the member_id from "
            "the join response, or member_epoch 0 to join",
            field="member_id",
        )

    session_timeout_ms = fields.optional_int("session_timeout_ms", None, 1, INT32_MAX)
    rebalance_timeout_ms = fields.optional_int("rebalance_timeout_ms", None, 1, INT32_MAX)
    owned = _parse_owned(fields)
    return HeartbeatRequest(
        member_id=member_id,
        member_epoch=member_epoch,
        group_instance_id=group_instance_id,
        topics=topics,
        session_timeout_ms=session_timeout_ms,
        rebalance_timeout_ms=rebalance_timeout_ms or DEFAULT_REBALANCE_TIMEOUT_MS,
        owned=owned,
        client_id=client_id,
    )


def _parse_topics(fields: Fields) -> tuple[str, ...] | None:
    if fields.obj.get("topics") is None:
        return None
    raw = fields.required_list("topics")
    if not raw or len(raw) > _MAX_TOPICS:
        raise InvalidRequestError(
            f"topics has {len(raw)} entries; subscribe to 1 to {_MAX_TOPICS} topics",
            field="topics",
        )
    topics = []
    for index, topic in enumerate(raw):
        if not isinstance(topic, str):
            raise InvalidRequestError(
                f"topics[{index}] must be a topic name string, got {topic!r}",
                field=f"topics[{index}]",
            )
        topics.append(validate_topic_name(topic))
    return tuple(topics)


def _parse_owned(fields: Fields) -> frozenset[TopicPartition] | None:
    if fields.obj.get("owned") is None:
        return None
    owned: set[TopicPartition] = set()
    for index, raw in enumerate(fields.required_list("owned")):
        path = f"owned[{index}]"
        entry = Fields(expect_object(raw, path), path, InvalidRequestError)
        entry.reject_unknown({"topic", "partitions"})
        topic = entry.required_str("topic")
        for position, number in enumerate(entry.required_list("partitions")):
            if not isinstance(number, int) or isinstance(number, bool) or number < 0:
                raise InvalidRequestError(
                    f"{path}.partitions[{position}] must be a partition number >= 0, "
                    f"got {number!r}",
                    field=f"{path}.partitions[{position}]",
                )
            owned.add((topic, number))
    return frozenset(owned)


def _render_heartbeat(response: HeartbeatResponse) -> dict[str, Any]:
    return {
        "group": response.group,
        "member_id": response.member_id,
        "member_epoch": response.member_epoch,
        "group_epoch": response.group_epoch,
        "heartbeat_interval_ms": response.heartbeat_interval_ms,
        "session_timeout_ms": response.session_timeout_ms,
        "assignment": render_partitions(response.assignment),
    }


async def describe_group(request: web.Request) -> web.Response:
    Query(request.query, ())
    group = validate_group_name(request.match_info["group"])
    return json_response(_render_description(request.app[BROKER_KEY].describe_group(group)))


def _render_description(description: GroupDescription) -> dict[str, Any]:
    return {
        "group": description.group,
        "state": description.state,
        "group_epoch": description.group_epoch,
        "members": [
            {
                "member_id": member.member_id,
                "group_instance_id": member.group_instance_id,
                "client_id": member.client_id,
                "member_epoch": member.member_epoch,
                "topics": member.topics,
                "assignment": render_partitions(member.assignment),
                "revoking": render_partitions(member.revoking),
                "session_timeout_ms": member.session_timeout_ms,
                "rebalance_timeout_ms": member.rebalance_timeout_ms,
                "last_heartbeat_ms_ago": member.last_heartbeat_ms_ago,
            }
            for member in description.members
        ],
        "offsets": [
            {
                "topic": offset.topic,
                "partition": offset.partition,
                "committed_offset": offset.committed_offset,
                "log_start_offset": offset.log_start_offset,
                "high_watermark": offset.high_watermark,
                "lag": offset.lag,
                "owner": offset.owner,
                "metadata": offset.metadata,
            }
            for offset in description.offsets
        ],
    }


async def delete_group(request: web.Request) -> web.Response:
    Query(request.query, ())
    group = validate_group_name(request.match_info["group"])
    broker = request.app[BROKER_KEY]

    async def run() -> web.Response:
        await broker.delete_group(group)
        return json_response({"group": group, "deleted": True})

    return await _on_leader(request, None, run)


async def reset_offsets(request: web.Request) -> web.Response:
    Query(request.query, ())
    group = validate_group_name(request.match_info["group"])
    body, _ = await read_body(request, JSON_ONLY)
    body = expect_object(body, "body")
    fields = Fields(body, "body", InvalidRequestError)
    fields.reject_unknown(_RESET_FIELDS)
    topic = validate_topic_name(fields.required_str("topic"))
    partitions = _parse_partitions(fields)
    to = fields.required_str("to")
    if to not in RESET_TARGETS:
        raise InvalidRequestError(
            f"to is {to!r}; use one of {', '.join(RESET_TARGETS)}", field="to", value=to
        )
    value = fields.optional_int("value", None, -INT64_MAX, INT64_MAX)
    execute = fields.obj.get("execute", False)
    if not isinstance(execute, bool):
        raise fields.wrong_type("execute", "a boolean")
    broker = request.app[BROKER_KEY]

    async def run() -> web.Response:
        plan = await broker.reset_group_offsets(group, topic, partitions, to, value, execute)
        return json_response(
            {
                "group": group,
                "dry_run": not execute,
                "offsets": [
                    {
                        "topic": reset.topic,
                        "partition": reset.partition,
                        "current_offset": reset.current_offset,
                        "new_offset": reset.new_offset,
                    }
                    for reset in plan
                ],
            }
        )

    if not execute:
        return await run()
    return await _on_leader(request, body, run)


def _parse_partitions(fields: Fields) -> list[int] | None:
    if fields.obj.get("partitions") is None:
        return None
    numbers = []
    for index, number in enumerate(fields.required_list("partitions")):
        if not isinstance(number, int) or isinstance(number, bool) or not 0 <= number <= INT32_MAX:
            raise InvalidRequestError(
                f"partitions[{index}] must be a partition number in 0..{INT32_MAX}, got {number!r}",
                field=f"partitions[{index}]",
            )
        numbers.append(number)
    if not numbers:
        raise InvalidRequestError(
            "partitions is an empty array; send partition numbers, or null for all partitions",
            field="partitions",
        )
    return numbers


async def _on_leader(
    request: web.Request,
    body: dict[str, Any] | None,
    run: Callable[[], Awaitable[web.Response]],
) -> web.Response:
    """Run here on the leader; on a follower forward the request once to the leader."""
    try:
        return await run()
    except NotLeaderError:
        broker = request.app[BROKER_KEY]
        if not isinstance(broker, ClusterAdmin) or is_forwarded(request):
            raise
        leader_url = broker.membership.leader_url()
        if leader_url is None:
            raise
        timeout_s = request.app[CONFIG_KEY].request_timeout_ms / 1000 + 5
        return await forward_to_leader(request, leader_url, broker.node_id, body, timeout_s)
