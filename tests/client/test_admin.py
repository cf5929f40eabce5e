from __future__ import annotations

import pytest

import kaflow.client
from kaflow.client import AsyncAdmin, ClientClosedError, NodeUnreachableError
from kaflow.errors import TopicAlreadyExistsError, UnknownTopicError
from tests.harness import NodeProcess, free_port


async def test_admin_topic_lifecycle(node: NodeProcess) -> None:
    async with AsyncAdmin([node.url]) as admin:
        created = await admin.create_topic("orders", 2, {"retention.ms": 60_000})
        assert [p["partition"] for p in created["partitions"]] == [0, 1]
        assert created["config"]["retention.ms"] == 60_000

        with pytest.raises(TopicAlreadyExistsError):
            await admin.create_topic("orders")

        altered = await admin.alter_topic("orders", partitions=3, config={"retention.ms": None})
        assert len(altered["partitions"]) == 3
        assert altered["config"]["retention.ms"] == 604_800_000

        assert [t["name"] for t in await admin.list_topics()] == ["orders"]
        assert (await admin.describe_topic("orders"))["name"] == "orders"

        await admin.delete_topic("orders")
        with pytest.raises(UnknownTopicError):
            await admin.describe_topic("orders")


async def test_admin_groups_and_offsets(node: NodeProcess) -> None:
    node.create_topic("orders")
    node.post(
        "/v1/groups/billing/offsets",
        {"offsets": [{"topic": "orders", "partition": 0, "offset": 0}]},
    )

    async with AsyncAdmin(node.url) as admin:
        assert [listing.group for listing in await admin.list_groups()] == ["billing"]
        offsets = await admin.committed_offsets("billing")
        assert await admin.committed_offsets("nobody") == []

    assert [(o["topic"], o["partition"], o["offset"]) for o in offsets] == [("orders", 0, 0)]


async def test_admin_cluster_status_discovers_nodes(node: NodeProcess) -> None:
    dead = f"http://127.0.0.1:{free_port()}"

    async with AsyncAdmin([dead, node.url]) as admin:
        status = await admin.cluster_status()
        urls = admin.node_urls

    assert status["ready"] is True
    assert urls == [node.url]


async def test_admin_unreachable_nodes_time_out() -> None:
    dead = f"http://127.0.0.1:{free_port()}"

    async with AsyncAdmin(dead, retry_timeout_ms=300, retry_backoff_ms=10) as admin:
        with pytest.raises(NodeUnreachableError, match=dead) as caught:
            await admin.list_topics()

    assert caught.value.urls == [dead]


async def test_admin_closed_rejects_calls(node: NodeProcess) -> None:
    admin = AsyncAdmin(node.url)
    await admin.close()

    with pytest.raises(ClientClosedError, match="client is closed"):
        await admin.list_topics()


def test_client_exports_match_all() -> None:
    exported = {name for name in dir(kaflow.client) if not name.startswith("_")}
    modules = {
        "admin",
        "caller_thread",
        "consumer",
        "errors",
        "group_admin",
        "group_consumer",
        "membership",
        "producer",
        "reader",
        "rebalance",
        "records",
        "sync",
        "transport",
    }

    assert set(kaflow.client.__all__) == exported - modules
