"""HTTP endpoints that change the cluster: add and remove members, transfer leadership.

Each one runs on the leader. On a follower that has the leader's
advertised URL the request is forwarded there (kaflow.cluster.forward);
otherwise the response is the retriable not_leader or leader_not_available
error. docs/http-api.md describes the bodies.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final, Protocol, runtime_checkable

from aiohttp import web

from kaflow.cluster.forward import forward_to_leader, is_forwarded
from kaflow.cluster.membership import DEFAULT_CHANGE_TIMEOUT_S, MemberChange, MembershipManager
from kaflow.errors import MethodNotAllowedError, NotLeaderError
from kaflow.server.context import BROKER_KEY
from kaflow.server.fields import Fields, expect_object
from kaflow.server.media import JSON_ONLY, json_response, read_body
from kaflow.server.params import Query

__all__ = ["ClusterAdmin", "add_member", "remove_member", "transfer_leader"]

_ADD_FIELDS: Final = frozenset({"raft_address", "timeout_ms"})
_TRANSFER_FIELDS: Final = frozenset({"target", "timeout_ms"})
# Maximum timeout_ms a request may set.
_MAX_TIMEOUT_MS: Final = 600_000


@runtime_checkable
class ClusterAdmin(Protocol):
    """A broker whose membership can change at runtime; kaflow.node.Node is one."""

    @property
    def node_id(self) -> str: ...

    @property
    def membership(self) -> MembershipManager: ...


async def add_member(request: web.Request) -> web.Response:
    Query(request.query, ())
    body = await _read_object(request, required=True)
    fields = Fields(body, "body")
    fields.reject_unknown(_ADD_FIELDS)
    raft_address = fields.required_str("raft_address")
    timeout_s = _timeout_s(fields)

    async def change(manager: MembershipManager) -> web.Response:
        result = await manager.add_member(raft_address, timeout_s)
        return json_response(_render_change(result, manager), status=201)

    return await _on_leader(request, body, change)


async def remove_member(request: web.Request) -> web.Response:
    query = Query(request.query, ("timeout_ms",))
    member = request.match_info["member"]
    timeout_ms = query.integer(
        "timeout_ms", round(DEFAULT_CHANGE_TIMEOUT_S * 1000), 1, _MAX_TIMEOUT_MS
    )

    async def change(manager: MembershipManager) -> web.Response:
        result = await manager.remove_member(member, timeout_ms / 1000)
        return json_response(_render_change(result, manager))

    return await _on_leader(request, None, change)


async def transfer_leader(request: web.Request) -> web.Response:
    Query(request.query, ())
    body = await _read_object(request, required=False)
    fields = Fields(body, "body")
    fields.reject_unknown(_TRANSFER_FIELDS)
    target = fields.optional_str("target", "") or None
    timeout_s = _timeout_s(fields)

    async def change(manager: MembershipManager) -> web.Response:
        leader = await manager.transfer_leadership(target, timeout_s)
        info = manager.registry().get(leader)
        return json_response(
            {
                "leader_raft_address": leader,
                "leader_id": info.node_id if info is not None else None,
                "leader_http_address": info.http_url if info is not None else None,
            }
        )

    return await _on_leader(request, body or None, change)


def _admin(request: web.Request) -> ClusterAdmin:
    broker = request.app[BROKER_KEY]
    if not isinstance(broker, ClusterAdmin):
        raise MethodNotAllowedError(
            f"{request.method} {request.path} needs a broker with cluster membership",
            method=request.method,
            path=request.path,
        )
    return broker


async def _on_leader(
    request: web.Request,
    body: dict[str, Any] | None,
    change: Callable[[MembershipManager], Awaitable[web.Response]],
) -> web.Response:
    """Run ``change`` here if this node leads, else forward the request once to the leader."""
    admin = _admin(request)
    manager = admin.membership
    try:
        return await change(manager)
    except NotLeaderError:
        leader_url = manager.leader_url()
        if leader_url is None or is_forwarded(request):
            raise
        timeout_s = DEFAULT_CHANGE_TIMEOUT_S * 2 + 5
        return await forward_to_leader(request, leader_url, admin.node_id, body, timeout_s)


async def _read_object(request: web.Request, *, required: bool) -> dict[str, Any]:
    if not required and not request.body_exists:
        return {}
    body, _ = await read_body(request, JSON_ONLY)
    return expect_object(body, "body")


def _timeout_s(fields: Fields) -> float:
    default_ms = round(DEFAULT_CHANGE_TIMEOUT_S * 1000)
    timeout_ms = fields.optional_int("timeout_ms", default_ms, 1, _MAX_TIMEOUT_MS)
    return (timeout_ms or default_ms) / 1000


def _render_change(change: MemberChange, manager: MembershipManager) -> dict[str, Any]:
    registry = manager.registry()
    return {
        "action": change.action,
        "raft_address": change.raft_address,
        "node_id": change.node_id,
        "members": [
            {
                "raft_address": address,
                "node_id": registry[address].node_id if address in registry else None,
            }
            for address in change.members
        ],
    }
