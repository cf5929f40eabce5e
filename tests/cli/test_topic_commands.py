from __future__ import annotations

import json
import subprocess

import pytest

from tests.cli.cli_runner import describe, run_kaflow
from tests.harness import NodeProcess

DEFAULT_RETENTION_MS = 7 * 24 * 3600 * 1000


def kaflow(node: NodeProcess, *args: str) -> subprocess.CompletedProcess[bytes]:
    return run_kaflow(*args, bootstrap=node.url)


def test_topic_create_prints_table(shared_node: NodeProcess) -> None:
    result = kaflow(
        shared_node, "topic", "create", "create-table", "--partitions", "3",
        "--config", "retention.ms=86400000",
    )  # fmt: skip

    lines = result.stdout.decode().splitlines()
    assert result.returncode == 0, describe(result)
    assert lines[:2] == ["topic: create-table", "partitions: 3"]
    assert lines[3].split() == ["PARTITION", "LOG_START_OFFSET", "HIGH_WATERMARK", "RECORDS"]
    assert [line.split() for line in lines[4:7]] == [
        ["0", "0", "0", "0"],
        ["1", "0", "0", "0"],
        ["2", "0", "0", "0"],
    ]
    assert ["retention.ms", "86400000"] in [line.split() for line in lines[8:]]


def test_topic_create_json(shared_node: NodeProcess) -> None:
    result = kaflow(
        shared_node, "topic", "create", "create-json", "--partitions", "2",
        "--config", "retention.ms=60000", "--config", "segment.bytes=1048576", "--output", "json",
    )  # fmt: skip

    topic = json.loads(result.stdout)
    assert result.returncode == 0, describe(result)
    assert topic["name"] == "create-json"
    assert [partition["partition"] for partition in topic["partitions"]] == [0, 1]
    assert topic["config"]["retention.ms"] == 60000
    assert topic["config"]["segment.bytes"] == 1048576
    assert shared_node.get("/v1/topics/create-json")["config"]["retention.ms"] == 60000


def test_topic_create_existing_fails(shared_node: NodeProcess) -> None:
    assert kaflow(shared_node, "topic", "create", "twice").returncode == 0

    result = kaflow(shared_node, "topic", "create", "twice")

    assert result.returncode == 1, describe(result)
    assert result.stderr.decode().startswith("error: topic_already_exists: ")
    assert result.stdout == b""


def test_topic_create_unknown_config_fails(shared_node: NodeProcess) -> None:
    result = kaflow(shared_node, "topic", "create", "bad-config", "--config", "colour=blue")

    assert result.returncode == 1, describe(result)
    assert result.stderr.decode().startswith("error: invalid_config: ")
    assert "colour" in result.stderr.decode()
    assert "bad-config" not in {topic["name"] for topic in shared_node.get("/v1/topics")["topics"]}


def test_topic_list_table_and_json(shared_node: NodeProcess) -> None:
    shared_node.create_topic("list-a", partitions=2)
    shared_node.post(
        "/v1/topics/list-a/records",
        {"records": [{"value": "x", "partition": 0}, {"value": "y", "partition": 1}] * 2},
    )

    table = kaflow(shared_node, "topic", "list")
    as_json = kaflow(shared_node, "topic", "list", "--output", "json")

    rows = [line.split() for line in table.stdout.decode().splitlines()]
    assert table.returncode == 0, describe(table)
    assert rows[0] == ["NAME", "PARTITIONS", "RECORDS"]
    assert ["list-a", "2", "4"] in rows
    names = [row[0] for row in rows[1:]]
    assert names == sorted(names)
    listed = {topic["name"]: topic for topic in json.loads(as_json.stdout)["topics"]}
    assert as_json.returncode == 0, describe(as_json)
    assert [p["high_watermark"] for p in listed["list-a"]["partitions"]] == [2, 2]


def test_topic_describe_shows_offsets(shared_node: NodeProcess) -> None:
    shared_node.create_topic("describe-me", partitions=2)
    shared_node.post(
        "/v1/topics/describe-me/records", {"records": [{"value": "v", "partition": 1}] * 3}
    )

    result = kaflow(shared_node, "topic", "describe", "describe-me")

    rows = [line.split() for line in result.stdout.decode().splitlines()]
    assert result.returncode == 0, describe(result)
    assert rows[0] == ["topic:", "describe-me"]
    assert ["0", "0", "0", "0"] in rows
    assert ["1", "0", "3", "3"] in rows
    assert ["retention.ms", str(DEFAULT_RETENTION_MS)] in rows


def test_topic_alter_partitions_and_config(shared_node: NodeProcess) -> None:
    shared_node.create_topic("alter-me", partitions=1)

    grown = kaflow(
        shared_node, "topic", "alter", "alter-me", "--partitions", "3",
        "--config", "retention.ms=1000", "--output", "json",
    )  # fmt: skip
    reset = kaflow(
        shared_node, "topic", "alter", "alter-me", "--delete-config", "retention.ms",
        "--output", "json",
    )  # fmt: skip

    assert grown.returncode == 0, describe(grown)
    assert len(json.loads(grown.stdout)["partitions"]) == 3
    assert json.loads(grown.stdout)["config"]["retention.ms"] == 1000
    assert reset.returncode == 0, describe(reset)
    assert json.loads(reset.stdout)["config"]["retention.ms"] == DEFAULT_RETENTION_MS
    assert len(shared_node.get("/v1/topics/alter-me")["partitions"]) == 3


def test_topic_alter_shrink_fails(shared_node: NodeProcess) -> None:
    shared_node.create_topic("no-shrink", partitions=3)

    result = kaflow(shared_node, "topic", "alter", "no-shrink", "--partitions", "2")

    assert result.returncode == 1, describe(result)
    assert result.stderr.decode().startswith("error: invalid_partitions: ")
    assert len(shared_node.get("/v1/topics/no-shrink")["partitions"]) == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "nothing to alter"),
        (("--config", "retention.ms=1", "--delete-config", "retention.ms"), "both --config"),
        (("--config", "retention.ms=1", "--config", "retention.ms=2"), "more than once"),
    ],
    ids=["no-change", "set-and-delete", "duplicate"],
)
def test_topic_alter_usage_errors(
    shared_node: NodeProcess, args: tuple[str, ...], message: str
) -> None:
    result = kaflow(shared_node, "topic", "alter", "any-topic", *args)

    assert result.returncode == 2, describe(result)
    assert message in result.stderr.decode()


def test_topic_delete(shared_node: NodeProcess) -> None:
    shared_node.create_topic("delete-me")
    shared_node.create_topic("delete-me-json")

    deleted = kaflow(shared_node, "topic", "delete", "delete-me")
    deleted_json = kaflow(shared_node, "topic", "delete", "delete-me-json", "--output", "json")
    described = kaflow(shared_node, "topic", "describe", "delete-me")

    assert deleted.returncode == 0, describe(deleted)
    assert deleted.stdout == b"deleted topic delete-me\n"
    assert json.loads(deleted_json.stdout) == {"deleted": "delete-me-json"}
    assert described.returncode == 1, describe(described)
    assert described.stderr.decode().startswith("error: unknown_topic: ")
