from __future__ import annotations

import pytest

import kaflow
from kaflow.server.app import ENDPOINTS
from tests.server.conftest import Api

pytestmark = pytest.mark.asyncio(loop_scope="package")


async def test_commit_offsets_echoes_commits(api: Api, topic: str) -> None:
    await api.create_topic(topic, partitions=2)
    await api.produce(topic, [{"value": "a", "partition": 1}] * 5)
    group = f"group-{topic}"

    reply = await api.call(
        "POST",
        f"/v1/groups/{group}/offsets",
        json_body={
            "offsets": [
                {"topic": topic, "partition": 1, "offset": 3, "metadata": "from test"},
                {"topic": topic, "partition": 0, "offset": 0},
            ]
        },
    )

    assert reply.status == 200
    assert reply.body == {
        "group": group,
        "offsets": [
            {"topic": topic, "partition": 1, "offset": 3, "metadata": "from test"},
            {"topic": topic, "partition": 0, "offset": 0, "metadata": ""},
        ],
    }


async def test_committed_offsets_report_lag(api: Api, topic: str) -> None:
    await api.create_topic(topic)
    await api.produce(topic, [{"value": "a"}] * 5)
    group = f"group-{topic}"
    await api.call(
        "POST",
        f"/v1/groups/{group}/offsets",
        json_body={"offsets": [{"topic": topic, "partition": 0, "offset": 2, "metadata": "m"}]},
    )

    reply = await api.call("GET", f"/v1/groups/{group}/offsets")

    assert reply.status == 200
    assert reply.body["group"] == group
    [committed] = reply.body["offsets"]
    assert committed["topic"] == topic
    assert committed["partition"] == 0
    assert committed["offset"] == 2
    assert committed["metadata"] == "m"
    assert committed["high_watermark"] == 5
    assert committed["log_start_offset"] == 0
    assert committed["lag"] == 3
    assert isinstance(committed["commit_timestamp"], int)


async def test_list_groups_includes_committed(api: Api, topic: str) -> None:
    await api.create_topic(topic)
    group = f"group-{topic}"
    await api.call(
        "POST",
        f"/v1/groups/{group}/offsets",
        json_body={"offsets": [{"topic": topic, "partition": 0, "offset": 0}]},
    )

    reply = await api.call("GET", "/v1/groups")

    assert reply.status == 200
    assert group in [entry["group"] for entry in reply.body["groups"]]


async def test_unknown_group_is_404(api: Api, topic: str) -> None:
    reply = await api.call("GET", f"/v1/groups/never-{topic}/offsets")

    assert reply.status == 404
    assert reply.code == "unknown_group"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"offsets": {}}, "malformed_body"),
        ({"offsets": []}, "invalid_request"),
        ({}, "malformed_body"),
        ({"offsets": [{"topic": "T", "partition": 0, "offset": -1}]}, "malformed_body"),
        ({"offsets": [{"topic": "T", "partition": "0", "offset": 1}]}, "malformed_body"),
        ({"offsets": [{"topic": "T", "offset": 1}]}, "malformed_body"),
        (
            {"offsets": [{"topic": "T", "partition": 0, "offset": 1, "metadata": 5}]},
            "malformed_body",
        ),
        (
            {"offsets": [{"topic": "T", "partition": 0, "offset": 1, "metadata": "x" * 4097}]},
            "invalid_request",
        ),
        ({"offsets": [{"topic": "T", "partition": 0, "offset": 1, "meta": ""}]}, "malformed_body"),
        ({"offsets": [{"topic": "T", "partition": 0, "offset": 1}, "x"]}, "malformed_body"),
    ],
    ids=[
        "offsets-object",
        "offsets-empty",
        "offsets-missing",
        "offset-negative",
        "partition-string",
        "partition-missing",
        "metadata-number",
        "metadata-too-long",
        "unknown-field",
        "entry-not-object",
    ],
)
async def test_commit_offsets_rejects_bad_body(
    api: Api, topic: str, body: dict[str, object], code: str
) -> None:
    await api.create_topic(topic)
    for entry in body.get("offsets") or []:  # type: ignore[attr-defined]
        if isinstance(entry, dict) and entry.get("topic") == "T":
            entry["topic"] = topic
    group = f"group-{topic}"

    reply = await api.call("POST", f"/v1/groups/{group}/offsets", json_body=body)

    assert reply.status == 400, reply.body
    assert reply.code == code
    assert group not in (await api.call("GET", "/v1/groups")).body["groups"]


@pytest.mark.parametrize(
    ("partition", "code"),
    [(None, "unknown_topic"), (9, "unknown_partition")],
    ids=["unknown-topic", "unknown-partition"],
)
async def test_commit_offsets_unknown_target_is_404(
    api: Api, topic: str, partition: int | None, code: str
) -> None:
    if partition is not None:
        await api.create_topic(topic)
    group = f"group-{topic}"

    reply = await api.call(
        "POST",
        f"/v1/groups/{group}/offsets",
        json_body={"offsets": [{"topic": topic, "partition": partition or 0, "offset": 1}]},
    )

    assert reply.status == 404
    assert reply.code == code
    assert group not in (await api.call("GET", "/v1/groups")).body["groups"]


async def test_commit_offsets_long_group_name_is_400(api: Api, topic: str) -> None:
    await api.create_topic(topic)
    group = "g" * 256

    reply = await api.call(
        "POST",
        f"/v1/groups/{group}/offsets",
        json_body={"offsets": [{"topic": topic, "partition": 0, "offset": 1}]},
    )

    assert reply.status == 400
    assert reply.code == "invalid_group_name"
    assert group not in (await api.call("GET", "/v1/groups")).body["groups"]


async def test_health_live(api: Api) -> None:
    reply = await api.call("GET", "/v1/health/live")

    assert reply.status == 200
    assert reply.body == {"status": "live"}


async def test_health_ready_when_broker_ready(api: Api) -> None:
    reply = await api.call("GET", "/v1/health/ready")

    assert reply.status == 200
    assert reply.body == {"status": "ready"}


async def test_cluster_status_single_member(api: Api) -> None:
    reply = await api.call("GET", "/v1/cluster")

    assert reply.status == 200
    assert reply.body["node_id"] == api.broker.node_id
    assert reply.body["role"] == "leader"
    assert reply.body["leader_id"] == api.broker.node_id
    assert reply.body["ready"] is True
    assert reply.body["term"] >= 1
    assert reply.body["applied_index"] <= reply.body["commit_index"]
    assert isinstance(reply.body["members"], list)


@pytest.mark.parametrize("path", ["/", "/v1"])
async def test_index_lists_every_endpoint(api: Api, path: str) -> None:
    reply = await api.call("GET", path)

    assert reply.status == 200
    assert reply.body["version"] == kaflow.__version__
    listed = {(e["method"], e["path"]) for e in reply.body["endpoints"]}
    assert ("POST", "/v1/topics/{topic}/records") in listed
    assert ("GET", "/v1/topics/{topic}/partitions/{partition}/records") in listed
    assert ("GET", "/v1/cluster") in listed
    assert listed == {(e.method, e.path) for e in ENDPOINTS}
