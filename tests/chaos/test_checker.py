"""The chaos checker on synthetic run logs: a clean run passes, each violation kind is caught."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from chaos.checker import check, longest_gap, record_identity
from chaos.verdict import NodeLog, RunLogs, ViolationKind


def stored(offset: int, producer: str, seq: int, timestamp: int = 1_000) -> dict[str, Any]:
    value = json.dumps({"producer": producer, "seq": seq}).encode()
    return {
        "offset": offset,
        "timestamp": timestamp + offset,
        "key_b64": base64.b64encode(f"{producer}-{seq % 4}".encode()).decode(),
        "value_b64": base64.b64encode(value).decode(),
        "headers": [],
    }


def ack(producer: str, seq: int, partition: int, offset: int, t: float) -> dict[str, Any]:
    return {
        "producer": producer,
        "key": f"{producer}-{seq % 4}",
        "seq": seq,
        "status": "ack",
        "topic": "chaos",
        "partition": partition,
        "offset": offset,
        "t_send": t - 0.01,
        "t_ack": t,
    }


def clean_logs() -> RunLogs:
    """Three nodes, two partitions of five records each, all acknowledged and consumed."""
    acks: list[dict[str, Any]] = []
    partitions: dict[int, list[dict[str, Any]]] = {}
    seq = 0
    for partition in (0, 1):
        records = []
        for offset in range(5):
            records.append(stored(offset, "p1", seq))
            acks.append(ack("p1", seq, partition, offset, 1.0 + seq * 0.5))
            seq += 1
        partitions[partition] = records
    nodes = {
        name: {p: NodeLog(0, len(records), [dict(r) for r in records])
               for p, records in partitions.items()}
        for name in ("n1", "n2", "n3")
    }  # fmt: skip
    consumed = [
        {"consumer": "c1", "member_id": "c1", "member_epoch": None, "partition": p,
         "offset": o, "t": 2.0 + o}
        for p in (0, 1) for o in range(5)
    ]  # fmt: skip
    commits = [
        {"consumer": "c1", "member_id": "c1", "member_epoch": None, "partition": p,
         "offset": 5, "t": 8.0}
        for p in (0, 1)
    ]  # fmt: skip
    committed = [
        {"t": t, "node": "n1", "partition": 0, "offset": offset}
        for t, offset in ((3.0, 2), (6.0, 5))
    ]
    return RunLogs(
        acks=acks,
        consumed=consumed,
        commits=commits,
        committed=committed,
        nodes=nodes,
        load_window=(1.0, 6.0),
    )


def kinds(logs: RunLogs, bound: float | None = 10.0) -> set[ViolationKind]:
    return {violation.kind for violation in check(logs, bound).violations}


def test_check_clean_run_passes() -> None:
    result = check(clean_logs(), 10.0)

    assert result.passed, [v.to_json() for v in result.violations]
    assert result.stats["acked"] == 10
    assert result.stats["records_per_node"] == {"n1": 10, "n2": 10, "n3": 10}


def test_check_lost_ack() -> None:
    logs = clean_logs()
    for node in logs.nodes.values():
        del node[1].records[4]
        node[1].high_watermark = 4

    assert kinds(logs) == {ViolationKind.LOST_ACK}


def test_check_ack_at_other_offset() -> None:
    logs = clean_logs()
    logs.acks[0]["offset"] = 3

    assert kinds(logs) == {ViolationKind.ACK_MISMATCH}


def test_check_duplicate_record() -> None:
    logs = clean_logs()
    for node in logs.nodes.values():
        node[0].records.append(stored(5, "p1", 4))
        node[0].high_watermark = 6

    found = kinds(logs)

    assert ViolationKind.DUPLICATE in found
    assert ViolationKind.REPLICA_DIVERGENCE not in found


def test_check_order_violation() -> None:
    logs = clean_logs()
    for node in logs.nodes.values():
        records = node[0].records
        records[1], records[2] = stored(1, "p1", 2), stored(2, "p1", 1)
    for entry in logs.acks:
        if entry["seq"] in (1, 2):
            entry["offset"] = 3 - entry["offset"]

    assert kinds(logs) == {ViolationKind.ORDER}


def test_check_offset_hole() -> None:
    logs = clean_logs()
    node = logs.nodes["n2"][0]
    node.records = [r for r in node.records if r["offset"] != 2]
    logs.acks = [a for a in logs.acks if not (a["partition"] == 0 and a["offset"] == 2)]

    found = kinds(logs)

    assert ViolationKind.OFFSET_GAP in found
    assert ViolationKind.LOST_ACK not in found


def test_check_offset_reused() -> None:
    logs = clean_logs()
    records = logs.nodes["n3"][1].records
    records[3] = dict(records[3], offset=2)

    assert ViolationKind.OFFSET_GAP in kinds(logs)


def test_check_replicas_differ() -> None:
    logs = clean_logs()
    logs.nodes["n3"][1].records[2]["timestamp"] += 1

    result = check(logs, 10.0)

    assert {v.kind for v in result.violations} == {ViolationKind.REPLICA_DIVERGENCE}
    assert result.violations[0].examples[0]["fields"] == ["timestamp"]


def test_check_replica_shorter() -> None:
    logs = clean_logs()
    short = logs.nodes["n2"][0]
    short.records = short.records[:3]
    short.high_watermark = 3

    found = kinds(logs)

    assert ViolationKind.REPLICA_DIVERGENCE in found
    assert ViolationKind.LOST_ACK in found


def test_check_unexpected_record() -> None:
    logs = clean_logs()
    for node in logs.nodes.values():
        node[0].records.append(dict(stored(5, "p1", 0), value_b64="bm90IGpzb24="))
        node[0].high_watermark = 6

    assert kinds(logs) == {ViolationKind.UNEXPECTED_RECORD}


def test_check_unreadable_node() -> None:
    logs = clean_logs()
    del logs.nodes["n3"]
    logs.node_errors["n3"] = "connection refused"

    assert kinds(logs) == {ViolationKind.NODE_UNREADABLE}


def test_check_node_without_topic_lost_acks() -> None:
    logs = clean_logs()
    del logs.nodes["n3"]
    logs.node_errors["n3"] = "GET ... returned 404: {'error': {'code': 'unknown_topic'}}"

    assert kinds(logs) == {ViolationKind.NODE_UNREADABLE, ViolationKind.LOST_ACK}


def test_check_commit_backwards() -> None:
    logs = clean_logs()
    logs.committed.append({"t": 7.0, "node": "n1", "partition": 0, "offset": 3})

    assert kinds(logs) == {ViolationKind.COMMIT_BACKWARDS}


def test_check_commit_backwards_after_reset_allowed() -> None:
    logs = clean_logs()
    logs.committed.append({"t": 7.0, "node": "n1", "partition": 0, "offset": 3})
    logs.resets.append({"t": 6.5, "partition": 0})

    assert kinds(logs) == set()


def test_check_commits_on_lagging_node_judged_alone() -> None:
    logs = clean_logs()
    logs.committed.append({"t": 6.5, "node": "n2", "partition": 0, "offset": 1})

    assert kinds(logs) == set()


def test_check_concurrent_consumption() -> None:
    logs = clean_logs()
    logs.consumed.append(
        {"consumer": "c2", "member_id": "m2", "member_epoch": 3, "partition": 0,
         "offset": 2, "t": 3.5}
    )  # fmt: skip
    logs.commits.append(
        {"consumer": "c2", "member_id": "m2", "member_epoch": 3, "partition": 0,
         "offset": 3, "t": 3.6}
    )  # fmt: skip

    assert kinds(logs) == {ViolationKind.CONCURRENT_CONSUMPTION}


def test_check_fenced_member_not_counted() -> None:
    logs = clean_logs()
    # m2 processed offset 2 during c1's time, but no commit of m2 epoch 3 covers it.
    logs.consumed.append(
        {"consumer": "c2", "member_id": "m2", "member_epoch": 3, "partition": 0,
         "offset": 2, "t": 3.5}
    )  # fmt: skip

    assert kinds(logs) == set()


def test_check_handover_after_crash_allowed() -> None:
    logs = clean_logs()
    logs.consumed += [
        {"consumer": "c2", "member_id": "c2", "member_epoch": None, "partition": 0,
         "offset": o, "t": 7.0 + o}
        for o in (3, 4)
    ]  # fmt: skip
    logs.commits.append(
        {"consumer": "c2", "member_id": "c2", "member_epoch": None, "partition": 0,
         "offset": 5, "t": 12.0}
    )  # fmt: skip

    assert kinds(logs) == set()


def test_check_consumption_gap() -> None:
    logs = clean_logs()
    logs.consumed = [c for c in logs.consumed if not (c["partition"] == 1 and c["offset"] == 3)]

    assert kinds(logs) == {ViolationKind.CONSUMPTION_GAP}


def test_check_unavailability_over_bound() -> None:
    logs = clean_logs()
    logs.load_window = (1.0, 30.0)

    result = check(logs, 10.0)

    assert {v.kind for v in result.violations} == {ViolationKind.UNAVAILABILITY}
    assert result.stats["longest_unavailability_s"] == pytest.approx(24.5)


def test_check_unavailability_without_bound_reported_only() -> None:
    logs = clean_logs()
    logs.load_window = (1.0, 30.0)

    result = check(logs, None)

    assert result.passed
    assert result.stats["longest_unavailability_s"] == pytest.approx(24.5)


@pytest.mark.parametrize(
    ("times", "window", "expected"),
    [
        ([], (0.0, 5.0), (5.0, 0.0)),
        ([1.0, 2.0, 6.0], (0.0, 8.0), (4.0, 2.0)),
        ([0.5, 9.0], (1.0, 8.0), (7.0, 1.0)),
    ],
    ids=["no-acks", "middle-gap", "acks-outside-window"],
)
def test_longest_gap(
    times: list[float], window: tuple[float, float], expected: tuple[float, float]
) -> None:
    assert longest_gap(times, window) == expected


@pytest.mark.parametrize(
    "value_b64",
    [None, "!!!", base64.b64encode(b"[1, 2]").decode(), base64.b64encode(b'{"seq": 1}').decode()],
    ids=["null", "bad-base64", "not-object", "no-producer"],
)
def test_record_identity_rejects_foreign_values(value_b64: str | None) -> None:
    assert record_identity({"value_b64": value_b64}) is None
