from __future__ import annotations

from pathlib import Path

import pytest

from kaflow.errors import StorageError
from kaflow.replication.commands import (
    AlterTopic,
    Append,
    AppendItem,
    Command,
    CommitOffsets,
    CreateTopic,
    DeleteRecords,
    DeleteTopic,
    OffsetEntry,
)
from kaflow.replication.results import AppendedBatch, Rejection
from kaflow.replication.state import GroupOffset, PartitionState, ReplicatedState, decode_state
from kaflow.replication.state_machine import StateMachine
from kaflow.storage.manager import LogManager
from tests.replication.conftest import Applier, make_batch


def values(logs: LogManager, topic: str, partition: int, offset: int = 0) -> list[bytes | None]:
    records = logs.get(topic, partition).read_records(offset, 1 << 20, 10_000)
    return [record.value for record in records]


def content(machine: StateMachine) -> ReplicatedState:
    """Return the replicated state without its index, which every apply advances."""
    state = decode_state(machine.snapshot())
    state.index = 0
    return state


def create(
    apply: Applier, name: str = "t", partitions: int = 2, config: dict[str, int] | None = None
) -> int:
    """Create a topic and return its topic id (the creating Raft index)."""
    result = apply(CreateTopic(name, partitions, config or {}))
    assert result.ok, result.rejection
    return apply.index


def append(apply: Applier, topic_id: int, partition: int, *records: bytes) -> AppendedBatch:
    result = apply(
        Append([AppendItem("t", topic_id, partition, make_batch(*records), len(records))])
    )
    assert result.ok
    (outcome,) = result.appended
    assert isinstance(outcome, AppendedBatch), outcome
    return outcome


def test_create_topic_creates_partition_logs(
    apply: Applier, machine: StateMachine, logs: LogManager
) -> None:
    topic_id = create(apply, partitions=3, config={"retention.ms": 60_000})

    topic = machine.topic("t")
    assert topic is not None
    assert topic.partitions == 3
    assert topic.config == {"retention.ms": 60_000}
    assert topic.created_index == topic_id
    assert logs.partitions() == [("t", 0), ("t", 1), ("t", 2)]
    assert logs.get("t", 0).config.retention_ms == 60_000
    assert machine.partitions("t") == [PartitionState(0, 0)] * 3


def test_append_assigns_consecutive_offsets(
    apply: Applier, machine: StateMachine, logs: LogManager
) -> None:
    topic_id = create(apply)
    result = apply(
        Append(
            [
                AppendItem("t", topic_id, 0, make_batch(b"a", b"b"), 2),
                AppendItem("t", topic_id, 1, make_batch(b"x"), 1),
                AppendItem("t", topic_id, 0, make_batch(b"c", b"d", b"e"), 3),
            ]
        )
    )

    assert result.appended == (AppendedBatch(0, 1), AppendedBatch(0, 0), AppendedBatch(2, 4))
    assert machine.partition("t", 0) == PartitionState(0, 5)
    assert machine.partition("t", 1) == PartitionState(0, 1)
    assert values(logs, "t", 0) == [b"a", b"b", b"c", b"d", b"e"]
    assert machine.applied_index == apply.index


def test_append_notifies_partition_listener(apply: Applier, machine: StateMachine) -> None:
    changed: list[list[tuple[str, int]]] = []
    machine.on_partitions_changed = changed.append
    topic_id = create(apply)

    append(apply, topic_id, 1, b"v")

    assert changed[-1] == [("t", 1)]


def test_append_to_recreated_topic_rejected(
    apply: Applier, machine: StateMachine, logs: LogManager
) -> None:
    old_id = create(apply)
    apply(DeleteTopic("t"))
    create(apply)
    before = content(machine)

    result = apply(Append([AppendItem("t", old_id, 0, make_batch(b"stale"), 1)]))

    (outcome,) = result.appended
    assert isinstance(outcome, Rejection)
    assert outcome.code == "unknown_topic"
    assert content(machine) == before
    assert logs.get("t", 0).log_end_offset == 0


def test_append_rejects_only_the_bad_item(apply: Applier, machine: StateMachine) -> None:
    topic_id = create(apply)

    result = apply(
        Append(
            [
                AppendItem("t", topic_id, 9, make_batch(b"lost"), 1),
                AppendItem("t", topic_id, 0, make_batch(b"kept"), 1),
            ]
        )
    )

    first, second = result.appended
    assert isinstance(first, Rejection) and first.code == "unknown_partition"
    assert second == AppendedBatch(0, 0)
    assert machine.partition("t", 0) == PartitionState(0, 1)


def _rejected_commands() -> list[tuple[Command, str]]:
    return [
        (CreateTopic("t", 1, {}), "topic_already_exists"),
        (CreateTopic("a_b", 1, {}), "topic_collision"),
        (CreateTopic("bad name", 1, {}), "invalid_topic_name"),
        (CreateTopic("u", 0, {}), "invalid_partitions"),
        (CreateTopic("u", 1, {"segment.bytes": 5}), "invalid_config"),
        (DeleteTopic("missing"), "unknown_topic"),
        (AlterTopic("t", 1, {}, []), "invalid_partitions"),
        (AlterTopic("t", None, {}, ["nope"]), "invalid_config"),
        (AlterTopic("missing", 3, {}, []), "unknown_topic"),
        (CommitOffsets("g", [OffsetEntry("missing", 0, 1, "")], 5), "unknown_topic"),
        (CommitOffsets("g", [OffsetEntry("t", 7, 1, "")], 5), "unknown_partition"),
        (
            CommitOffsets("g", [OffsetEntry("t", 0, 1, ""), OffsetEntry("t", 0, -1, "")], 5),
            "offset_out_of_range",
        ),
        (CommitOffsets("", [OffsetEntry("t", 0, 1, "")], 5), "invalid_record"),
        (DeleteRecords("t", 0, 99), "offset_out_of_range"),
        (DeleteRecords("t", 5, 1), "unknown_partition"),
    ]


@pytest.mark.parametrize(
    "case",
    range(15),
    ids=[
        "create-existing",
        "create-colliding",
        "create-bad-name",
        "create-zero-partitions",
        "create-bad-config",
        "delete-unknown",
        "alter-shrink",
        "alter-unknown-config",
        "alter-unknown-topic",
        "commit-unknown-topic",
        "commit-unknown-partition",
        "commit-negative-offset",
        "commit-empty-group",
        "delete-records-past-end",
        "delete-records-unknown-partition",
    ],
)
def test_apply_rejection_changes_nothing(
    case: int, apply: Applier, machine: StateMachine, logs: LogManager, tmp_path: Path
) -> None:
    topic_id = create(apply)
    create(apply, "a.b", 1)
    append(apply, topic_id, 0, b"a", b"b")
    command, code = _rejected_commands()[case]
    before = content(machine)
    files_before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))

    result = apply(command)

    assert result.rejection is not None
    assert result.rejection.code == code
    assert content(machine) == before
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == files_before


def test_undecodable_command_rejected(machine: StateMachine) -> None:
    result = machine.apply(b"\x93not a map", 2)

    assert result.rejection is not None
    assert result.rejection.code == "invalid_record"
    assert machine.failure is None


def test_delete_topic_removes_logs_and_offsets(
    apply: Applier, machine: StateMachine, logs: LogManager
) -> None:
    topic_id = create(apply)
    create(apply, "other", 1)
    append(apply, topic_id, 0, b"a")
    apply(CommitOffsets("g", [OffsetEntry("t", 0, 1, ""), OffsetEntry("other", 0, 0, "")], 7))
    apply(CommitOffsets("only-t", [OffsetEntry("t", 1, 0, "")], 7))

    assert apply(DeleteTopic("t")).ok

    assert machine.topic("t") is None
    assert logs.partitions() == [("other", 0)]
    assert not (logs.logs_directory / "t-0").exists()
    assert machine.group_offsets("g") == {("other", 0): GroupOffset(0, "", 7)}
    assert machine.groups() == ["g"]


def test_alter_grows_partitions_and_sets_config(
    apply: Applier, machine: StateMachine, logs: LogManager
) -> None:
    create(apply, partitions=1, config={"retention.ms": 1000})

    result = apply(AlterTopic("t", 3, {"segment.bytes": 4096}, ["retention.ms"]))

    assert result.ok
    topic = machine.topic("t")
    assert topic is not None
    assert topic.partitions == 3
    assert topic.config == {"segment.bytes": 4096}
    assert logs.partitions() == [("t", 0), ("t", 1), ("t", 2)]
    assert logs.get("t", 0).config.segment_bytes == 4096
    assert logs.get("t", 0).config.retention_ms == 7 * 24 * 60 * 60 * 1000
    assert logs.get("t", 2).config.segment_bytes == 4096
    assert machine.partition("t", 2) == PartitionState(0, 0)


def test_commit_offsets_use_command_timestamp(apply: Applier, machine: StateMachine) -> None:
    create(apply)

    apply(CommitOffsets("g", [OffsetEntry("t", 1, 1234, "meta")], 1_700_000_000_000))

    assert machine.group_offsets("g") == {("t", 1): GroupOffset(1234, "meta", 1_700_000_000_000)}


def test_delete_records_advances_log_start(
    apply: Applier, machine: StateMachine, logs: LogManager
) -> None:
    topic_id = create(apply, partitions=1, config={"segment.bytes": 1024})
    for _ in range(6):
        append(apply, topic_id, 0, *[b"x" * 100] * 5)
    segments_before = logs.get("t", 0).segment_count

    assert apply(DeleteRecords("t", 0, 20)).ok

    assert machine.partition("t", 0) == PartitionState(20, 30)
    log = logs.get("t", 0)
    assert log.log_start_offset == 20
    assert log.segment_count < segments_before
    assert values(logs, "t", 0, 20) == [b"x" * 100] * 10


def test_delete_records_below_start_is_noop(apply: Applier, machine: StateMachine) -> None:
    topic_id = create(apply, partitions=1)
    append(apply, topic_id, 0, b"a", b"b", b"c")
    apply(DeleteRecords("t", 0, 2))

    assert apply(DeleteRecords("t", 0, 1)).ok

    assert machine.partition("t", 0) == PartitionState(2, 3)


def _feed(apply: Applier) -> None:
    topic_id = create(apply, partitions=2, config={"segment.bytes": 1024})
    for round_number in range(20):
        apply(
            Append(
                [
                    AppendItem("t", topic_id, round_number % 2, make_batch(b"v" * 90, b"w"), 2),
                    AppendItem("t", topic_id, 7, make_batch(b"rejected"), 1),
                ]
            )
        )
    apply(DeleteRecords("t", 0, 6))
    apply(AlterTopic("t", 3, {"retention.ms": 5000}, []))
    apply(CommitOffsets("g", [OffsetEntry("t", 2, 0, "m")], 99))
    create(apply, "gone", 1)
    apply(DeleteTopic("gone"))


def _file_contents(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes() for path in root.rglob("*") if path.is_file()
    }


def test_state_machines_are_deterministic(tmp_path: Path) -> None:
    snapshots = []
    contents = []
    for name in ("a", "b"):
        logs = LogManager(tmp_path / name)
        logs.open_existing()
        machine = StateMachine(logs)
        _feed(Applier(machine))
        snapshots.append(machine.snapshot())
        logs.close()
        contents.append(_file_contents(tmp_path / name / "logs"))

    assert snapshots[0] == snapshots[1]
    assert contents[0] == contents[1]
    assert any(name.startswith("t-0/") for name in contents[0])


def test_snapshot_round_trips(apply: Applier, machine: StateMachine) -> None:
    _feed(apply)

    state = decode_state(machine.snapshot())

    assert state.index == apply.index
    assert set(state.topics) == {"t"}
    assert state.partitions[("t", 0)] == PartitionState(6, 20)
    assert state.groups == {"g": {("t", 2): GroupOffset(0, "m", 99)}}


def test_restore_truncates_logs_that_ran_ahead(
    apply: Applier, machine: StateMachine, logs: LogManager
) -> None:
    topic_id = create(apply, partitions=1)
    append(apply, topic_id, 0, b"a", b"b")
    snapshot = machine.snapshot()
    append(apply, topic_id, 0, b"c")
    create(apply, "late", 1)

    machine.restore(snapshot)

    assert machine.snapshot() == snapshot
    assert logs.partitions() == [("t", 0)]
    assert not (logs.logs_directory / "late-0").exists()
    assert logs.get("t", 0).log_end_offset == 2
    assert values(logs, "t", 0) == [b"a", b"b"]
    assert machine.topic("late") is None


def test_restore_advances_log_start(
    apply: Applier, machine: StateMachine, logs: LogManager
) -> None:
    topic_id = create(apply, partitions=1)
    append(apply, topic_id, 0, b"a", b"b", b"c")
    apply(DeleteRecords("t", 0, 2))
    snapshot = machine.snapshot()
    logs.get("t", 0).truncate_to(0)
    append_again = logs.get("t", 0)
    append_again.append(make_batch(b"a", b"b", b"c"))

    machine.restore(snapshot)

    assert logs.get("t", 0).log_start_offset == 2
    assert values(logs, "t", 0, 2) == [b"c"]


def test_restore_with_missing_records_raises(
    apply: Applier, machine: StateMachine, logs: LogManager
) -> None:
    topic_id = create(apply, partitions=1)
    append(apply, topic_id, 0, b"a", b"b")
    snapshot = machine.snapshot()
    logs.get("t", 0).truncate_to(0)

    with pytest.raises(StorageError, match="records are missing") as raised:
        machine.restore(snapshot)

    assert raised.value.details["expected_log_end_offset"] == 2


def test_reset_deletes_every_log(apply: Applier, machine: StateMachine, logs: LogManager) -> None:
    create(apply, partitions=2)

    machine.reset()

    assert logs.partitions() == []
    assert machine.topics() == []
    assert machine.stored_partitions() == []


def test_storage_failure_halts_apply(
    apply: Applier, machine: StateMachine, logs: LogManager
) -> None:
    failures: list[BaseException] = []
    machine.on_failure = failures.append
    topic_id = create(apply, partitions=1)
    logs.get("t", 0).close()

    result = apply(Append([AppendItem("t", topic_id, 0, make_batch(b"a"), 1)]))

    assert result.rejection is not None
    assert result.rejection.code == "storage_error"
    assert isinstance(machine.failure, StorageError)
    assert failures == [machine.failure]
    later = apply(CreateTopic("other", 1, {}))
    assert later.rejection is not None and later.rejection.code == "storage_error"
    assert machine.topic("other") is None
    with pytest.raises(StorageError, match="no snapshot is taken"):
        machine.snapshot()
