from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from kaflow.client import Admin, AsyncAdmin, TopicPartition
from kaflow.client.group_admin import (
    GroupDescription,
    GroupListing,
    GroupState,
    OffsetReset,
    OffsetResetStrategy,
)
from kaflow.errors import (
    GroupNotEmptyError,
    InvalidGroupNameError,
    InvalidRequestError,
    KaflowError,
    UnknownGroupError,
)
from tests.group_requests import commit, committed, join, leave
from tests.harness import NodeProcess

# Record timestamps of partition 0 in seed_topic: offset N has timestamp (N + 1) * 1000 ms.
TIMESTAMP_STEP_MS = 1000
CLIENT_ID = "test-client"


@pytest.fixture(scope="module")
def shared_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """One node for the module; each test uses its own topic and group names."""
    node = NodeProcess(tmp_path_factory.mktemp("admin-groups") / "node-1")
    try:
        node.start()
        yield node
    finally:
        node.kill()


def seed_topic(node: NodeProcess, topic: str, counts: tuple[int, ...] = (5, 3)) -> None:
    """Create ``topic`` with one partition per count and that many records in each."""
    node.create_topic(topic, partitions=len(counts))
    for partition, count in enumerate(counts):
        records = [
            {"value": f"v{offset}", "partition": partition,
             "timestamp": (offset + 1) * TIMESTAMP_STEP_MS}
            for offset in range(count)
        ]  # fmt: skip
        if records:
            node.post(f"/v1/topics/{topic}/records", {"records": records})


async def test_list_groups_returns_summaries(shared_node: NodeProcess) -> None:
    seed_topic(shared_node, "list-topic")
    commit(shared_node, "list-idle", "list-topic", {0: 1})
    join(shared_node, "list-active", "list-topic", CLIENT_ID)

    async with AsyncAdmin(shared_node.url) as admin:
        listings = await admin.list_groups()

    by_name = {listing.group: listing for listing in listings}
    assert [listing.group for listing in listings] == sorted(by_name)
    assert by_name["list-idle"] == GroupListing("list-idle", GroupState.EMPTY, 0, 0)
    assert by_name["list-active"].members == 1
    assert by_name["list-active"].state is GroupState.STABLE
    assert by_name["list-active"].group_epoch >= 1


async def test_describe_group_lag_and_owner(shared_node: NodeProcess) -> None:
    seed_topic(shared_node, "describe-topic", counts=(5, 3))
    commit(shared_node, "describe-group", "describe-topic", {0: 2, 1: 3})
    member = join(shared_node, "describe-group", "describe-topic", CLIENT_ID)

    async with AsyncAdmin(shared_node.url) as admin:
        described = await admin.describe_group("describe-group")

    assert described.group == "describe-group"
    assert described.state is GroupState.STABLE
    assert described.group_epoch == member["group_epoch"]
    [found] = described.members
    assert found.member_id == member["member_id"]
    assert found.client_id == "test-client"
    assert found.topics == ("describe-topic",)
    assert found.assignment == (
        TopicPartition("describe-topic", 0),
        TopicPartition("describe-topic", 1),
    )
    assert found.revoking == ()
    assert found.session_timeout_ms == 45_000
    assert isinstance(found.last_heartbeat_ms_ago, int)
    offsets = {offset.partition: offset for offset in described.offsets}
    assert (offsets[0].committed_offset, offsets[0].high_watermark, offsets[0].lag) == (2, 5, 3)
    assert (offsets[1].committed_offset, offsets[1].high_watermark, offsets[1].lag) == (3, 3, 0)
    assert offsets[0].owner == member["member_id"]
    assert offsets[1].owner == member["member_id"]
    assert described.total_lag == 3


async def test_describe_group_owned_without_commit(shared_node: NodeProcess) -> None:
    seed_topic(shared_node, "uncommitted-topic", counts=(4,))
    member = join(shared_node, "uncommitted-group", "uncommitted-topic", CLIENT_ID)

    async with AsyncAdmin(shared_node.url) as admin:
        described = await admin.describe_group("uncommitted-group")

    [offset] = described.offsets
    assert offset.committed_offset is None
    assert offset.lag == 4
    assert offset.owner == member["member_id"]
    assert described.total_lag == 4


async def test_describe_group_without_members(shared_node: NodeProcess) -> None:
    seed_topic(shared_node, "idle-topic", counts=(4,))
    commit(shared_node, "idle-group", "idle-topic", {0: 1})

    async with AsyncAdmin(shared_node.url) as admin:
        described = await admin.describe_group("idle-group")

    assert described.state is GroupState.EMPTY
    assert described.members == ()
    [offset] = described.offsets
    assert (offset.topic, offset.partition, offset.lag, offset.owner) == ("idle-topic", 0, 3, None)


async def test_describe_unknown_group_raises(shared_node: NodeProcess) -> None:
    async with AsyncAdmin(shared_node.url) as admin:
        with pytest.raises(UnknownGroupError):
            await admin.describe_group("never-used")


async def test_delete_group_rejected_while_active(shared_node: NodeProcess) -> None:
    seed_topic(shared_node, "delete-topic")
    commit(shared_node, "delete-group", "delete-topic", {0: 1})
    member = join(shared_node, "delete-group", "delete-topic", CLIENT_ID)

    async with AsyncAdmin(shared_node.url) as admin:
        with pytest.raises(GroupNotEmptyError):
            await admin.delete_group("delete-group")
        assert committed(shared_node, "delete-group") == {("delete-topic", 0): 1}

        leave(shared_node, "delete-group", member["member_id"])
        await admin.delete_group("delete-group")

        with pytest.raises(UnknownGroupError):
            await admin.describe_group("delete-group")
        assert "delete-group" not in {listing.group for listing in await admin.list_groups()}


async def test_delete_unknown_group_raises(shared_node: NodeProcess) -> None:
    async with AsyncAdmin(shared_node.url) as admin:
        with pytest.raises(UnknownGroupError):
            await admin.delete_group("never-deleted")


# Partition 0 has offsets 0..5 and committed offset 2; each case states the new offset.
RESET_CASES = [
    pytest.param("earliest", None, 0, id="earliest"),
    pytest.param("latest", None, 5, id="latest"),
    pytest.param("offset", 4, 4, id="offset"),
    pytest.param("offset", 99, 5, id="offset-above-high-watermark"),
    pytest.param("timestamp", 2 * TIMESTAMP_STEP_MS + 500, 2, id="timestamp"),
    pytest.param("timestamp", 99 * TIMESTAMP_STEP_MS, 5, id="timestamp-after-last-record"),
    pytest.param("shift", 2, 4, id="shift-forward"),
    pytest.param("shift", -100, 0, id="shift-below-zero"),
    pytest.param("shift", 100, 5, id="shift-past-end"),
]


@pytest.mark.parametrize(("to", "value", "expected"), RESET_CASES)
async def test_reset_offsets_dry_run_then_execute(
    shared_node: NodeProcess, to: str, value: int | None, expected: int
) -> None:
    topic, group = f"reset-{to}-{value}", f"reset-{to}-{value}".replace("-", "_")
    seed_topic(shared_node, topic, counts=(5,))
    commit(shared_node, group, topic, {0: 2})

    async with AsyncAdmin(shared_node.url) as admin:
        plan = await admin.reset_group_offsets(group, topic, to, value)
        assert committed(shared_node, group) == {(topic, 0): 2}

        executed = await admin.reset_group_offsets(group, topic, to, value, execute=True)

    assert plan.dry_run is True
    assert plan.offsets == (OffsetReset(topic, 0, 2, expected),)
    assert executed.dry_run is False
    assert executed.offsets == plan.offsets
    assert committed(shared_node, group) == {(topic, 0): expected}


async def test_reset_offsets_chosen_partitions(shared_node: NodeProcess) -> None:
    seed_topic(shared_node, "reset-chosen", counts=(5, 3, 2))
    commit(shared_node, "reset-chosen", "reset-chosen", {0: 1, 1: 1, 2: 1})

    async with AsyncAdmin(shared_node.url) as admin:
        plan = await admin.reset_group_offsets(
            "reset-chosen", "reset-chosen", OffsetResetStrategy.LATEST, partitions=[0, 2],
            execute=True,
        )  # fmt: skip

    assert [(o.partition, o.new_offset) for o in plan.offsets] == [(0, 5), (2, 2)]
    assert committed(shared_node, "reset-chosen") == {
        ("reset-chosen", 0): 5,
        ("reset-chosen", 1): 1,
        ("reset-chosen", 2): 2,
    }


async def test_reset_offsets_without_commit(shared_node: NodeProcess) -> None:
    seed_topic(shared_node, "reset-fresh", counts=(5,))

    async with AsyncAdmin(shared_node.url) as admin:
        plan = await admin.reset_group_offsets("reset-fresh", "reset-fresh", "shift", 2)

    assert plan.offsets[0].current_offset is None
    assert plan.offsets[0].new_offset == 2


async def test_reset_offsets_rejected_while_active(shared_node: NodeProcess) -> None:
    seed_topic(shared_node, "reset-active")
    commit(shared_node, "reset-active", "reset-active", {0: 3, 1: 1})
    join(shared_node, "reset-active", "reset-active", CLIENT_ID)

    async with AsyncAdmin(shared_node.url) as admin:
        plan = await admin.reset_group_offsets("reset-active", "reset-active", "earliest")
        with pytest.raises(GroupNotEmptyError, match="reset-active"):
            await admin.reset_group_offsets(
                "reset-active", "reset-active", "earliest", execute=True
            )

    assert [o.new_offset for o in plan.offsets] == [0, 0]
    assert committed(shared_node, "reset-active") == {
        ("reset-active", 0): 3,
        ("reset-active", 1): 1,
    }


async def test_reset_offsets_node_rejects_bad_input(shared_node: NodeProcess) -> None:
    seed_topic(shared_node, "reset-bad", counts=(2,))

    async with AsyncAdmin(shared_node.url) as admin:
        with pytest.raises(InvalidRequestError):
            await admin.reset_group_offsets("reset-bad", "reset-bad", "offset", -1)
        with pytest.raises(KaflowError):
            await admin.reset_group_offsets("reset-bad", "no-such-topic", "earliest")
        with pytest.raises(KaflowError):
            await admin.reset_group_offsets("reset-bad", "reset-bad", "earliest", partitions=[7])


@pytest.mark.parametrize(
    ("to", "value", "message"),
    [
        pytest.param("beginning", None, "invalid reset strategy 'beginning'", id="unknown"),
        pytest.param("offset", None, "needs a value", id="offset-without-value"),
        pytest.param("shift", None, "needs a value", id="shift-without-value"),
        pytest.param("earliest", 3, "takes no value", id="earliest-with-value"),
        pytest.param("offset", True, "expected an int", id="bool-value"),
    ],
)
async def test_reset_offsets_invalid_arguments(to: str, value: Any, message: str) -> None:
    # Checked before any request, so the URL needs no node behind it.
    async with AsyncAdmin("http://127.0.0.1:9") as admin:
        with pytest.raises(ValueError, match=message):
            await admin.reset_group_offsets("g", "t", to, value)


@pytest.mark.parametrize("group", ["", ".", "..", "a/b", "x" * 256])
async def test_group_calls_validate_name(group: str) -> None:
    async with AsyncAdmin("http://127.0.0.1:9") as admin:
        with pytest.raises(InvalidGroupNameError):
            await admin.describe_group(group)
        with pytest.raises(InvalidGroupNameError):
            await admin.delete_group(group)
        with pytest.raises(InvalidGroupNameError):
            await admin.reset_group_offsets(group, "t", "earliest")


def test_blocking_admin_group_calls(shared_node: NodeProcess) -> None:
    seed_topic(shared_node, "blocking-topic", counts=(4,))
    commit(shared_node, "blocking-group", "blocking-topic", {0: 1})

    with Admin(shared_node.url) as admin:
        described = admin.describe_group("blocking-group")
        plan = admin.reset_group_offsets("blocking-group", "blocking-topic", "latest", execute=True)
        listed = {listing.group for listing in admin.list_groups()}
        admin.delete_group("blocking-group")
        with pytest.raises(UnknownGroupError):
            admin.describe_group("blocking-group")

    assert described.offsets[0].lag == 3
    assert plan.offsets == (OffsetReset("blocking-topic", 0, 1, 4),)
    assert "blocking-group" in listed


def test_description_rejects_malformed_response() -> None:
    body = {"group": "g", "state": "stable", "group_epoch": "7", "members": [], "offsets": []}

    with pytest.raises(KaflowError, match="group_epoch"):
        GroupDescription.from_json(body)


def test_description_rejects_unknown_state() -> None:
    body = {"group": "g", "state": "rebalancing", "group_epoch": 1, "members": [], "offsets": []}

    with pytest.raises(KaflowError, match="'rebalancing'"):
        GroupDescription.from_json(body)
