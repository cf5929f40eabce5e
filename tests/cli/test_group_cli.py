"""`kaflow group` against a real node: list, describe, delete and reset-offsets."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from kaflow.cli.group import format_group
from tests.cli.cli_runner import describe, run_kaflow
from tests.cli.test_exit_codes import closed_port_url
from tests.cluster_harness import ClusterProcess
from tests.group_requests import commit, committed, join, leave
from tests.harness import NodeProcess, wait_until

# Record timestamps in seed_topic: offset N has timestamp (N + 1) * 1000 ms.
TIMESTAMP_STEP_MS = 1000
CLIENT_ID = "cli-test"


def kaflow(node: NodeProcess, *args: str) -> subprocess.CompletedProcess[bytes]:
    return run_kaflow(*args, bootstrap=node.url)


def table_rows(result: subprocess.CompletedProcess[bytes]) -> list[list[str]]:
    return [line.split() for line in result.stdout.decode().splitlines()]


def seed_topic(node: NodeProcess, topic: str, counts: tuple[int, ...] = (5, 3)) -> None:
    """Create ``topic`` with one partition per count and that many records in each."""
    node.create_topic(topic, partitions=len(counts))
    for partition, count in enumerate(counts):
        records = [
            {"value": f"v{offset}", "partition": partition,
             "timestamp": (offset + 1) * TIMESTAMP_STEP_MS}
            for offset in range(count)
        ]  # fmt: skip
        node.post(f"/v1/topics/{topic}/records", {"records": records})


def test_group_list_table_and_json(shared_node: NodeProcess) -> None:
    seed_topic(shared_node, "list-topic")
    commit(shared_node, "list-idle", "list-topic", {0: 1})
    join(shared_node, "list-active", "list-topic", CLIENT_ID)

    table = kaflow(shared_node, "group", "list")
    as_json = kaflow(shared_node, "group", "list", "--output", "json")

    rows = table_rows(table)
    assert table.returncode == 0, describe(table)
    assert rows[0] == ["GROUP", "STATE", "GROUP-EPOCH", "#MEMBERS"]
    assert ["list-idle", "empty", "0", "0"] in rows
    [active] = [row for row in rows if row[0] == "list-active"]
    assert (active[1], active[3]) == ("stable", "1")
    names = [row[0] for row in rows[1:]]
    assert names == sorted(names)
    assert as_json.returncode == 0, describe(as_json)
    listed = {group["group"]: group for group in json.loads(as_json.stdout)["groups"]}
    assert listed["list-idle"] == {
        "group": "list-idle", "state": "empty", "members": 0, "group_epoch": 0,
    }  # fmt: skip


def test_group_describe_lag_and_owner(shared_node: NodeProcess) -> None:
    seed_topic(shared_node, "describe-topic", counts=(5, 3))
    commit(shared_node, "describe-group", "describe-topic", {0: 2, 1: 3})
    member = join(shared_node, "describe-group", "describe-topic", CLIENT_ID)
    member_id, epoch = member["member_id"], str(member["group_epoch"])

    result = kaflow(shared_node, "group", "describe", "describe-group")

    rows = table_rows(result)
    assert result.returncode == 0, describe(result)
    assert rows[0] == ["GROUP", "STATE", "GROUP-EPOCH", "#MEMBERS"]
    assert rows[1] == ["describe-group", "stable", epoch, "1"]
    assert rows[3] == [
        "GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG",
        "CONSUMER-ID", "CLIENT-ID",
    ]  # fmt: skip
    assert rows[4] == [
        "describe-group",
        "describe-topic",
        "0",
        "2",
        "5",
        "3",
        member_id,
        "cli-test",
    ]
    assert rows[5] == [
        "describe-group",
        "describe-topic",
        "1",
        "3",
        "3",
        "0",
        member_id,
        "cli-test",
    ]
    assert rows[7][:8] == [
        "GROUP", "CONSUMER-ID", "GROUP-INSTANCE-ID", "CLIENT-ID", "MEMBER-EPOCH", "#PARTITIONS",
        "ASSIGNMENT", "REVOKING",
    ]  # fmt: skip
    assert rows[8][:8] == [
        "describe-group", member_id, "-", "cli-test", epoch, "2", "describe-topic(0,1)", "-",
    ]  # fmt: skip
    assert rows[8][8].isdigit()


@pytest.mark.parametrize(
    ("flag", "header"),
    [
        pytest.param("--state", ["GROUP", "STATE", "GROUP-EPOCH", "#MEMBERS"], id="state"),
        pytest.param("--offsets", ["GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET"], id="offsets"),
        pytest.param("--members", ["GROUP", "CONSUMER-ID", "GROUP-INSTANCE-ID"], id="members"),
    ],
)
def test_group_describe_one_section(shared_node: NodeProcess, flag: str, header: list[str]) -> None:
    seed_topic(shared_node, f"section{flag}", counts=(2,))
    commit(shared_node, f"section{flag}", f"section{flag}", {0: 1})
    join(shared_node, f"section{flag}", f"section{flag}", CLIENT_ID)

    result = kaflow(shared_node, "group", "describe", f"section{flag}", flag)

    rows = table_rows(result)
    assert result.returncode == 0, describe(result)
    assert rows[0][: len(header)] == header
    assert len(rows) == 2


def test_group_describe_without_members(shared_node: NodeProcess) -> None:
    seed_topic(shared_node, "idle-topic", counts=(4,))
    commit(shared_node, "idle-group", "idle-topic", {0: 1})

    result = kaflow(shared_node, "group", "describe", "idle-group")

    text = result.stdout.decode()
    assert result.returncode == 0, describe(result)
    assert ["idle-group", "idle-topic", "0", "1", "4", "3", "-", "-"] in table_rows(result)
    assert "consumer group idle-group has no active members" in text


def test_group_describe_json(shared_node: NodeProcess) -> None:
    seed_topic(shared_node, "describe-json", counts=(3,))
    commit(shared_node, "describe-json", "describe-json", {0: 1})

    result = kaflow(shared_node, "group", "describe", "describe-json", "--output", "json")

    described = json.loads(result.stdout)
    assert result.returncode == 0, describe(result)
    assert described["group"] == "describe-json"
    assert described["state"] == "empty"
    assert described["members"] == []
    [offset] = described["offsets"]
    assert (offset["committed_offset"], offset["high_watermark"], offset["lag"]) == (1, 3, 2)


def test_group_describe_unknown_group(shared_node: NodeProcess) -> None:
    result = kaflow(shared_node, "group", "describe", "never-used")

    assert result.returncode == 1, describe(result)
    assert result.stderr.decode().startswith("error: unknown_group: ")
    assert result.stdout == b""


def test_group_delete_rejected_while_active(shared_node: NodeProcess) -> None:
    seed_topic(shared_node, "delete-topic")
    commit(shared_node, "delete-group", "delete-topic", {0: 1})
    member = join(shared_node, "delete-group", "delete-topic", CLIENT_ID)

    rejected = kaflow(shared_node, "group", "delete", "delete-group")
    leave(shared_node, "delete-group", member["member_id"])
    deleted = kaflow(shared_node, "group", "delete", "delete-group")
    again = kaflow(shared_node, "group", "delete", "delete-group", "--output", "json")

    assert rejected.returncode == 1, describe(rejected)
    assert rejected.stderr.decode().startswith("error: group_not_empty: ")
    assert deleted.returncode == 0, describe(deleted)
    assert deleted.stdout.decode() == "deleted consumer group delete-group\n"
    assert again.returncode == 1, describe(again)
    assert again.stderr.decode().startswith("error: unknown_group: ")
    groups = {group["group"] for group in shared_node.get("/v1/groups")["groups"]}
    assert "delete-group" not in groups


def test_group_delete_json(shared_node: NodeProcess) -> None:
    seed_topic(shared_node, "delete-json", counts=(1,))
    commit(shared_node, "delete-json", "delete-json", {0: 1})

    result = kaflow(shared_node, "group", "delete", "delete-json", "--output", "json")

    assert result.returncode == 0, describe(result)
    assert json.loads(result.stdout) == {"group": "delete-json", "deleted": True}


# Partition 0 contains offsets 0..5 with committed offset 2; each case states the new offset.
RESET_CASES = [
    pytest.param(("--to-earliest",), 0, id="to-earliest"),
    pytest.param(("--to-latest",), 5, id="to-latest"),
    pytest.param(("--to-offset", "4"), 4, id="to-offset"),
    pytest.param(("--to-offset", "99"), 5, id="to-offset-clamped"),
    pytest.param(("--to-datetime", "1970-01-01T00:00:03.500Z"), 3, id="to-datetime-utc"),
    pytest.param(("--to-datetime", "1970-01-01T01:00:03.500+01:00"), 3, id="to-datetime-offset"),
    pytest.param(("--to-datetime", "1970-01-01T00:01:00Z"), 5, id="to-datetime-after-last"),
    pytest.param(("--shift-by", "2"), 4, id="shift-forward"),
    pytest.param(("--shift-by", "-1"), 1, id="shift-back"),
    pytest.param(("--shift-by", "-100"), 0, id="shift-below-zero-clamps"),
]


@pytest.mark.parametrize(("flags", "expected"), RESET_CASES)
def test_group_reset_dry_run_then_execute(
    shared_node: NodeProcess, request: pytest.FixtureRequest, flags: tuple[str, ...], expected: int
) -> None:
    name = "reset-" + request.node.callspec.id
    seed_topic(shared_node, name, counts=(5,))
    commit(shared_node, name, name, {0: 2})

    dry_run = kaflow(shared_node, "group", "reset-offsets", name, "--topic", name, *flags)
    unchanged = committed(shared_node, name)
    executed = kaflow(
        shared_node, "group", "reset-offsets", name, "--topic", name, *flags, "--execute"
    )

    expected_rows = [
        ["GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "NEW-OFFSET"],
        [name, name, "0", "2", str(expected)],
    ]
    assert dry_run.returncode == 0, describe(dry_run)
    assert table_rows(dry_run) == expected_rows
    assert "dry run" in dry_run.stderr.decode()
    assert "--execute" in dry_run.stderr.decode()
    assert unchanged == {(name, 0): 2}
    assert executed.returncode == 0, describe(executed)
    assert table_rows(executed) == expected_rows
    assert executed.stderr == b""
    assert committed(shared_node, name) == {(name, 0): expected}


@pytest.mark.parametrize(
    "selection",
    [
        pytest.param(("--topic", "chosen-colon:0,2"), id="topic-colon"),
        pytest.param(("--topic", "chosen-flag", "--partitions", "2,0"), id="partitions-flag"),
    ],
)
def test_group_reset_chosen_partitions(
    shared_node: NodeProcess, selection: tuple[str, ...]
) -> None:
    topic = selection[1].partition(":")[0]
    seed_topic(shared_node, topic, counts=(5, 3, 2))
    commit(shared_node, topic, topic, {0: 1, 1: 1, 2: 1})

    result = kaflow(
        shared_node, "group", "reset-offsets", topic, *selection, "--to-latest", "--execute",
        "--output", "json",
    )  # fmt: skip

    plan = json.loads(result.stdout)
    assert result.returncode == 0, describe(result)
    assert plan["dry_run"] is False
    assert [(o["partition"], o["new_offset"]) for o in plan["offsets"]] == [(0, 5), (2, 2)]
    assert committed(shared_node, topic) == {(topic, 0): 5, (topic, 1): 1, (topic, 2): 2}


def test_group_reset_rejected_while_active(shared_node: NodeProcess) -> None:
    seed_topic(shared_node, "reset-active")
    commit(shared_node, "reset-active", "reset-active", {0: 3, 1: 1})
    join(shared_node, "reset-active", "reset-active", CLIENT_ID)

    dry_run = kaflow(
        shared_node, "group", "reset-offsets", "reset-active", "--topic", "reset-active",
        "--to-earliest", "--dry-run", "--output", "json",
    )  # fmt: skip
    executed = kaflow(
        shared_node, "group", "reset-offsets", "reset-active", "--topic", "reset-active",
        "--to-earliest", "--execute",
    )  # fmt: skip

    assert dry_run.returncode == 0, describe(dry_run)
    plan = json.loads(dry_run.stdout)
    assert plan["dry_run"] is True
    assert [o["new_offset"] for o in plan["offsets"]] == [0, 0]
    assert executed.returncode == 1, describe(executed)
    assert executed.stderr.decode().startswith("error: group_not_empty: ")
    assert executed.stdout == b""
    assert committed(shared_node, "reset-active") == {
        ("reset-active", 0): 3,
        ("reset-active", 1): 1,
    }


def test_group_reset_unknown_topic(shared_node: NodeProcess) -> None:
    result = kaflow(
        shared_node, "group", "reset-offsets", "g", "--topic", "no-such-topic", "--to-earliest"
    )

    assert result.returncode == 1, describe(result)
    assert result.stderr.decode().startswith("error: unknown_topic: ")


def test_group_reset_unknown_partition(shared_node: NodeProcess) -> None:
    seed_topic(shared_node, "reset-partition", counts=(1,))

    result = kaflow(
        shared_node, "group", "reset-offsets", "g", "--topic", "reset-partition:0,9",
        "--to-earliest",
    )  # fmt: skip

    assert result.returncode == 1, describe(result)
    assert "9" in result.stderr.decode()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(("g", "--topic", "t"), "one of the arguments --to-earliest", id="no-strategy"),
        pytest.param(
            ("g", "--topic", "t", "--to-earliest", "--to-latest"),
            "not allowed with argument",
            id="two-strategies",
        ),
        pytest.param(("g", "--to-earliest"), "--topic", id="no-topic"),
        pytest.param(("g", "--topic", "t", "--to-offset", "-1"), "must be 0 or more", id="neg"),
        pytest.param(("g", "--topic", "t", "--to-offset", "x"), "invalid integer 'x'", id="nan"),
        pytest.param(("g", "--topic", "t", "--shift-by", "1.5"), "invalid shift", id="shift"),
        pytest.param(
            ("g", "--topic", "t", "--to-offset", str(2**63)),
            f"must be at most {2**63 - 1}",
            id="offset-above-int64",
        ),
        pytest.param(
            ("g", "--topic", "t", "--shift-by", str(-(2**63))),
            "invalid shift",
            id="shift-below-int64",
        ),
        pytest.param(
            ("g", "--topic", "t", "--to-latest", "--partitions", str(2**31)),
            f"must be at most {2**31 - 1}",
            id="partition-above-int32",
        ),
        pytest.param(
            ("g", "--topic", "t", "--to-datetime", "yesterday"), "invalid time", id="datetime"
        ),
        pytest.param(
            ("g", "--topic", "t", "--to-latest", "--partitions", "0,,1"),
            "invalid partition list",
            id="empty-partition",
        ),
        pytest.param(
            ("g", "--topic", "t", "--to-latest", "--partitions", "1,1"),
            "partition 1 is given more than once",
            id="duplicate-partition",
        ),
        pytest.param(
            ("g", "--topic", "t:0", "--to-latest", "--partitions", "1"),
            "partitions are given twice",
            id="partitions-twice",
        ),
        pytest.param(("g", "--topic", ":0", "--to-latest"), "invalid topic", id="empty-topic"),
        pytest.param(
            ("g", "--topic", "t", "--to-latest", "--dry-run", "--execute"),
            "not allowed with argument",
            id="dry-run-and-execute",
        ),
        pytest.param(("bad/name", "--topic", "t", "--to-latest"), "contains '/'", id="group"),
    ],
)
def test_group_reset_usage_errors(args: tuple[str, ...], message: str) -> None:
    # Usage errors are found before any request, so the node URL needs nothing behind it.
    result = run_kaflow("group", "reset-offsets", *args, bootstrap=closed_port_url())

    assert result.returncode == 2, describe(result)
    assert result.stderr.decode().startswith("usage: kaflow group reset-offsets ")
    assert message in result.stderr.decode()


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(("group",), id="no-action"),
        pytest.param(("group", "describe"), id="describe-no-group"),
        pytest.param(("group", "describe", "g", "--state", "--members"), id="two-sections"),
        pytest.param(("group", "delete", ".."), id="reserved-name"),
    ],
)
def test_group_usage_errors(args: tuple[str, ...]) -> None:
    result = run_kaflow(*args, bootstrap=closed_port_url())

    assert result.returncode == 2, describe(result)
    assert result.stderr.decode().startswith("usage: kaflow group")


def test_group_list_unreachable_node() -> None:
    result = run_kaflow("group", "list", "--timeout", "2", bootstrap=closed_port_url())

    assert result.returncode == 3, describe(result)
    assert result.stderr.decode().startswith("error: cannot connect to the node")


def test_format_group_null_cells() -> None:
    # A follower has no heartbeat ages, and a member may join without a client id.
    member = {
        "member_id": "m1", "group_instance_id": None, "client_id": "", "member_epoch": 3,
        "topics": ["t"], "assignment": [{"topic": "t", "partitions": [1, 0]}],
        "revoking": [{"topic": "t", "partitions": [2]}], "session_timeout_ms": 45000,
        "rebalance_timeout_ms": 300000, "last_heartbeat_ms_ago": None,
    }  # fmt: skip
    described = {"group": "g", "state": "reconciling", "group_epoch": 4, "members": [member]}

    rows = [line.split() for line in format_group(described, "members").splitlines()]

    assert rows[1] == ["g", "m1", "-", "-", "3", "2", "t(0,1)", "t(2)", "-"]


@pytest.mark.slow
def test_group_commands_through_follower(tmp_path: Path) -> None:
    cluster = ClusterProcess(tmp_path / "cluster", size=3).start()
    try:
        leader = cluster.wait_for_leader()
        follower = next(member for member in cluster.members if member is not leader)
        seed_topic(leader, "via-follower", counts=(3,))
        commit(leader, "via-follower", "via-follower", {0: 1})
        member = join(leader, "via-follower", "via-follower", CLIENT_ID)

        def follower_sees_member() -> bool:
            result = kaflow(follower, "group", "describe", "via-follower", "--members")
            return result.returncode == 0 and member["member_id"] in result.stdout.decode()

        wait_until(follower_sees_member, 30, "the follower to apply the join")
        described = kaflow(follower, "group", "describe", "via-follower", "--members")
        rejected = kaflow(follower, "group", "delete", "via-follower")
        leave(leader, "via-follower", member["member_id"])
        reset = kaflow(
            follower, "group", "reset-offsets", "via-follower", "--topic", "via-follower",
            "--to-latest", "--execute",
        )  # fmt: skip
        committed_on_leader = committed(leader, "via-follower")
        deleted = kaflow(follower, "group", "delete", "via-follower")
    finally:
        cluster.close()

    # Only the leader tracks heartbeats, so the follower prints '-' for their age.
    assert table_rows(described)[1][-1] == "-"
    assert rejected.returncode == 1, describe(rejected)
    assert rejected.stderr.decode().startswith("error: group_not_empty: ")
    assert reset.returncode == 0, describe(reset)
    assert committed_on_leader == {("via-follower", 0): 3}
    assert deleted.returncode == 0, describe(deleted)
