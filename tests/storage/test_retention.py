from __future__ import annotations

from pathlib import Path

import pytest

from kaflow.errors import OffsetOutOfRangeError
from kaflow.storage import FileCache, LogConfig, PartitionLog
from tests.storage.helpers import make_batch, open_log, read_all, segment_files

BATCH = make_batch(1)


def segment_bases(directory: Path) -> list[int]:
    return [int(path.name[:20]) for path in segment_files(directory, ".log")]


def fill(log: PartitionLog, timestamps: list[int]) -> None:
    for timestamp in timestamps:
        log.append(make_batch(1, timestamp=timestamp))


def test_retention_by_time_targets_first_recent_segment(tmp_path: Path) -> None:
    # Two batches per segment; segment max timestamps are 101, 201, 301, 401, 500.
    log = open_log(tmp_path / "t-0", segment_bytes=2 * len(BATCH), retention_ms=1_000)
    fill(log, [100, 101, 200, 201, 300, 301, 400, 401, 500])

    assert log.retention_target(now_ms=1_101) is None
    assert log.retention_target(now_ms=1_102) == 2
    assert log.retention_target(now_ms=1_302) == 6
    # Every closed segment has expired, but the active one (base 8) is kept.
    assert log.retention_target(now_ms=100_000) == 8


def test_retention_by_time_stops_at_first_recent_segment(tmp_path: Path) -> None:
    # The second segment has a recent timestamp, so the third must wait too.
    log = open_log(tmp_path / "t-0", segment_bytes=2 * len(BATCH), retention_ms=1_000)
    fill(log, [100, 100, 5_000, 100, 100, 100, 100])

    assert log.retention_target(now_ms=2_000) == 2


def test_retention_by_bytes_drops_oldest_closed_segments(tmp_path: Path) -> None:
    size = len(BATCH)
    log = open_log(tmp_path / "t-0", segment_bytes=2 * size, retention_bytes=5 * size)
    fill(log, [1] * 9)  # segments of 2, 2, 2, 2, 1 batches: 9 in all

    # Dropping two segments leaves 5 batches; a third would leave 3 < 5.
    assert log.retention_target(now_ms=0) == 4


def test_retention_by_bytes_never_drops_active_segment(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0", segment_bytes=2 * len(BATCH), retention_bytes=0)
    fill(log, [1] * 5)

    assert log.retention_target(now_ms=0) == 4


def test_retention_takes_larger_of_time_and_bytes(tmp_path: Path) -> None:
    size = len(BATCH)
    log = open_log(
        tmp_path / "t-0", segment_bytes=2 * size, retention_ms=100, retention_bytes=7 * size
    )
    fill(log, [10, 10, 500, 500, 500, 500, 500, 500, 500])

    assert log.retention_target(now_ms=200) == 2
    log.update_config(LogConfig(segment_bytes=2 * size, retention_ms=100, retention_bytes=3 * size))
    assert log.retention_target(now_ms=200) == 6


def test_retention_unlimited_keeps_everything(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0", segment_bytes=len(BATCH), retention_ms=-1, retention_bytes=-1)
    fill(log, [1] * 6)

    assert log.retention_target(now_ms=10**15) is None


def test_retention_target_none_when_already_applied(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0", segment_bytes=2 * len(BATCH), retention_ms=10)
    fill(log, [1] * 6)
    target = log.retention_target(now_ms=1_000)
    assert target == 4

    log.advance_log_start(target)

    assert log.retention_target(now_ms=1_000) is None


def test_advance_log_start_deletes_whole_segments_below(tmp_path: Path) -> None:
    directory = tmp_path / "t-0"
    log = open_log(directory, segment_bytes=2 * len(BATCH))
    fill(log, [1] * 7)

    log.advance_log_start(5)

    assert log.log_start_offset == 5
    assert segment_bases(directory) == [4, 6]
    assert [r.offset for r in read_all(log)] == [5, 6]
    assert log.size_bytes == 3 * len(BATCH)


def test_advance_log_start_mid_segment_survives_reopen(tmp_path: Path) -> None:
    directory = tmp_path / "t-0"
    files = FileCache(16)
    log = open_log(directory, files, segment_bytes=4 * len(BATCH))
    fill(log, [1] * 10)
    log.advance_log_start(6)
    log.close()

    reopened = open_log(directory, files, segment_bytes=4 * len(BATCH))

    assert reopened.log_start_offset == 6
    assert segment_bases(directory) == [4, 8]
    assert [r.offset for r in read_all(reopened)] == [6, 7, 8, 9]


def test_read_below_log_start_raises(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0", segment_bytes=4 * len(BATCH))
    fill(log, [1] * 10)
    log.advance_log_start(6)

    with pytest.raises(OffsetOutOfRangeError, match="offset 5 is out of range") as caught:
        log.read(5, 1_000)

    assert caught.value.details == {"offset": 5, "log_start_offset": 6, "high_watermark": 10}
    with pytest.raises(OffsetOutOfRangeError):
        log.read_records(0, 1_000, 10)


def test_read_at_log_start_returns_batch_holding_it(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    log.append(make_batch(5))
    log.advance_log_start(3)

    records = log.read_records(3, 1_000, 10)

    assert [r.offset for r in records] == [3, 4]


def test_offset_for_timestamp_ignores_records_below_log_start(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    log.append(make_batch(5, timestamp=100))  # timestamps 100..104
    log.advance_log_start(3)

    assert log.offset_for_timestamp(0) == (3, 103)


def test_advance_log_start_backwards_does_nothing(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    fill(log, [1] * 5)
    log.advance_log_start(3)

    log.advance_log_start(1)

    assert log.log_start_offset == 3


def test_advance_log_start_past_end_raises(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    fill(log, [1] * 5)

    with pytest.raises(OffsetOutOfRangeError, match="offset 6 is out of range"):
        log.advance_log_start(6)

    assert log.log_start_offset == 0


def test_advance_log_start_to_end_deletes_all_data(tmp_path: Path) -> None:
    directory = tmp_path / "t-0"
    files = FileCache(16)
    log = open_log(directory, files, segment_bytes=2 * len(BATCH))
    fill(log, [1] * 5)

    log.advance_log_start(5)

    assert segment_bases(directory) == [5]
    assert log.size_bytes == 0
    assert log.read(5, 100) == b""
    assert log.append(BATCH) == (5, 5)
    log.close()
    reopened = open_log(directory, files, segment_bytes=2 * len(BATCH))
    assert reopened.log_start_offset == 5
    assert [r.offset for r in read_all(reopened)] == [5]


def test_truncate_below_log_start_restarts_log(tmp_path: Path) -> None:
    directory = tmp_path / "t-0"
    files = FileCache(16)
    log = open_log(directory, files, segment_bytes=2 * len(BATCH))
    fill(log, [1] * 8)
    log.advance_log_start(6)

    log.truncate_to(3)

    assert log.log_start_offset == 3
    assert log.log_end_offset == 3
    assert segment_bases(directory) == [3]
    assert log.append(BATCH) == (3, 3)
    log.close()
    reopened = open_log(directory, files)
    assert (reopened.log_start_offset, reopened.log_end_offset) == (3, 4)
