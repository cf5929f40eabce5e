"""Consumer group coordination over HTTP on one real node."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import HttpError, NodeProcess, http_json, wait_until


@pytest.fixture
def group_node(node_factory: type[NodeProcess], tmp_path: Path) -> NodeProcess:
    node = node_factory(tmp_path / "node-1").start()
    node.create_topic("orders", partitions=4)
    return node


@pytest.fixture(scope="module")
def shared_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """One node for the tests that only send rejected requests."""
    node = NodeProcess(tmp_path_factory.mktemp("shared") / "node-1").start()
    try:
        node.create_topic("orders", partitions=4)
        yield node
    finally:
        node.kill()


def join(node: NodeProcess, group: str = "g", **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"member_epoch": 0, "topics": ["orders"], "session_timeout_ms": 3000}
    body.update(fields)
    response: dict[str, Any] = node.post(f"/v1/groups/{group}/heartbeat", body)
    return response


def beat(node: NodeProcess, member: dict[str, Any], **fields: Any) -> dict[str, Any]:
    body = {"member_id": member["member_id"], "member_epoch": member["member_epoch"], **fields}
    response: dict[str, Any] = node.post("/v1/groups/g/heartbeat", body)
    return response


def delete(node: NodeProcess, path: str) -> Any:
    return http_json("DELETE", node.url + path)[1]


def partitions(response: dict[str, Any]) -> set[tuple[str, int]]:
    return {(entry["topic"], p) for entry in response["assignment"] for p in entry["partitions"]}


def error_code(call: Any) -> tuple[int, str | None]:
    with pytest.raises(HttpError) as raised:
        call()
    return raised.value.status, raised.value.code


def test_join_gets_every_partition(group_node: NodeProcess) -> None:
    first = join(group_node)

    assert first["group"] == "g"
    assert len(first["member_id"]) == 32
    assert first["member_epoch"] == first["group_epoch"] == 1
    assert partitions(first) == {("orders", p) for p in range(4)}
    assert first["session_timeout_ms"] == 3000
    assert first["heartbeat_interval_ms"] == 1000


def test_second_member_gets_half_after_revocation(group_node: NodeProcess) -> None:
    first = join(group_node)
    second = join(group_node)

    assert partitions(second) == set()
    revoked = beat(group_node, first)
    kept = partitions(revoked)
    assert len(kept) == 2
    assert revoked["member_epoch"] == first["member_epoch"]

    released = beat(group_node, revoked, owned=revoked["assignment"])
    assert released["member_epoch"] == released["group_epoch"] == 2
    second = beat(group_node, second)
    assert partitions(second) == {("orders", p) for p in range(4)} - kept
    described = group_node.get("/v1/groups/g")
    assert described["state"] == "stable"


def test_leave_frees_partitions(group_node: NodeProcess) -> None:
    first = join(group_node)
    second = join(group_node)

    left = beat(group_node, second, member_epoch=-1)
    assert left["member_epoch"] == -1
    assert left["assignment"] == []
    after = beat(group_node, first)
    assert partitions(after) == {("orders", p) for p in range(4)}
    assert error_code(lambda: beat(group_node, second)) == (404, "unknown_member")


def test_session_timeout_fences_member(group_node: NodeProcess) -> None:
    first = join(group_node, session_timeout_ms=1000)
    second = join(group_node, session_timeout_ms=30000)

    def second_owns_all() -> bool:
        return len(partitions(beat(group_node, second))) == 4

    wait_until(second_owns_all, 15, "the silent member was not fenced")
    assert error_code(lambda: beat(group_node, first)) == (404, "unknown_member")
    assert "reason=session_timeout" in group_node.log_path.read_text()


def test_commit_checks_member_and_epoch(group_node: NodeProcess) -> None:
    member = join(group_node)
    commit = {"offsets": [{"topic": "orders", "partition": 0, "offset": 0}]}
    path = "/v1/groups/g/offsets"

    group_node.post(path, {**commit, "member_id": member["member_id"], "member_epoch": 1})
    assert error_code(lambda: group_node.post(path, commit)) == (404, "unknown_member")
    stale = {**commit, "member_id": member["member_id"], "member_epoch": 7}
    assert error_code(lambda: group_node.post(path, stale)) == (409, "stale_generation")
    unknown = {**commit, "member_id": "nobody", "member_epoch": 1}
    assert error_code(lambda: group_node.post(path, unknown)) == (404, "unknown_member")


def test_commit_of_unowned_partition_rejected(group_node: NodeProcess) -> None:
    first = join(group_node)
    join(group_node)
    first = beat(group_node, first)
    first = beat(group_node, first, owned=first["assignment"])
    lost = ({("orders", p) for p in range(4)} - partitions(first)).pop()
    body = {
        "offsets": [{"topic": lost[0], "partition": lost[1], "offset": 1}],
        "member_id": first["member_id"],
        "member_epoch": first["member_epoch"],
    }

    assert error_code(lambda: group_node.post("/v1/groups/g/offsets", body)) == (
        409,
        "stale_generation",
    )


def test_static_member_replaced_without_rebalance(group_node: NodeProcess) -> None:
    old = join(group_node, group_instance_id="host-a")
    beat(group_node, old, member_epoch=-2)
    new = join(group_node, group_instance_id="host-a")

    assert new["member_id"] != old["member_id"]
    assert new["group_epoch"] == old["group_epoch"]
    assert partitions(new) == partitions(old)
    assert error_code(lambda: beat(group_node, old)) == (404, "unknown_member")


def test_list_and_describe_group(group_node: NodeProcess) -> None:
    member = join(group_node, client_id="app-1")
    group_node.post(
        "/v1/groups/g/offsets",
        {
            "offsets": [{"topic": "orders", "partition": 1, "offset": 0}],
            "member_id": member["member_id"],
            "member_epoch": member["member_epoch"],
        },
    )

    listing = group_node.get("/v1/groups")
    assert listing == {
        "groups": [{"group": "g", "state": "stable", "members": 1, "group_epoch": 1}]
    }
    described = group_node.get("/v1/groups/g")
    assert described["members"][0]["client_id"] == "app-1"
    assert described["members"][0]["last_heartbeat_ms_ago"] is not None
    assert [o["partition"] for o in described["offsets"]] == [0, 1, 2, 3]
    assert described["offsets"][1]["committed_offset"] == 0
    assert described["offsets"][0]["committed_offset"] is None
    assert {o["owner"] for o in described["offsets"]} == {member["member_id"]}


def test_describe_unknown_group_not_found(shared_node: NodeProcess) -> None:
    assert error_code(lambda: shared_node.get("/v1/groups/nope")) == (404, "unknown_group")


def test_delete_and_reset_rejected_while_active(group_node: NodeProcess) -> None:
    member = join(group_node)
    reset = {"topic": "orders", "to": "earliest", "execute": True}

    assert error_code(lambda: delete(group_node, "/v1/groups/g")) == (409, "group_not_empty")
    assert error_code(lambda: group_node.post("/v1/groups/g/reset-offsets", reset)) == (
        409,
        "group_not_empty",
    )
    dry_run = group_node.post("/v1/groups/g/reset-offsets", {**reset, "execute": False})
    assert dry_run["dry_run"] is True
    beat(group_node, member, member_epoch=-1)
    delete(group_node, "/v1/groups/g")
    assert error_code(lambda: group_node.get("/v1/groups/g")) == (404, "unknown_group")


def test_reset_offsets_execute_and_clamp(group_node: NodeProcess) -> None:
    group_node.post("/v1/topics/orders/records", {"records": [{"value": "a", "partition": 0}] * 3})
    group_node.post(
        "/v1/groups/r/offsets", {"offsets": [{"topic": "orders", "partition": 0, "offset": 1}]}
    )

    shifted = group_node.post(
        "/v1/groups/r/reset-offsets",
        {"topic": "orders", "partitions": [0], "to": "shift", "value": 10, "execute": True},
    )
    assert shifted["offsets"] == [
        {"topic": "orders", "partition": 0, "current_offset": 1, "new_offset": 3}
    ]
    committed = group_node.get("/v1/groups/r/offsets")["offsets"]
    assert committed[0]["offset"] == 3
    earliest = group_node.post(
        "/v1/groups/r/reset-offsets", {"topic": "orders", "to": "offset", "value": 0}
    )
    assert [o["new_offset"] for o in earliest["offsets"]] == [0, 0, 0, 0]
    assert earliest["dry_run"] is True


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"topics": ["orders"]}, "member_epoch"),
        ({"member_epoch": "1"}, "member_epoch"),
        ({"member_epoch": -3, "member_id": "m"}, "member_epoch"),
        ({"member_epoch": 0}, "topics"),
        ({"member_epoch": 0, "topics": []}, "topics"),
        ({"member_epoch": 0, "topics": [5]}, "topics[0]"),
        ({"member_epoch": 1}, "member_id"),
        ({"member_epoch": 0, "topics": ["orders"], "member_id": ""}, "member_id"),
        ({"member_epoch": 0, "topics": ["orders"], "session_timeout_ms": 10}, "session_timeout_ms"),
        ({"member_epoch": 0, "topics": ["orders"], "session_timeout_ms": 0}, "session_timeout_ms"),
        (
            {"member_epoch": 0, "topics": ["orders"], "rebalance_timeout_ms": -1},
            "rebalance_timeout_ms",
        ),
        (
            {"member_epoch": 0, "topics": ["orders"], "owned": [{"topic": "orders"}]},
            "owned[0].partitions",
        ),
        (
            {
                "member_epoch": 0,
                "topics": ["orders"],
                "owned": [{"topic": "orders", "partitions": [-1]}],
            },
            "owned[0].partitions[0]",
        ),
        ({"member_epoch": 0, "topics": ["orders"], "client_id": 7}, "client_id"),
        ({"member_epoch": 0, "topics": ["orders"], "extra": 1}, "extra"),
    ],
    ids=[
        "epoch-missing",
        "epoch-string",
        "epoch-below-range",
        "join-without-topics",
        "join-empty-topics",
        "topic-not-string",
        "heartbeat-without-member-id",
        "empty-member-id",
        "session-below-minimum",
        "session-zero",
        "rebalance-negative",
        "owned-without-partitions",
        "owned-negative-partition",
        "client-id-not-string",
        "unknown-field",
    ],
)
def test_heartbeat_bad_input_rejected(
    shared_node: NodeProcess, body: dict[str, Any], field: str
) -> None:
    with pytest.raises(HttpError) as raised:
        shared_node.post("/v1/groups/g/heartbeat", body)

    assert raised.value.status == 400
    assert raised.value.body["error"]["details"]["field"] == field


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"topic": "orders", "to": "middle"}, 400),
        ({"topic": "orders", "to": "offset"}, 400),
        ({"topic": "orders", "to": "timestamp", "value": -5}, 400),
        ({"topic": "orders", "to": "earliest", "partitions": [9]}, 404),
        ({"topic": "orders", "to": "earliest", "partitions": []}, 400),
        ({"topic": "orders", "to": "earliest", "execute": "yes"}, 400),
        ({"topic": "missing", "to": "earliest"}, 404),
    ],
    ids=[
        "bad-to",
        "offset-without-value",
        "negative-timestamp",
        "unknown-partition",
        "empty-partitions",
        "execute-not-bool",
        "unknown-topic",
    ],
)
def test_reset_offsets_bad_input_rejected(
    shared_node: NodeProcess, body: dict[str, Any], status: int
) -> None:
    with pytest.raises(HttpError) as raised:
        shared_node.post("/v1/groups/g/reset-offsets", body)

    assert raised.value.status == status


def test_commit_member_fields_must_pair(shared_node: NodeProcess) -> None:
    body = {"offsets": [{"topic": "orders", "partition": 0, "offset": 0}], "member_id": "m"}

    assert error_code(lambda: shared_node.post("/v1/groups/g/offsets", body)) == (
        400,
        "invalid_request",
    )


def test_rebalance_timeout_fences_holder(group_node: NodeProcess) -> None:
    holder = join(group_node, session_timeout_ms=30000, rebalance_timeout_ms=1000)
    newcomer = join(group_node, session_timeout_ms=30000)
    holder = beat(group_node, holder)
    assert len(partitions(holder)) == 2

    def holder_fenced() -> bool:
        nonlocal newcomer
        try:
            beat(group_node, holder)
        except HttpError as exc:
            assert exc.code == "unknown_member"
            return True
        newcomer = beat(group_node, newcomer)
        return False

    wait_until(holder_fenced, 15, "the member that kept revoked partitions was not fenced")
    assert "reason=rebalance_timeout" in group_node.log_path.read_text()
    assert len(partitions(beat(group_node, newcomer))) == 4
