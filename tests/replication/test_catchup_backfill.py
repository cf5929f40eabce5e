"""Back-fill of partition logs from a peer's raw batches, against real logs in tmp_path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kaflow.catchup.backfill import append_fetched_batches, split_fetched_batches
from kaflow.catchup.gaps import GapTracker
from kaflow.catchup.reconcile import LogOrigin, reconcile_with_gaps, restart_log_at
from kaflow.catchup.serving import check_local_range, read_batches_for_peer
from kaflow.errors import CorruptBatchError, OffsetOutOfRangeError, ReplicaNotAvailableError
from kaflow.replication.commands import Append, AppendItem, CreateTopic, DeleteRecords
from kaflow.replication.results import AppendedBatch
from kaflow.replication.state import PartitionState, ReplicatedState, TopicState, encode_state
from kaflow.replication.state_machine import StateMachine
from kaflow.storage.batch import BatchRecord, encode_batch, read_batch_header
from kaflow.storage.log import LogConfig
from kaflow.storage.manager import LogManager
from tests.replication.conftest import Applier, make_batch


@pytest.fixture
def peer_logs(tmp_path: Path) -> Iterator[LogManager]:
    manager = LogManager(tmp_path / "peer")
    manager.open_existing()
    yield manager
    manager.close()


@pytest.fixture
def local_logs(tmp_path: Path) -> Iterator[LogManager]:
    manager = LogManager(tmp_path / "local")
    manager.open_existing()
    yield manager
    manager.close()


def fill_peer(logs: LogManager, batches: int, records_per_batch: int = 3) -> bytes:
    """Append ``batches`` batches to t-0 of ``logs`` and return the log's raw bytes."""
    log = logs.create("t", 0, LogConfig())
    for number in range(batches):
        values = [f"v{number}-{i}".encode() for i in range(records_per_batch)]
        log.append(encode_batch([BatchRecord(1_000 + number, None, v) for v in values]))
    return log.read(0, 1 << 30)


def corrupt_value_byte(data: bytes, position: int) -> bytes:
    damaged = bytearray(data)
    damaged[position] ^= 0xFF
    return bytes(damaged)


def test_backfill_appends_verified_batches(peer_logs: LogManager, local_logs: LogManager) -> None:
    data = fill_peer(peer_logs, batches=4)
    local_logs.create("t", 0, LogConfig())

    progress = append_fetched_batches(local_logs, "t", 0, data, end_offset=12)

    local = local_logs.get("t", 0)
    assert progress.batches == 4
    assert progress.records == 12
    assert progress.next_offset == 12
    assert local.read(0, 1 << 30) == data


def test_backfill_stops_at_replicated_end(peer_logs: LogManager, local_logs: LogManager) -> None:
    data = fill_peer(peer_logs, batches=4)
    local_logs.create("t", 0, LogConfig())

    progress = append_fetched_batches(local_logs, "t", 0, data, end_offset=7)

    # The third batch ends at offset 9, past the end offset 7, so only two batches fit.
    assert progress.batches == 2
    assert local_logs.get("t", 0).log_end_offset == 6


def test_backfill_rejects_crc_mismatch(peer_logs: LogManager, local_logs: LogManager) -> None:
    data = fill_peer(peer_logs, batches=3)
    local_logs.create("t", 0, LogConfig())
    second = read_batch_header(data, 0).length
    damaged = corrupt_value_byte(data, second + read_batch_header(data, second).length - 1)

    with pytest.raises(CorruptBatchError, match="CRC"):
        append_fetched_batches(local_logs, "t", 0, damaged, end_offset=9)

    # The first batch was valid but nothing is appended from a rejected response.
    assert local_logs.get("t", 0).log_end_offset == 0


def test_backfill_rejects_offset_gap(peer_logs: LogManager, local_logs: LogManager) -> None:
    data = fill_peer(peer_logs, batches=3)
    local_logs.create("t", 0, LogConfig())
    first_length = read_batch_header(data, 0).length
    without_first = data[first_length:]

    with pytest.raises(CorruptBatchError, match="without a gap"):
        append_fetched_batches(local_logs, "t", 0, without_first, end_offset=9)

    assert local_logs.get("t", 0).log_end_offset == 0


def test_backfill_rejects_skipped_middle_batch(peer_logs: LogManager) -> None:
    data = fill_peer(peer_logs, batches=3)
    first = read_batch_header(data, 0).length
    second = read_batch_header(data, first).length
    skipped = data[:first] + data[first + second :]

    with pytest.raises(CorruptBatchError, match="expected is 3"):
        split_fetched_batches(skipped, 0, 9)


def test_backfill_rejects_cut_off_response(peer_logs: LogManager) -> None:
    data = fill_peer(peer_logs, batches=2)

    with pytest.raises(CorruptBatchError, match="ends inside a batch"):
        split_fetched_batches(data[:-5], 0, 6)


def test_backfill_realigns_log_start_inside_batch(
    peer_logs: LogManager, local_logs: LogManager
) -> None:
    data = fill_peer(peer_logs, batches=3)
    restart_log_at(local_logs, "t", 0, LogConfig(), 4)

    progress = append_fetched_batches(
        local_logs, "t", 0, data[read_batch_header(data, 0).length :], 9
    )

    local = local_logs.get("t", 0)
    assert progress.batches == 2
    assert local.log_start_offset == 4
    assert local.log_end_offset == 9
    assert [r.offset for r in local.read_records(4, 1 << 20, 100)] == [4, 5, 6, 7, 8]


def test_serving_trims_to_replicated_end(logs: LogManager, apply: Applier) -> None:
    machine = apply.machine
    apply(CreateTopic("t", 1, {}))
    topic_id = apply.index
    for _ in range(3):
        apply(Append([AppendItem("t", topic_id, 0, make_batch(b"a", b"b"), 2)]))

    served = read_batches_for_peer(machine, logs, "t", 0, 2, 1 << 20)

    assert served.topic_id == topic_id
    assert served.high_watermark == 6
    assert read_batch_header(served.data, 0).base_offset == 2
    assert len(split_fetched_batches(served.data, 2, 6)) == 2


def test_serving_below_log_start_names_start(logs: LogManager, apply: Applier) -> None:
    apply(CreateTopic("t", 1, {}))
    topic_id = apply.index
    apply(Append([AppendItem("t", topic_id, 0, make_batch(b"a", b"b"), 2)]))
    apply(Append([AppendItem("t", topic_id, 0, make_batch(b"c"), 1)]))
    apply(DeleteRecords("t", 0, 2))

    with pytest.raises(OffsetOutOfRangeError) as raised:
        read_batches_for_peer(apply.machine, logs, "t", 0, 0, 1 << 20)

    assert raised.value.details["log_start_offset"] == 2


def test_read_of_unfilled_range_is_retriable(local_logs: LogManager) -> None:
    log = local_logs.create("t", 0, LogConfig())
    log.append(make_batch(b"a", b"b"))
    offsets = PartitionState(0, 10)

    check_local_range("t", 0, 1, offsets, log)
    with pytest.raises(ReplicaNotAvailableError, match="not yet copied offset 2") as raised:
        check_local_range("t", 0, 2, offsets, log)
    with pytest.raises(ReplicaNotAvailableError):
        check_local_range("t", 0, 9, offsets, log)

    assert raised.value.retriable
    assert raised.value.http_status == 503


def gapped_machine(logs: LogManager, end_offset: int) -> tuple[StateMachine, int]:
    """Return a state machine whose state records t-0 ending at ``end_offset`` over an empty log."""
    machine = StateMachine(logs, GapTracker(enabled=True))
    state = ReplicatedState(index=5)
    state.topics["t"] = TopicState("t", 1, {}, 2)
    state.partitions[("t", 0)] = PartitionState(0, end_offset)
    machine.restore(encode_state(state), LogOrigin.UNKNOWN)
    return machine, 2


def test_apply_skips_log_while_gap_open(local_logs: LogManager) -> None:
    machine, topic_id = gapped_machine(local_logs, end_offset=6)
    applier = Applier(machine)
    applier.index = 5

    result = applier(Append([AppendItem("t", topic_id, 0, make_batch(b"x", b"y"), 2)]))

    appended = result.appended[0]
    assert isinstance(appended, AppendedBatch)
    assert appended.base_offset == 6
    assert machine.partition("t", 0) == PartitionState(0, 8)
    assert local_logs.get("t", 0).log_end_offset == 0
    assert machine.gaps.has_gap("t", 0)


def test_backfill_then_apply_keeps_offset_order(
    peer_logs: LogManager, local_logs: LogManager
) -> None:
    data = fill_peer(peer_logs, batches=2)
    machine, topic_id = gapped_machine(local_logs, end_offset=6)
    gap = machine.gaps.get("t", 0)
    assert gap is not None

    with machine.gaps.lock:
        append_fetched_batches(local_logs, "t", 0, data, end_offset=6)
        assert machine.gaps.close(gap)
    applier = Applier(machine)
    applier.index = 5
    applier(Append([AppendItem("t", topic_id, 0, make_batch(b"next"), 1)]))

    records = local_logs.get("t", 0).read_records(0, 1 << 20, 100)
    assert [r.offset for r in records] == list(range(7))
    assert records[-1].value == b"next"


def test_reconcile_discards_other_incarnation(local_logs: LogManager) -> None:
    old = local_logs.create("t", 0, LogConfig())
    for _ in range(3):
        old.append(make_batch(b"old"))
    previous = ReplicatedState(index=9)
    previous.topics["t"] = TopicState("t", 1, {}, 2)
    installed = ReplicatedState(index=50)
    installed.topics["t"] = TopicState("t", 1, {}, 40)
    installed.partitions[("t", 0)] = PartitionState(0, 2)
    tracker = GapTracker(enabled=True)

    reconcile_with_gaps(local_logs, installed, previous, LogOrigin.LEADER, tracker)

    assert local_logs.get("t", 0).log_end_offset == 0
    gap = tracker.get("t", 0)
    assert gap is not None
    assert gap.topic_id == 40


def test_reconcile_keeps_same_incarnation_prefix(local_logs: LogManager) -> None:
    log = local_logs.create("t", 0, LogConfig())
    log.append(make_batch(b"kept", b"kept"))
    previous = ReplicatedState(index=9)
    previous.topics["t"] = TopicState("t", 1, {}, 2)
    installed = ReplicatedState(index=50)
    installed.topics["t"] = TopicState("t", 1, {}, 2)
    installed.partitions[("t", 0)] = PartitionState(0, 10)
    tracker = GapTracker(enabled=True)

    reconcile_with_gaps(local_logs, installed, previous, LogOrigin.LEADER, tracker)

    assert local_logs.get("t", 0).log_end_offset == 2
    gap = tracker.get("t", 0)
    assert gap is not None
    assert gap.start_offset == 2


def test_reconcile_restarts_log_past_its_end(local_logs: LogManager) -> None:
    log = local_logs.create("t", 0, LogConfig())
    log.append(make_batch(b"gone"))
    installed = ReplicatedState(index=50)
    installed.topics["t"] = TopicState("t", 1, {}, 2)
    installed.partitions[("t", 0)] = PartitionState(30, 40)
    tracker = GapTracker(enabled=True)

    reconcile_with_gaps(local_logs, installed, None, LogOrigin.OWN, tracker)

    restarted = local_logs.get("t", 0)
    assert restarted.log_start_offset == 30
    assert restarted.log_end_offset == 30
    assert tracker.has_gap("t", 0)
