"""Idempotent produce in the state machine: duplicates, gaps, fencing, expiry, snapshots."""

from __future__ import annotations

from pathlib import Path

import pytest

from kaflow.broker import ProducerIdAndEpoch
from kaflow.replication.commands import (
    Append,
    AppendItem,
    Command,
    CreateTopic,
    DeleteTopic,
    InitProducer,
    ProducerBatch,
)
from kaflow.replication.producers import PRODUCER_ID_EXPIRATION_MS
from kaflow.replication.results import AppendedBatch, CommandResult, Rejection
from kaflow.replication.state import decode_state
from kaflow.replication.state_machine import StateMachine
from kaflow.storage.manager import LogManager
from tests.replication.conftest import Applier, make_batch

T0 = 1_700_000_000_000


def values(logs: LogManager, partition: int = 0) -> list[bytes | None]:
    records = logs.get("t", partition).read_records(0, 1 << 20, 10_000)
    return [record.value for record in records]


def create(apply: Applier, partitions: int = 2) -> int:
    assert apply(CreateTopic("t", partitions, {})).ok
    return apply.index


def init(apply: Applier, producer_id: int | None = None, timestamp: int = T0) -> CommandResult:
    return apply(InitProducer(producer_id, timestamp))


def new_producer(apply: Applier, timestamp: int = T0) -> ProducerIdAndEpoch:
    result = init(apply, timestamp=timestamp)
    assert result.ok, result.rejection
    assert result.producer is not None
    return result.producer


def sequenced(
    topic_id: int,
    producer: ProducerIdAndEpoch,
    base_sequence: int,
    *records: bytes,
    partition: int = 0,
    timestamp: int = T0,
    epoch: int | None = None,
) -> AppendItem:
    fields = ProducerBatch(
        producer.producer_id,
        producer.producer_epoch if epoch is None else epoch,
        base_sequence,
        timestamp,
    )
    return AppendItem("t", topic_id, partition, make_batch(*records), len(records), fields)


def append_one(apply: Applier, item: AppendItem) -> AppendedBatch | Rejection:
    result = apply(Append([item]))
    assert result.ok, result.rejection
    (outcome,) = result.appended
    return outcome


def rejected_code(outcome: AppendedBatch | Rejection) -> str:
    assert isinstance(outcome, Rejection), outcome
    return outcome.code


def test_init_producer_allocates_consecutive_ids(apply: Applier) -> None:
    first = new_producer(apply)
    second = new_producer(apply)

    assert first == ProducerIdAndEpoch(0, 0)
    assert second == ProducerIdAndEpoch(1, 0)


def test_init_producer_bumps_epoch(apply: Applier) -> None:
    producer = new_producer(apply)

    bumped = init(apply, producer.producer_id)

    assert bumped.producer == ProducerIdAndEpoch(producer.producer_id, 1)


def test_init_producer_unknown_id_rejected(apply: Applier) -> None:
    result = init(apply, 42)

    assert result.rejection is not None
    assert result.rejection.code == "unknown_producer_id"
    assert result.rejection.details["producer_id"] == 42


def test_duplicate_batch_gets_original_offsets(apply: Applier, logs: LogManager) -> None:
    topic_id = create(apply)
    producer = new_producer(apply)
    append_one(apply, AppendItem("t", topic_id, 0, make_batch(b"plain"), 1))

    first = append_one(apply, sequenced(topic_id, producer, 0, b"a", b"b", timestamp=T0 + 5))
    retry = append_one(apply, sequenced(topic_id, producer, 0, b"a", b"b", timestamp=T0 + 9))

    assert first == AppendedBatch(1, 2)
    assert not first.duplicate
    assert retry == AppendedBatch(1, 2, original_timestamp=T0 + 5)
    assert retry.duplicate
    assert values(logs) == [b"plain", b"a", b"b"]


def test_next_sequence_appended(apply: Applier, logs: LogManager) -> None:
    topic_id = create(apply)
    producer = new_producer(apply)

    first = append_one(apply, sequenced(topic_id, producer, 0, b"a", b"b"))
    second = append_one(apply, sequenced(topic_id, producer, 2, b"c"))

    assert first == AppendedBatch(0, 1)
    assert second == AppendedBatch(2, 2)
    assert values(logs) == [b"a", b"b", b"c"]


@pytest.mark.parametrize(
    ("base_sequence", "expected"),
    [(3, 2), (1, 2), (7, 2)],
    ids=["gap", "overlap", "far-ahead"],
)
def test_out_of_order_sequence_rejected(
    apply: Applier, logs: LogManager, base_sequence: int, expected: int
) -> None:
    topic_id = create(apply)
    producer = new_producer(apply)
    append_one(apply, sequenced(topic_id, producer, 0, b"a", b"b"))

    outcome = append_one(apply, sequenced(topic_id, producer, base_sequence, b"x"))

    assert rejected_code(outcome) == "out_of_order_sequence"
    assert isinstance(outcome, Rejection)
    assert outcome.details["expected_sequence"] == expected
    assert values(logs) == [b"a", b"b"]


def test_first_batch_must_start_at_zero(apply: Applier, logs: LogManager) -> None:
    topic_id = create(apply)
    producer = new_producer(apply)

    outcome = append_one(apply, sequenced(topic_id, producer, 5, b"a"))

    assert rejected_code(outcome) == "out_of_order_sequence"
    assert values(logs) == []


def test_sequences_count_per_partition(apply: Applier) -> None:
    topic_id = create(apply)
    producer = new_producer(apply)

    on_zero = append_one(apply, sequenced(topic_id, producer, 0, b"a", partition=0))
    on_one = append_one(apply, sequenced(topic_id, producer, 0, b"b", partition=1))

    assert on_zero == AppendedBatch(0, 0)
    assert on_one == AppendedBatch(0, 0)


def test_last_five_batches_recognised_as_retries(apply: Applier, logs: LogManager) -> None:
    topic_id = create(apply)
    producer = new_producer(apply)
    for sequence in range(6):
        append_one(apply, sequenced(topic_id, producer, sequence, b"%d" % sequence))

    oldest_cached = append_one(apply, sequenced(topic_id, producer, 1, b"1"))
    evicted = append_one(apply, sequenced(topic_id, producer, 0, b"0"))

    assert oldest_cached == AppendedBatch(1, 1, original_timestamp=T0)
    assert rejected_code(evicted) == "out_of_order_sequence"
    assert len(values(logs)) == 6


def test_same_base_sequence_other_count_rejected(apply: Applier) -> None:
    topic_id = create(apply)
    producer = new_producer(apply)
    append_one(apply, sequenced(topic_id, producer, 0, b"a", b"b"))

    outcome = append_one(apply, sequenced(topic_id, producer, 0, b"a"))

    assert rejected_code(outcome) == "out_of_order_sequence"


def test_old_epoch_fenced_after_bump(apply: Applier, logs: LogManager) -> None:
    topic_id = create(apply)
    producer = new_producer(apply)
    append_one(apply, sequenced(topic_id, producer, 0, b"a"))
    init(apply, producer.producer_id)

    fenced = append_one(apply, sequenced(topic_id, producer, 1, b"zombie"))
    restarted = append_one(apply, sequenced(topic_id, producer, 0, b"b", epoch=1))

    assert rejected_code(fenced) == "invalid_producer_epoch"
    assert isinstance(fenced, Rejection)
    assert fenced.details["current_epoch"] == 1
    assert restarted == AppendedBatch(1, 1)
    assert values(logs) == [b"a", b"b"]


def test_future_epoch_rejected(apply: Applier) -> None:
    topic_id = create(apply)
    producer = new_producer(apply)

    outcome = append_one(apply, sequenced(topic_id, producer, 0, b"a", epoch=3))

    assert rejected_code(outcome) == "invalid_producer_epoch"


def test_unknown_producer_append_rejected(apply: Applier, logs: LogManager) -> None:
    topic_id = create(apply)

    outcome = append_one(apply, sequenced(topic_id, ProducerIdAndEpoch(9, 0), 0, b"a"))

    assert rejected_code(outcome) == "unknown_producer_id"
    assert values(logs) == []


def test_one_command_dedups_items_in_order(apply: Applier, logs: LogManager) -> None:
    topic_id = create(apply)
    producer = new_producer(apply)

    # Group commit can put a request, its retry and the next request in one command.
    result = apply(
        Append(
            [
                sequenced(topic_id, producer, 0, b"a", b"b"),
                sequenced(topic_id, producer, 0, b"a", b"b"),
                sequenced(topic_id, producer, 2, b"c"),
                sequenced(topic_id, producer, 9, b"late"),
            ]
        )
    )

    assert result.appended[0] == AppendedBatch(0, 1)
    assert result.appended[1] == AppendedBatch(0, 1, original_timestamp=T0)
    assert result.appended[2] == AppendedBatch(2, 2)
    assert rejected_code(result.appended[3]) == "out_of_order_sequence"
    assert values(logs) == [b"a", b"b", b"c"]


def test_producer_expires_after_idle_time(apply: Applier) -> None:
    topic_id = create(apply)
    producer = new_producer(apply)
    other = new_producer(apply)
    last_write = T0 + PRODUCER_ID_EXPIRATION_MS
    append_one(apply, sequenced(topic_id, other, 0, b"keeps other alive", timestamp=last_write))

    # Another producer's command moves the clock past the first one's expiry.
    later = last_write + 1
    assert init(apply, timestamp=later).ok
    expired = append_one(apply, sequenced(topic_id, producer, 0, b"a", timestamp=later))
    alive = append_one(apply, sequenced(topic_id, other, 1, b"b", timestamp=later))

    assert rejected_code(expired) == "unknown_producer_id"
    assert alive == AppendedBatch(1, 1)


def test_clock_never_goes_back(apply: Applier, machine: StateMachine) -> None:
    topic_id = create(apply)
    producer = new_producer(apply, timestamp=T0 + 1_000)

    # A new leader with a slower clock proposes an earlier time.
    outcome = append_one(apply, sequenced(topic_id, producer, 0, b"a", timestamp=T0))
    table = decode_state(machine.snapshot()).producers

    assert outcome == AppendedBatch(0, 0)
    assert table.clock_ms == T0 + 1_000
    assert table.producers[producer.producer_id].last_timestamp == T0 + 1_000


def test_expired_producers_leave_snapshot(apply: Applier, machine: StateMachine) -> None:
    new_producer(apply, timestamp=T0)
    new_producer(apply, timestamp=T0 + PRODUCER_ID_EXPIRATION_MS + 60_000)

    table = decode_state(machine.snapshot()).producers

    assert sorted(table.producers) == [1]
    assert table.next_producer_id == 2


def test_delete_topic_forgets_sequences(apply: Applier, logs: LogManager) -> None:
    topic_id = create(apply)
    producer = new_producer(apply)
    append_one(apply, sequenced(topic_id, producer, 0, b"a"))
    assert apply(DeleteTopic("t")).ok
    new_topic_id = create(apply)

    # A new incarnation of the name starts at sequence 0 again.
    outcome = append_one(apply, sequenced(new_topic_id, producer, 0, b"b"))

    assert outcome == AppendedBatch(0, 0)
    assert values(logs) == [b"b"]


def test_producer_state_survives_snapshot_restore(
    apply: Applier, machine: StateMachine, logs: LogManager
) -> None:
    topic_id = create(apply)
    producer = new_producer(apply)
    append_one(apply, sequenced(topic_id, producer, 0, b"a", b"b", timestamp=T0 + 1))
    snapshot = machine.snapshot()

    restored = StateMachine(logs)
    restored.restore(snapshot)
    replay = Applier(restored)
    replay.index = apply.index
    retry = append_one(replay, sequenced(topic_id, producer, 0, b"a", b"b"))
    following = append_one(replay, sequenced(topic_id, producer, 2, b"c"))

    assert retry == AppendedBatch(0, 1, original_timestamp=T0 + 1)
    assert following == AppendedBatch(2, 2)
    assert values(logs) == [b"a", b"b", b"c"]


def command_stream(topic_id: int) -> list[Command]:
    producer = ProducerIdAndEpoch(0, 0)
    second = ProducerIdAndEpoch(1, 0)
    return [
        InitProducer(None, T0),
        InitProducer(None, T0 + 1),
        Append([sequenced(topic_id, producer, 0, b"a", b"b", timestamp=T0 + 2)]),
        Append(
            [
                sequenced(topic_id, producer, 0, b"a", b"b", timestamp=T0 + 3),
                sequenced(topic_id, second, 0, b"x", partition=1, timestamp=T0 + 3),
                sequenced(topic_id, producer, 2, b"c", timestamp=T0 + 3),
            ]
        ),
        InitProducer(0, T0 + 4),
        Append([sequenced(topic_id, producer, 3, b"fenced", timestamp=T0 + 5)]),
        Append([sequenced(topic_id, producer, 0, b"d", epoch=1, timestamp=T0 + 6)]),
        Append([sequenced(topic_id, second, 5, b"gap", partition=1, timestamp=T0 + 7)]),
    ]


def test_two_state_machines_agree(tmp_path: Path) -> None:
    outcomes: list[list[CommandResult]] = []
    snapshots: list[bytes] = []
    for member in ("a", "b"):
        logs = LogManager(tmp_path / member)
        logs.open_existing()
        try:
            machine = StateMachine(logs)
            apply = Applier(machine)
            topic_id = create(apply)
            outcomes.append([apply(command) for command in command_stream(topic_id)])
            snapshots.append(machine.snapshot())
        finally:
            logs.close()

    assert outcomes[0] == outcomes[1]
    assert snapshots[0] == snapshots[1]
    assert rejected_code(outcomes[0][5].appended[0]) == "invalid_producer_epoch"
    assert rejected_code(outcomes[0][7].appended[0]) == "out_of_order_sequence"


def test_replay_after_snapshot_matches_uninterrupted_run(tmp_path: Path) -> None:
    # Member "whole" applies every command; member "restarted" takes a snapshot
    # half way, restores it into a new state machine and replays the rest.
    whole_logs = LogManager(tmp_path / "whole")
    whole_logs.open_existing()
    restarted_logs = LogManager(tmp_path / "restarted")
    restarted_logs.open_existing()
    try:
        whole = Applier(StateMachine(whole_logs))
        first = Applier(StateMachine(restarted_logs))
        topic_id = create(whole)
        create(first)
        commands = command_stream(topic_id)
        whole_results = [whole(command) for command in commands]
        for command in commands[:3]:
            first(command)

        second = Applier(StateMachine(restarted_logs))
        second.machine.restore(first.machine.snapshot())
        second.index = first.index
        replayed = [second(command) for command in commands[3:]]

        assert replayed == whole_results[3:]
        assert second.machine.snapshot() == whole.machine.snapshot()
    finally:
        whole_logs.close()
        restarted_logs.close()
