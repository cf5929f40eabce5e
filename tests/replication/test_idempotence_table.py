"""ProducerTable on its own, and the encodings that carry producer state."""

from __future__ import annotations

import struct

import crc32c
import msgpack
import pytest

from kaflow.broker import ProducerIdAndEpoch
from kaflow.errors import (
    InvalidRecordError,
    OutOfOrderSequenceError,
    UnknownProducerIdError,
)
from kaflow.replication.commands import (
    Append,
    AppendItem,
    CommandFormatError,
    InitProducer,
    ProducerBatch,
    decode_command,
    encode_command,
)
from kaflow.replication.producers import (
    BATCHES_PER_PARTITION,
    MAX_PRODUCER_EPOCH,
    SEQUENCE_MODULUS,
    BatchSequence,
    ProducerEntry,
    ProducerTable,
    decode_producers,
    encode_producers,
    last_sequence,
)
from kaflow.replication.state import ReplicatedState, StateFormatError, decode_state, encode_state

T0 = 1_700_000_000_000
TOP = SEQUENCE_MODULUS - 1


def batch(base_sequence: int, producer_id: int = 0, epoch: int = 0) -> ProducerBatch:
    return ProducerBatch(producer_id, epoch, base_sequence, T0)


def table_with_last_sequence(last: int) -> ProducerTable:
    table = ProducerTable(next_producer_id=1, clock_ms=T0)
    entry = ProducerEntry(0, 0, T0)
    entry.batches[("t", 0)] = [BatchSequence(last, last, 10, 10, T0)]
    table.producers[0] = entry
    return table


def test_last_sequence_wraps() -> None:
    assert last_sequence(0, 1) == 0
    assert last_sequence(5, 3) == 7
    assert last_sequence(TOP - 1, 3) == 0
    assert last_sequence(TOP, 1) == TOP


def test_sequence_wraps_to_zero() -> None:
    table = table_with_last_sequence(TOP - 2)

    assert table.check_batch(batch(TOP - 1), "t", 0, 3) is None
    table.record_batch(batch(TOP - 1), "t", 0, 3, (11, 13))

    assert table.check_batch(batch(1), "t", 0, 1) is None
    with pytest.raises(OutOfOrderSequenceError, match="next expected sequence is 1"):
        table.check_batch(batch(0), "t", 0, 1)


def test_cache_keeps_last_five_batches() -> None:
    table = ProducerTable()
    table.init_producer(None, T0)
    for sequence in range(BATCHES_PER_PARTITION + 2):
        assert table.check_batch(batch(sequence), "t", 0, 1) is None
        table.record_batch(batch(sequence), "t", 0, 1, (sequence, sequence))

    cached = table.producers[0].batches[("t", 0)]

    assert [entry.first_sequence for entry in cached] == [2, 3, 4, 5, 6]


@pytest.mark.parametrize(
    ("fields", "count", "name"),
    [
        (ProducerBatch(-1, 0, 0, T0), 1, "producer_id"),
        (ProducerBatch(0, MAX_PRODUCER_EPOCH + 1, 0, T0), 1, "producer_epoch"),
        (ProducerBatch(0, 0, SEQUENCE_MODULUS, T0), 1, "base_sequence"),
        (ProducerBatch(0, 0, 0, T0), SEQUENCE_MODULUS, "record count"),
    ],
    ids=["producer-id", "epoch", "sequence", "record-count"],
)
def test_check_batch_rejects_out_of_range(fields: ProducerBatch, count: int, name: str) -> None:
    table = ProducerTable()
    table.init_producer(None, T0)

    with pytest.raises(InvalidRecordError, match=f"^{name} "):
        table.check_batch(fields, "t", 0, count)


def test_exhausted_epoch_allocates_new_id() -> None:
    table = ProducerTable()
    table.init_producer(None, T0)
    table.producers[0].producer_epoch = MAX_PRODUCER_EPOCH

    bumped = table.init_producer(0, T0)

    assert bumped == ProducerIdAndEpoch(1, 0)
    assert sorted(table.producers) == [1]
    with pytest.raises(UnknownProducerIdError):
        table.check_batch(batch(0), "t", 0, 1)


def test_producer_table_round_trips() -> None:
    table = table_with_last_sequence(41)
    table.producers[3] = ProducerEntry(3, 2, T0 + 5)
    table.producers[3].batches[("u", 1)] = [
        BatchSequence(0, 1, 0, 1, T0 + 1),
        BatchSequence(2, 2, 4, 4, T0 + 2),
    ]
    table.next_producer_id = 4

    assert decode_producers(encode_producers(table)) == table


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"producer_clock": "x"}, "producer_clock"),
        ({"producers": [[0, 0]]}, "malformed row"),
        ({"producer_batches": [[7, "t", 0, 0, 0, 0, 0, 0]]}, "no entry"),
        ({"producer_batches": [[0, 5, 0, 0, 0, 0, 0, 0]]}, "malformed row"),
    ],
    ids=["clock-type", "short-row", "orphan-batch", "topic-type"],
)
def test_producer_rows_malformed_rejected(change: dict[str, object], match: str) -> None:
    body = {**encode_producers(table_with_last_sequence(1)), **change}

    with pytest.raises(ValueError, match=match):
        decode_producers(body)


def test_state_keeps_producer_table() -> None:
    state = ReplicatedState(index=9, producers=table_with_last_sequence(3))

    assert decode_state(encode_state(state)) == state


def test_state_version_one_reads_empty_table() -> None:
    body = msgpack.packb({"v": 1, "index": 4, "topics": [], "partitions": [], "groups": []})
    data = struct.pack(">I", crc32c.crc32c(body)) + body

    state = decode_state(data)

    assert state.index == 4
    assert state.producers == ProducerTable()


def test_state_version_two_needs_producer_fields() -> None:
    body = msgpack.packb({"v": 2, "index": 4, "topics": [], "partitions": [], "groups": []})
    data = struct.pack(">I", crc32c.crc32c(body)) + body

    with pytest.raises(StateFormatError, match="next_producer_id"):
        decode_state(data)


def test_producer_commands_round_trip() -> None:
    commands = [
        InitProducer(None, T0),
        InitProducer(7, T0),
        Append(
            [
                AppendItem("t", 3, 0, b"batch", 2, ProducerBatch(7, 1, 40, T0)),
                AppendItem("t", 3, 1, b"plain", 1),
            ]
        ),
    ]

    for command in commands:
        assert decode_command(encode_command(command)) == command


def test_append_item_with_partial_producer_rejected() -> None:
    data = msgpack.packb(
        {
            "v": 1,
            "op": "append",
            "items": [
                {
                    "topic": "t",
                    "topic_id": 3,
                    "partition": 0,
                    "batch": b"x",
                    "records": 1,
                    "producer_id": 7,
                    "producer_epoch": 0,
                }
            ],
        },
        use_bin_type=True,
    )

    with pytest.raises(CommandFormatError, match="'base_sequence'"):
        decode_command(data)
