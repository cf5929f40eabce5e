"""Damage in closed segments: verification by CRC and offset chain, cutting, and reads."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from kaflow.errors import CorruptBatchError
from kaflow.storage import CorruptLogError, FileCache, LogConfig, PartitionLog
from kaflow.storage.batch import read_batch_header
from kaflow.storage.scrub import check_batch_chain
from tests.storage.helpers import make_batch, read_all, segment_files

SEGMENT_BYTES = 600
INTERVAL = 100
BATCHES = 30
RECORDS_PER_BATCH = 2


def open_test_log(directory: Path, cut_damaged: bool = False) -> PartitionLog:
    config = LogConfig(segment_bytes=SEGMENT_BYTES, index_interval_bytes=INTERVAL)
    return PartitionLog.open(directory, config, FileCache(16), cut_damaged=cut_damaged)


def write_log(directory: Path) -> list[bytes | None]:
    log = open_test_log(directory)
    for index in range(BATCHES):
        log.append(make_batch(RECORDS_PER_BATCH, timestamp=1_000 + index, tag=f"{index:03d}"))
    values = [record.value for record in read_all(log)]
    log.close()
    return values


def batch_positions(path: Path) -> list[tuple[int, int]]:
    """Return (position, base offset) of every batch in a segment file."""
    data = path.read_bytes()
    found = []
    position = 0
    while position < len(data):
        header = read_batch_header(data, position)
        found.append((position, header.base_offset))
        position += header.length
    return found


def flip_byte(path: Path, position: int) -> None:
    data = bytearray(path.read_bytes())
    data[position] ^= 0x01
    path.write_bytes(bytes(data))


def closed_segment(directory: Path) -> Path:
    """Return the second of several segment files, a closed segment."""
    logs = segment_files(directory, ".log")
    assert len(logs) >= 3
    return logs[1]


def test_verify_intact_log_finds_nothing(tmp_path: Path) -> None:
    write_log(tmp_path / "t-0")
    log = open_test_log(tmp_path / "t-0")

    assert log.verify() is None


def test_verify_finds_flipped_payload_byte(tmp_path: Path) -> None:
    directory = tmp_path / "t-0"
    write_log(directory)
    segment = closed_segment(directory)
    position, base_offset = batch_positions(segment)[1]
    flip_byte(segment, position + 50)

    log = open_test_log(directory)  # closed segments are trusted at open
    damage = log.verify()

    assert damage is not None
    assert damage.offset == base_offset
    assert damage.position == position
    assert damage.path == segment
    assert "CRC" in damage.reason


def test_read_of_flipped_byte_raises(tmp_path: Path) -> None:
    directory = tmp_path / "t-0"
    write_log(directory)
    segment = closed_segment(directory)
    position, base_offset = batch_positions(segment)[1]
    flip_byte(segment, position + 50)
    log = open_test_log(directory)

    with pytest.raises(CorruptBatchError):
        log.read_records(base_offset, 1 << 20, 100)


def test_read_of_flipped_base_offset_raises(tmp_path: Path) -> None:
    directory = tmp_path / "t-0"
    write_log(directory)
    segment = closed_segment(directory)
    position, base_offset = batch_positions(segment)[1]
    data = bytearray(segment.read_bytes())
    struct.pack_into(">q", data, position, base_offset + 1)
    segment.write_bytes(bytes(data))
    log = open_test_log(directory)

    damage = log.verify()
    assert damage is not None
    assert damage.offset == base_offset
    assert "base offset" in damage.reason
    with pytest.raises(CorruptBatchError, match="base offset"):
        log.read_records(base_offset - RECORDS_PER_BATCH, 1 << 20, 100)


def test_truncate_damaged_cuts_before_batch(tmp_path: Path) -> None:
    directory = tmp_path / "t-0"
    values = write_log(directory)
    segment = closed_segment(directory)
    position, base_offset = batch_positions(segment)[1]
    flip_byte(segment, position + 50)
    log = open_test_log(directory)
    damage = log.verify()
    assert damage is not None

    assert log.truncate_damaged(damage)

    assert log.log_end_offset == base_offset
    assert log.verify() is None
    assert [record.value for record in read_all(log)] == values[:base_offset]
    assert segment_files(directory, ".log")[-1] == segment


def test_truncate_damaged_stale_damage_is_ignored(tmp_path: Path) -> None:
    directory = tmp_path / "t-0"
    write_log(directory)
    segment = closed_segment(directory)
    position, _ = batch_positions(segment)[1]
    flip_byte(segment, position + 50)
    log = open_test_log(directory)
    damage = log.verify()
    assert damage is not None
    log.truncate_to(damage.offset - RECORDS_PER_BATCH)

    assert not log.truncate_damaged(damage)
    assert log.log_end_offset == damage.offset - RECORDS_PER_BATCH


def test_open_truncated_closed_segment_raises(tmp_path: Path) -> None:
    directory = tmp_path / "t-0"
    write_log(directory)
    segment = closed_segment(directory)
    with segment.open("r+b") as file:
        file.truncate(segment.stat().st_size - 5)

    with pytest.raises(CorruptLogError):
        open_test_log(directory)


def test_open_cut_damaged_truncated_segment(tmp_path: Path) -> None:
    directory = tmp_path / "t-0"
    values = write_log(directory)
    segment = closed_segment(directory)
    last_position, last_base = batch_positions(segment)[-1]
    with segment.open("r+b") as file:
        file.truncate(segment.stat().st_size - 5)

    log = open_test_log(directory, cut_damaged=True)

    assert log.log_end_offset == last_base
    assert segment.stat().st_size == last_position
    assert segment_files(directory, ".log")[-1] == segment
    assert [record.value for record in read_all(log)] == values[:last_base]
    assert log.verify() is None


def test_open_cut_damaged_missing_segment(tmp_path: Path) -> None:
    directory = tmp_path / "t-0"
    values = write_log(directory)
    logs = segment_files(directory, ".log")
    end_of_first = batch_positions(logs[0])[-1][1] + RECORDS_PER_BATCH
    logs[1].unlink()

    log = open_test_log(directory, cut_damaged=True)

    assert log.log_end_offset == end_of_first
    assert segment_files(directory, ".log") == [logs[0]]
    assert [record.value for record in read_all(log)] == values[:end_of_first]


def test_open_corrupt_index_keeps_data(tmp_path: Path) -> None:
    directory = tmp_path / "t-0"
    values = write_log(directory)
    index = segment_files(directory, ".index")[1]
    index.write_bytes(b"\xff" * 8 + index.read_bytes()[8:])

    log = open_test_log(directory)

    assert log.verify() is None
    assert [record.value for record in read_all(log)] == values


def test_check_batch_chain_accepts_read(tmp_path: Path) -> None:
    write_log(tmp_path / "t-0")
    log = open_test_log(tmp_path / "t-0")
    data = log.read(5, 1 << 20)

    check_batch_chain(data, 5, "t-0")
    check_batch_chain(b"", 5, "t-0")


def test_check_batch_chain_rejects_flipped_byte(tmp_path: Path) -> None:
    write_log(tmp_path / "t-0")
    log = open_test_log(tmp_path / "t-0")
    data = bytearray(log.read(4, 1 << 20))
    data[-3] ^= 0x01

    with pytest.raises(CorruptBatchError):
        check_batch_chain(bytes(data), 4, "t-0")


def test_check_batch_chain_rejects_wrong_start(tmp_path: Path) -> None:
    write_log(tmp_path / "t-0")
    log = open_test_log(tmp_path / "t-0")
    data = log.read(4, 1 << 20)

    with pytest.raises(CorruptBatchError, match="for a read at offset 9"):
        check_batch_chain(data, 9, "t-0")


def test_verify_finds_index_entry_inside_batch(tmp_path: Path) -> None:
    directory = tmp_path / "t-0"
    write_log(directory)
    index = segment_files(directory, ".index")[1]
    data = bytearray(index.read_bytes())
    assert len(data) >= 16  # at least two entries, so the first is not checked at open
    (position,) = struct.unpack_from(">I", data, 4)
    struct.pack_into(">I", data, 4, position + 1)
    index.write_bytes(bytes(data))
    log = open_test_log(directory)

    damage = log.verify()

    assert damage is not None
    assert damage.path == index
    assert damage.position == 0
    assert "offset index entry 0" in damage.reason
