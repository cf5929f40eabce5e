from __future__ import annotations

import re
from pathlib import Path

import pytest

from kaflow.errors import (
    InvalidConfigError,
    InvalidRequestError,
    OffsetOutOfRangeError,
    StorageError,
)
from kaflow.storage import (
    BatchRecord,
    CorruptBatchError,
    FileCache,
    LogConfig,
    encode_batch,
    iter_batches,
    read_batch_header,
)
from tests.storage.helpers import decode_all, make_batch, open_log, read_all, segment_files


def test_log_append_assigns_consecutive_offsets(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")

    first = log.append(make_batch(3))
    second = log.append(make_batch(2))

    assert first == (0, 2)
    assert second == (3, 4)
    assert log.log_start_offset == 0
    assert log.log_end_offset == 5
    assert [r.offset for r in read_all(log)] == [0, 1, 2, 3, 4]


def test_log_new_directory_has_zero_padded_segment(tmp_path: Path) -> None:
    open_log(tmp_path / "t-0")

    names = sorted(path.name for path in (tmp_path / "t-0").iterdir())

    assert names == [
        "00000000000000000000.index",
        "00000000000000000000.log",
        "00000000000000000000.timeindex",
    ]


def test_log_append_patches_any_base_offset(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    log.append(make_batch(2))

    log.append(encode_batch([BatchRecord(5, b"k", b"v")], base_offset=999))

    (batch, *_) = list(iter_batches(log.read(2, 1000)))
    assert read_batch_header(batch).base_offset == 2


def test_log_append_rejects_corrupt_batch_and_writes_nothing(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    batch = bytearray(make_batch(2))
    batch[-1] ^= 0x10

    with pytest.raises(CorruptBatchError, match="CRC-32C mismatch"):
        log.append(bytes(batch))

    assert log.log_end_offset == 0
    assert log.size_bytes == 0


def test_log_rolls_before_exceeding_segment_bytes(tmp_path: Path) -> None:
    batch = make_batch(1)
    log = open_log(tmp_path / "t-0", segment_bytes=3 * len(batch))

    for _ in range(7):
        log.append(batch)

    logs = segment_files(tmp_path / "t-0", ".log")
    assert [path.name[:20] for path in logs] == [
        "00000000000000000000",
        "00000000000000000003",
        "00000000000000000006",
    ]
    assert [path.stat().st_size for path in logs] == [3 * len(batch), 3 * len(batch), len(batch)]
    assert log.segment_count == 3


def test_log_oversized_batch_fills_empty_segment_alone(tmp_path: Path) -> None:
    small = make_batch(1)
    big = make_batch(1, value_size=500)
    log = open_log(tmp_path / "t-0", segment_bytes=100)

    log.append(big)
    log.append(small)
    log.append(big)

    sizes = [path.stat().st_size for path in segment_files(tmp_path / "t-0", ".log")]
    assert sizes == [len(big), len(small), len(big)]
    assert [r.offset for r in read_all(log)] == [0, 1, 2]


def test_log_rolls_by_batch_timestamp(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0", segment_ms=1_000)

    log.append(make_batch(1, timestamp=10_000))
    log.append(make_batch(1, timestamp=10_999))
    assert log.segment_count == 1
    log.append(make_batch(1, timestamp=11_000))
    assert log.segment_count == 2
    # A batch older than the active segment's first batch does not roll.
    log.append(make_batch(1, timestamp=5))
    log.append(make_batch(1, timestamp=11_999))
    assert log.segment_count == 2
    log.append(make_batch(1, timestamp=12_000))

    bases = [path.name[:20] for path in segment_files(tmp_path / "t-0", ".log")]
    assert [int(base) for base in bases] == [0, 2, 5]


def test_log_update_config_changes_roll_size(tmp_path: Path) -> None:
    batch = make_batch(1)
    log = open_log(tmp_path / "t-0", segment_bytes=10 * len(batch))
    for _ in range(4):
        log.append(batch)

    log.update_config(LogConfig(segment_bytes=2 * len(batch)))
    for _ in range(3):
        log.append(batch)

    sizes = [path.stat().st_size for path in segment_files(tmp_path / "t-0", ".log")]
    assert sizes == [4 * len(batch), 2 * len(batch), len(batch)]
    assert log.config.segment_bytes == 2 * len(batch)


def test_log_read_every_offset_through_sparse_index(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0", segment_bytes=2_000, index_interval_bytes=150)
    bases = []
    for index in range(60):
        base, _ = log.append(make_batch(1 + index % 3, value_size=20 + index))
        bases.append(base)
    assert all(path.stat().st_size > 0 for path in segment_files(tmp_path / "t-0", ".index"))

    for offset in range(log.log_end_offset):
        data = log.read(offset, 1)
        (batch,) = list(iter_batches(data))
        header = read_batch_header(batch)
        assert header.base_offset <= offset < header.next_offset, f"offset {offset}"


def test_log_read_returns_whole_batches_within_limit(tmp_path: Path) -> None:
    batch = make_batch(2)
    log = open_log(tmp_path / "t-0", segment_bytes=5 * len(batch))
    for _ in range(12):
        log.append(batch)

    data = log.read(3, 4 * len(batch) + len(batch) // 2)

    headers = [read_batch_header(view) for view in iter_batches(data)]
    assert [h.base_offset for h in headers] == [2, 4, 6, 8]
    assert sum(h.length for h in headers) == len(data)


def test_log_read_returns_one_batch_larger_than_limit(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    big = make_batch(1, value_size=5_000)
    log.append(big)
    log.append(make_batch(1))

    data = log.read(0, 10)

    assert data == big


def test_log_read_crosses_segments(tmp_path: Path) -> None:
    batch = make_batch(1)
    log = open_log(tmp_path / "t-0", segment_bytes=2 * len(batch))
    for _ in range(6):
        log.append(batch)

    records = decode_all(log.read(1, 1 << 20))

    assert [r.offset for r in records] == [1, 2, 3, 4, 5]


def test_log_read_at_end_is_empty(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    assert log.read(0, 100) == b""
    log.append(make_batch(2))

    assert log.read(2, 100) == b""
    assert log.read_records(2, 100, 10) == []


def test_log_read_past_end_raises_with_details(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    log.append(make_batch(2))

    with pytest.raises(OffsetOutOfRangeError, match="offset 3 is out of range") as caught:
        log.read(3, 100)

    assert caught.value.details == {"offset": 3, "log_start_offset": 0, "high_watermark": 2}


def test_log_read_records_skips_below_offset_and_stops_at_max(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    log.append(make_batch(4, timestamp=100))
    log.append(make_batch(4, timestamp=200))

    records = log.read_records(2, 1 << 20, 3)

    assert [r.offset for r in records] == [2, 3, 4]
    assert [r.timestamp for r in records] == [102, 103, 200]
    assert [r.key for r in records] == [b"k2", b"k3", b"k0"]


def test_log_read_records_rejects_zero_max_records(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")

    with pytest.raises(InvalidRequestError, match="max_records is 0"):
        log.read_records(0, 100, 0)


def test_log_offset_for_timestamp_matches_scan(tmp_path: Path) -> None:
    # Timestamps jump around, as producer-set timestamps may.
    pattern = [50, 10, 70, 70, 30, 90, 20, 85, 100, 40, 130, 5]
    log = open_log(tmp_path / "t-0", segment_bytes=250, index_interval_bytes=60)
    stamped: list[tuple[int, int]] = []
    for index, timestamp in enumerate(pattern * 3):
        timestamp += (index // len(pattern)) * 7
        log.append(encode_batch([BatchRecord(timestamp, None, b"v" * (index % 5))]))
        stamped.append((index, timestamp))
    assert log.segment_count > 3

    for target in range(0, 160, 3):
        expected = next(((o, t) for o, t in stamped if t >= target), None)
        assert log.offset_for_timestamp(target) == expected, f"timestamp {target}"


@pytest.mark.parametrize("records_per_batch", [1, 3])
def test_log_offset_for_timestamp_dense_time_index(tmp_path: Path, records_per_batch: int) -> None:
    # With index.interval.bytes 0 every batch after the first gets index entries.
    log = open_log(tmp_path / "t-0", segment_bytes=400, index_interval_bytes=0)
    for index in range(30):
        log.append(make_batch(records_per_batch, timestamp=100 * index))
    assert log.segment_count > 2

    for offset in range(log.log_end_offset):
        batch, position = divmod(offset, records_per_batch)
        timestamp = 100 * batch + position
        assert log.offset_for_timestamp(timestamp) == (offset, timestamp), f"offset {offset}"
        if position == 0:
            assert log.offset_for_timestamp(timestamp - 50) == (offset, timestamp)


def test_log_offset_for_timestamp_within_batch(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    records = [BatchRecord(t, None, b"v") for t in (100, 300, 200, 400)]
    log.append(encode_batch(records))

    assert log.offset_for_timestamp(150) == (1, 300)
    assert log.offset_for_timestamp(400) == (3, 400)
    assert log.offset_for_timestamp(401) is None


def test_log_truncate_at_batch_boundary(tmp_path: Path) -> None:
    batch = make_batch(2)
    log = open_log(tmp_path / "t-0", segment_bytes=3 * len(batch))
    for _ in range(8):
        log.append(batch)

    log.truncate_to(8)

    assert log.log_end_offset == 8
    assert log.segment_count == 2
    assert [r.offset for r in read_all(log)] == list(range(8))
    assert log.append(make_batch(1)) == (8, 8)
    assert [r.offset for r in read_all(log)] == list(range(9))


def test_log_truncate_inside_batch_raises_and_keeps_data(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    log.append(make_batch(3))
    log.append(make_batch(3))

    with pytest.raises(StorageError, match="inside the batch at base offset 3"):
        log.truncate_to(4)

    assert log.log_end_offset == 6
    assert len(read_all(log)) == 6


def test_log_truncate_at_or_past_end_does_nothing(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    log.append(make_batch(3))

    log.truncate_to(3)
    log.truncate_to(10)

    assert log.log_end_offset == 3


def test_log_truncate_to_segment_base_removes_segment(tmp_path: Path) -> None:
    batch = make_batch(1)
    log = open_log(tmp_path / "t-0", segment_bytes=2 * len(batch))
    for _ in range(6):
        log.append(batch)

    log.truncate_to(4)

    assert [p.name[:20] for p in segment_files(tmp_path / "t-0", ".log")] == [
        "00000000000000000000",
        "00000000000000000002",
    ]
    log.append(batch)
    assert log.segment_count == 3, "the full segment 2 rolls on the next append"
    assert [r.offset for r in read_all(log)] == [0, 1, 2, 3, 4]


def test_log_truncate_to_zero_empties_log(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0", segment_bytes=100)
    for _ in range(5):
        log.append(make_batch(1))

    log.truncate_to(0)

    assert log.log_end_offset == 0
    assert log.segment_count == 1
    assert log.size_bytes == 0
    assert log.append(make_batch(1)) == (0, 0)


def test_log_truncate_survives_reopen(tmp_path: Path) -> None:
    files = FileCache(16)
    log = open_log(tmp_path / "t-0", files, segment_bytes=200, index_interval_bytes=40)
    for index in range(20):
        log.append(make_batch(1, timestamp=index))
    log.truncate_to(13)
    log.close()

    reopened = open_log(tmp_path / "t-0", files, segment_bytes=200, index_interval_bytes=40)

    assert reopened.log_end_offset == 13
    assert [r.offset for r in read_all(reopened)] == list(range(13))
    assert reopened.offset_for_timestamp(12) == (12, 12)
    assert reopened.offset_for_timestamp(13) is None


def test_log_closed_log_rejects_calls(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    log.append(make_batch(1))
    log.close()

    with pytest.raises(StorageError, match="is closed"):
        log.append(make_batch(1))
    with pytest.raises(StorageError, match="is closed"):
        log.read(0, 100)
    with pytest.raises(StorageError, match="is closed"):
        log.offset_for_timestamp(0)


def test_log_config_from_topic_config() -> None:
    config = LogConfig.from_topic_config(
        {"segment.bytes": 1_000, "retention.ms": -1, "max.message.bytes": 5}
    )

    assert config.segment_bytes == 1_000
    assert config.retention_ms == -1
    assert config.segment_ms == LogConfig().segment_ms
    assert LogConfig.from_topic_config(config.to_topic_config()) == config


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("segment_bytes", 0, "segment.bytes is 0; set it between 1 and 2147483647"),
        ("segment_ms", 0, "segment.ms is 0"),
        ("retention_ms", -2, "retention.ms is -2"),
        ("retention_bytes", -2, "retention.bytes is -2"),
        ("index_interval_bytes", -1, "index.interval.bytes is -1"),
        ("segment_bytes", "big", "segment.bytes must be an integer"),
    ],
    ids=lambda value: str(value),
)
def test_log_config_rejects_invalid_values(field: str, value: object, message: str) -> None:
    with pytest.raises(InvalidConfigError, match=re.escape(message)):
        LogConfig(**{field: value})  # type: ignore[arg-type]


def test_log_flush_fsync_clears_pending_files(tmp_path: Path) -> None:
    files = FileCache(16)
    log = open_log(tmp_path / "t-0", files, segment_bytes=100)
    for _ in range(3):
        log.append(make_batch(1))

    log.flush(fsync=True)
    log.flush(fsync=False)

    assert log._dirty == set()
    assert not log._directory_dirty


def test_log_delete_removes_directory(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    log.append(make_batch(1))

    log.delete()

    assert list(tmp_path.iterdir()) == []
