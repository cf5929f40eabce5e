from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import pytest

from kaflow.storage import CorruptLogError, PartitionLog
from tests.storage.helpers import make_batch, open_log, read_all, segment_files

SEGMENT_BYTES = 600
INTERVAL = 100


def write_log(directory: Path, batches: int) -> list[tuple[int, int]]:
    """Append ``batches`` batches of varied sizes; return each one's size and record count."""
    log = open_log(directory, segment_bytes=SEGMENT_BYTES, index_interval_bytes=INTERVAL)
    written = []
    for index in range(batches):
        count = 1 + index % 3
        batch = make_batch(count, timestamp=1_000 + 10 * index, value_size=7 * index % 50)
        log.append(batch)
        written.append((len(batch), count))
    log.close()
    return written


def reopen(directory: Path) -> PartitionLog:
    return open_log(directory, segment_bytes=SEGMENT_BYTES, index_interval_bytes=INTERVAL)


def snapshot(log: PartitionLog) -> list[tuple[int, int, bytes | None]]:
    return [(r.offset, r.timestamp, r.value) for r in read_all(log)]


def chop(path: Path, count: int) -> None:
    os.truncate(path, path.stat().st_size - count)


def warning_fields(caplog: pytest.LogCaptureFixture, text: str) -> dict[str, int]:
    (record,) = [r for r in caplog.records if r.levelno == logging.WARNING and text in r.message]
    return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)\b", record.message)}


@pytest.mark.parametrize("chopped", [1, 5, 42, 43, 44], ids=lambda n: f"chop{n}")
def test_recovery_torn_tail_keeps_whole_batches(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, chopped: int
) -> None:
    directory = tmp_path / "t-0"
    batches = write_log(directory, 4)  # four small batches stay in one active segment
    (log_file,) = segment_files(directory, ".log")
    expected = snapshot(reopen(directory))
    remaining = log_file.stat().st_size - chopped
    kept_bytes = 0
    kept_offsets = 0
    for size, count in batches:
        if kept_bytes + size > remaining:
            break
        kept_bytes += size
        kept_offsets += count
    chop(log_file, chopped)

    with caplog.at_level(logging.WARNING):
        log = reopen(directory)

    assert snapshot(log) == expected[:kept_offsets]
    assert log.log_end_offset == kept_offsets
    assert log_file.stat().st_size == kept_bytes
    fields = warning_fields(caplog, "truncating corrupt tail")
    assert fields["valid_bytes"] == kept_bytes
    assert fields["dropped_bytes"] == remaining - kept_bytes
    assert log.append(make_batch(1)) == (kept_offsets, kept_offsets)


def test_recovery_flipped_byte_in_tail_batch(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "t-0"
    batches = write_log(directory, 4)
    expected = snapshot(reopen(directory))
    (log_file,) = segment_files(directory, ".log")
    data = bytearray(log_file.read_bytes())
    data[-3] ^= 0x40
    log_file.write_bytes(bytes(data))

    with caplog.at_level(logging.WARNING):
        log = reopen(directory)

    last_size, last_count = batches[-1]
    assert snapshot(log) == expected[: len(expected) - last_count]
    fields = warning_fields(caplog, "truncating corrupt tail")
    assert fields["valid_bytes"] == len(data) - last_size
    assert fields["dropped_bytes"] == last_size
    assert "CRC-32C mismatch" in caplog.text


def test_recovery_rebuilds_deleted_indexes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "t-0"
    write_log(directory, 40)
    indexes = segment_files(directory, ".index") + segment_files(directory, ".timeindex")
    assert len(indexes) > 4
    original = {path: path.read_bytes() for path in indexes}
    expected = snapshot(reopen(directory))
    for path in indexes:
        path.unlink()

    with caplog.at_level(logging.WARNING):
        log = reopen(directory)

    assert {path: path.read_bytes() for path in indexes} == original
    assert snapshot(log) == expected
    assert log.offset_for_timestamp(1_205) == (expected_offset_for(expected, 1_205))
    assert caplog.text.count("rebuilding indexes") == len(segment_files(directory, ".log"))


def expected_offset_for(
    records: list[tuple[int, int, bytes | None]], timestamp: int
) -> tuple[int, int] | None:
    return next(((o, t) for o, t, _ in records if t >= timestamp), None)


@pytest.mark.parametrize(
    "damage",
    ["odd_size", "not_increasing", "wrong_offset"],
)
@pytest.mark.parametrize("segment", ["closed", "active"])
def test_recovery_rebuilds_corrupt_offset_index(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str, segment: str
) -> None:
    directory = tmp_path / "t-0"
    write_log(directory, 40)
    index_files = segment_files(directory, ".index")
    path = index_files[0] if segment == "closed" else index_files[-1]
    original = path.read_bytes()
    assert len(original) >= 16, "the test needs two entries"
    expected = snapshot(reopen(directory))
    data = bytearray(original)
    if damage == "odd_size":
        data += b"\x00\x01\x02"
    elif damage == "not_increasing":
        data[-8:], data[:8] = data[:8], data[-8:]
    else:
        data[-5] ^= 0x01  # the last entry's offset moves to a byte that starts no batch
    path.write_bytes(bytes(data))

    with caplog.at_level(logging.WARNING):
        log = reopen(directory)

    assert path.read_bytes() == original
    assert snapshot(log) == expected
    assert "rebuilding indexes" in caplog.text


def test_recovery_rebuilds_corrupt_time_index(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "t-0"
    write_log(directory, 40)
    for path in segment_files(directory, ".timeindex"):
        original = path.read_bytes()
        path.write_bytes(original + b"\x07")

    with caplog.at_level(logging.WARNING):
        log = reopen(directory)

    assert all(len(p.read_bytes()) % 12 == 0 for p in segment_files(directory, ".timeindex"))
    records = snapshot(log)
    for target in (0, 1_000, 1_111, 1_250, 1_390, 1_391):
        assert log.offset_for_timestamp(target) == expected_offset_for(records, target)


def test_recovery_missing_middle_segment_raises(tmp_path: Path) -> None:
    directory = tmp_path / "t-0"
    write_log(directory, 40)
    logs = segment_files(directory, ".log")
    assert len(logs) >= 3
    logs[1].unlink()

    with pytest.raises(CorruptLogError, match=re.escape(logs[0].name) + ".*are missing"):
        reopen(directory)


@pytest.mark.parametrize("size", [50, 0], ids=["mid_batch", "empty"])
def test_recovery_closed_segment_shorter_than_index_raises(tmp_path: Path, size: int) -> None:
    directory = tmp_path / "t-0"
    write_log(directory, 40)
    first = segment_files(directory, ".log")[0]
    index = segment_files(directory, ".index")[0]
    index_before = index.read_bytes()
    os.truncate(first, size)

    message = re.escape(str(first)) + " is shorter than its offset index"
    with pytest.raises(CorruptLogError, match=message):
        reopen(directory)
    assert index.read_bytes() == index_before, "the index must be kept as evidence"


def test_recovery_rebuilds_closed_index_pointing_past_end(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "t-0"
    write_log(directory, 40)
    expected = snapshot(reopen(directory))
    index = segment_files(directory, ".index")[0]
    original = index.read_bytes()
    damaged = bytearray(original)
    damaged[-4:] = (10**6).to_bytes(4, "big")
    index.write_bytes(bytes(damaged))

    with caplog.at_level(logging.WARNING):
        log = reopen(directory)

    assert index.read_bytes() == original
    assert snapshot(log) == expected
    assert "points to byte 1000000" in caplog.text


def test_recovery_closed_segment_with_partial_batch_raises(tmp_path: Path) -> None:
    directory = tmp_path / "t-0"
    write_log(directory, 40)
    first = segment_files(directory, ".log")[0]
    chop(first, 1)

    with pytest.raises(CorruptLogError, match="partial batch"):
        reopen(directory)


def test_recovery_removes_leftover_files(tmp_path: Path) -> None:
    directory = tmp_path / "t-0"
    write_log(directory, 3)
    orphan = directory / "00000000000000000099.index"
    orphan.write_bytes(b"")
    temporary = directory / "00000000000000000000.index.tmp"
    temporary.write_bytes(b"junk")

    log = reopen(directory)

    assert not orphan.exists()
    assert not temporary.exists()
    assert log.log_end_offset == 6


def test_recovery_deletes_segments_below_checkpoint(tmp_path: Path) -> None:
    directory = tmp_path / "t-0"
    write_log(directory, 40)
    bases = [int(path.name[:20]) for path in segment_files(directory, ".log")]
    # A crash between writing the checkpoint and deleting segments leaves this state.
    (directory / "log-start-offset.checkpoint").write_text(f"1\n{bases[2]}\n")

    log = reopen(directory)

    assert log.log_start_offset == bases[2]
    assert [int(p.name[:20]) for p in segment_files(directory, ".log")] == bases[2:]


def test_recovery_invalid_checkpoint_raises(tmp_path: Path) -> None:
    directory = tmp_path / "t-0"
    write_log(directory, 3)
    (directory / "log-start-offset.checkpoint").write_text("garbage")

    with pytest.raises(CorruptLogError, match=r"checkpoint .* is invalid"):
        reopen(directory)


def test_recovery_checkpoint_past_end_is_clamped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "t-0"
    write_log(directory, 3)
    (directory / "log-start-offset.checkpoint").write_text("1\n500\n")

    with caplog.at_level(logging.WARNING):
        log = reopen(directory)

    assert log.log_start_offset == log.log_end_offset == 6
    assert "checkpoint is outside the log" in caplog.text
