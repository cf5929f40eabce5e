"""Consumer group requests sent straight to a node's HTTP API, for admin tests."""

from __future__ import annotations

from typing import Any

from tests.harness import HttpError, NodeProcess, wait_until

__all__ = ["commit", "committed", "join", "leave"]

JOIN_TIMEOUT_S = 30.0


def commit(node: NodeProcess, group: str, topic: str, offsets: dict[int, int]) -> None:
    body = {"offsets": [{"topic": topic, "partition": p, "offset": o} for p, o in offsets.items()]}
    node.post(f"/v1/groups/{group}/offsets", body)


def join(node: NodeProcess, group: str, topic: str, client_id: str) -> dict[str, Any]:
    """Join ``group`` as a new member through the heartbeat endpoint and return the response."""
    body = {"member_id": None, "member_epoch": 0, "topics": [topic], "client_id": client_id}
    responses: list[dict[str, Any]] = []

    def joined() -> bool:
        # A node that has just become leader rejects heartbeats with a retriable error.
        try:
            responses.append(node.post(f"/v1/groups/{group}/heartbeat", body))
        except HttpError as error:
            if not (isinstance(error.body, dict) and error.body["error"]["retriable"]):
                raise
            return False
        return True

    wait_until(joined, JOIN_TIMEOUT_S, f"join of group {group}")
    return responses[0]


def leave(node: NodeProcess, group: str, member_id: str) -> None:
    node.post(f"/v1/groups/{group}/heartbeat", {"member_id": member_id, "member_epoch": -1})


def committed(node: NodeProcess, group: str) -> dict[tuple[str, int], int]:
    offsets = node.get(f"/v1/groups/{group}/offsets")["offsets"]
    return {(o["topic"], o["partition"]): o["offset"] for o in offsets}
