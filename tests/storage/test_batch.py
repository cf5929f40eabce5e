from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kaflow.errors import EmptyRecordsError, InvalidRecordError
from kaflow.storage import (
    BATCH_HEADER_SIZE,
    BatchRecord,
    CorruptBatchError,
    decode_batch,
    encode_batch,
    iter_batches,
    read_batch_header,
    record_size_estimate,
    verify_batch,
    with_base_offset,
)

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

records_strategy = st.lists(
    st.builds(
        BatchRecord,
        timestamp=st.integers(INT64_MIN, INT64_MAX),
        key=st.none() | st.binary(max_size=40),
        value=st.none() | st.binary(max_size=200),
        headers=st.lists(st.tuples(st.text(max_size=10), st.binary(max_size=20)), max_size=4).map(
            tuple
        ),
    ),
    min_size=1,
    max_size=20,
)


def as_tuples(records: list[BatchRecord]) -> list[tuple[object, ...]]:
    return [(r.timestamp, r.key, r.value, r.headers) for r in records]


def test_batch_null_versus_empty() -> None:
    records = [
        BatchRecord(timestamp=10, key=None, value=None),
        BatchRecord(timestamp=11, key=b"", value=b""),
        BatchRecord(timestamp=12, key=None, value=b""),
        BatchRecord(timestamp=13, key=b"", value=None),
    ]

    decoded = decode_batch(encode_batch(records, base_offset=100))

    assert [(r.key, r.value) for r in decoded] == [
        (None, None),
        (b"", b""),
        (None, b""),
        (b"", None),
    ]
    assert [r.offset for r in decoded] == [100, 101, 102, 103]
    assert [r.timestamp for r in decoded] == [10, 11, 12, 13]


def test_batch_header_order_and_unicode() -> None:
    headers = (("zeta", b"1"), ("alpha", b""), ("zeta", b"2"), ("ключ-名前-🔑", b"\x00\xff"))
    record = BatchRecord(timestamp=5, key=b"k", value=b"v", headers=headers)

    (decoded,) = decode_batch(encode_batch([record]))

    assert decoded.headers == headers


def test_batch_round_trip_big_value() -> None:
    value = bytes(range(256)) * 12_288  # 3 MiB
    batch = encode_batch([BatchRecord(timestamp=1, key=b"big", value=value)])

    (decoded,) = decode_batch(batch)

    assert decoded.value == value
    assert len(batch) > len(value)


def test_batch_round_trip_extreme_timestamps() -> None:
    records = [
        BatchRecord(timestamp=INT64_MAX, key=None, value=b"a"),
        BatchRecord(timestamp=INT64_MIN, key=None, value=b"b"),
        BatchRecord(timestamp=0, key=None, value=b"c"),
    ]
    batch = encode_batch(records)

    header = read_batch_header(batch)

    assert [r.timestamp for r in decode_batch(batch)] == [INT64_MAX, INT64_MIN, 0]
    assert header.first_timestamp == INT64_MAX
    assert header.max_timestamp == INT64_MAX


@settings(max_examples=100, deadline=None)
@given(records=records_strategy, base_offset=st.integers(0, 2**62))
def test_batch_round_trip_random_records(records: list[BatchRecord], base_offset: int) -> None:
    batch = encode_batch(records, base_offset=base_offset)

    decoded = decode_batch(batch)

    assert as_tuples(records) == [(r.timestamp, r.key, r.value, r.headers) for r in decoded]
    assert [r.offset for r in decoded] == list(range(base_offset, base_offset + len(records)))
    header = read_batch_header(batch)
    assert header.length == len(batch)
    assert header.record_count == len(records)
    assert header.next_offset == base_offset + len(records)
    assert header.max_timestamp == max(r.timestamp for r in records)


def test_batch_header_fields() -> None:
    records = [BatchRecord(timestamp=t, key=None, value=b"x") for t in (50, 70, 60)]
    batch = encode_batch(records, base_offset=7)

    header = read_batch_header(batch)

    assert header.base_offset == 7
    assert header.length == len(batch)
    assert header.version == 1
    assert header.attributes == 0
    assert header.last_offset_delta == 2
    assert header.last_offset == 9
    assert header.next_offset == 10
    assert header.first_timestamp == 50
    assert header.max_timestamp == 70
    assert header.record_count == 3


def test_with_base_offset_keeps_crc_valid() -> None:
    batch = encode_batch([BatchRecord(1, b"a", b"b"), BatchRecord(2, b"c", b"d")])

    patched = with_base_offset(batch, 12_345)

    verify_batch(patched)
    assert patched[8:] == batch[8:]
    assert [r.offset for r in decode_batch(patched)] == [12_345, 12_346]


def test_batch_crc_covers_bytes_after_crc() -> None:
    batch = encode_batch([BatchRecord(3, b"key", b"value", (("h", b"v"),))])

    for position in range(17, len(batch)):
        damaged = bytearray(batch)
        damaged[position] ^= 0x01
        with pytest.raises(CorruptBatchError):
            decode_batch(bytes(damaged))


def test_batch_crc_mismatch_names_both_values() -> None:
    batch = bytearray(encode_batch([BatchRecord(3, b"key", b"value")]))
    batch[-1] ^= 0xFF

    with pytest.raises(CorruptBatchError, match=r"CRC-32C mismatch .* stored 0x[0-9a-f]{8}"):
        verify_batch(bytes(batch))


def test_batch_header_rejects_unknown_version() -> None:
    batch = bytearray(encode_batch([BatchRecord(3, None, b"v")]))
    batch[12] = 2

    with pytest.raises(CorruptBatchError, match="version 2, expected 1"):
        read_batch_header(bytes(batch))


def test_batch_header_rejects_length_below_header() -> None:
    batch = bytearray(encode_batch([BatchRecord(3, None, b"v")]))
    struct.pack_into(">i", batch, 8, BATCH_HEADER_SIZE)

    with pytest.raises(CorruptBatchError, match="batch length 43"):
        read_batch_header(bytes(batch))


@pytest.mark.parametrize("size", [0, 1, 12, BATCH_HEADER_SIZE - 1])
def test_batch_header_rejects_short_buffer(size: int) -> None:
    batch = encode_batch([BatchRecord(3, None, b"v")])

    with pytest.raises(CorruptBatchError, match="cut short"):
        read_batch_header(batch[:size])


def test_decode_batch_rejects_every_truncation() -> None:
    batch = encode_batch([BatchRecord(1, b"k", b"v" * 30), BatchRecord(2, None, b"w")])

    for size in range(len(batch)):
        with pytest.raises(CorruptBatchError):
            decode_batch(batch[:size])


def test_decode_batch_rejects_trailing_bytes() -> None:
    batch = encode_batch([BatchRecord(1, b"k", b"v")])

    with pytest.raises(CorruptBatchError, match=f"but the buffer has {len(batch) + 1} bytes"):
        decode_batch(batch + b"\x00")


def test_iter_batches_stops_at_partial_tail() -> None:
    batches = [encode_batch([BatchRecord(i, None, b"x" * i)], base_offset=i) for i in range(1, 6)]
    buffer = b"".join(batches)

    for cut in range(len(buffer) + 1):
        whole = [bytes(view) for view in iter_batches(buffer[:cut])]
        expected = []
        end = 0
        for batch in batches:
            if end + len(batch) > cut:
                break
            expected.append(batch)
            end += len(batch)
        assert whole == expected, f"cut at {cut}"


def test_iter_batches_raises_on_invalid_header() -> None:
    batch = bytearray(encode_batch([BatchRecord(1, None, b"x")]))
    batch[12] = 9

    with pytest.raises(CorruptBatchError):
        list(iter_batches(bytes(batch)))


def test_encode_batch_rejects_empty_records() -> None:
    with pytest.raises(EmptyRecordsError, match="at least one record"):
        encode_batch([])


def test_encode_batch_rejects_unpaired_surrogate_header_name() -> None:
    record = BatchRecord(1, None, b"v", (("bad\ud800", b""),))

    with pytest.raises(InvalidRecordError, match="not valid Unicode"):
        encode_batch([record])


def test_encode_batch_rejects_timestamp_beyond_int64() -> None:
    with pytest.raises(InvalidRecordError, match="signed 64-bit"):
        encode_batch([BatchRecord(2**63, None, b"v")])


@settings(max_examples=100, deadline=None)
@given(records=records_strategy)
def test_record_size_estimate_upper_bound(records: list[BatchRecord]) -> None:
    record = records[0]
    estimate = record_size_estimate(record.key, record.value, record.headers)

    actual = len(encode_batch([record])) - BATCH_HEADER_SIZE

    assert actual <= estimate
    # The deltas are counted at 5 + 10 bytes instead of 1 + 1, and the
    # record's length prefix may need one more byte for that slack.
    assert estimate - actual <= 14


@settings(max_examples=100, deadline=None)
@given(records=records_strategy, data=st.data())
def test_decode_batch_detects_changed_byte(records: list[BatchRecord], data: st.DataObject) -> None:
    batch = bytearray(encode_batch(records))
    position = data.draw(st.integers(17, len(batch) - 1))
    batch[position] ^= data.draw(st.integers(1, 255))

    with pytest.raises(CorruptBatchError):
        decode_batch(bytes(batch))


@settings(max_examples=100, deadline=None)
@given(garbage=st.binary(min_size=0, max_size=200))
def test_decode_batch_rejects_garbage(garbage: bytes) -> None:
    with pytest.raises(CorruptBatchError):
        decode_batch(garbage)
