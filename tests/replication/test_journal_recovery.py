"""RaftJournal start-up recovery: torn tails, damaged records and interrupted compaction."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from kaflow.errors import StorageError
from kaflow.replication.journal import RaftJournal
from kaflow.replication.journal_format import (
    META_FILE_NAME,
    META_TEMP_FILE_NAME,
    RECORD_HEADER_SIZE,
    SEGMENT_HEADER_SIZE,
    RecordHeader,
    decode_record_header,
    encode_segment_header,
    segment_file_name,
)

SEGMENT_BYTES = 512


def make_entries(first: int, count: int, term: int = 1) -> list[tuple[bytes, int, int]]:
    return [
        (f"command-{index:04d}".encode() * 3, index, term) for index in range(first, first + count)
    ]


def build_journal(path: Path, count: int = 40) -> list[tuple[bytes, int, int]]:
    entries = make_entries(1, count)
    with RaftJournal(path, segment_bytes=SEGMENT_BYTES) as journal:
        for entry in entries:
            journal.add(*entry)
        journal.sync()
    return entries


def segment_files(path: Path) -> list[Path]:
    return sorted(path.glob("*.seg"))


def records(segment: Path) -> list[tuple[int, RecordHeader]]:
    """Return (offset, header) of every record in a well-formed segment file."""
    data = segment.read_bytes()
    found = []
    offset = SEGMENT_HEADER_SIZE
    while offset < len(data):
        header = decode_record_header(data, offset)
        found.append((offset, header))
        offset += header.record_size
    return found


def flip_bit(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))


def read_all(path: Path) -> list[tuple[bytes, int, int]]:
    with RaftJournal(path, segment_bytes=SEGMENT_BYTES) as journal:
        return list(journal[0:])


@pytest.mark.parametrize("chopped", [1, 10, RECORD_HEADER_SIZE, RECORD_HEADER_SIZE + 5])
def test_torn_tail_truncated(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, chopped: int
) -> None:
    entries = build_journal(tmp_path)
    last = segment_files(tmp_path)[-1]
    size = last.stat().st_size
    last_record_offset = records(last)[-1][0]
    with last.open("r+b") as file:
        file.truncate(size - chopped)

    with (
        caplog.at_level(logging.WARNING),
        RaftJournal(tmp_path, segment_bytes=SEGMENT_BYTES) as journal,
    ):
        assert list(journal[0:]) == entries[:-1]
        assert journal.statistics().torn_bytes_removed == size - chopped - last_record_offset
    assert "truncated torn tail" in caplog.text
    assert last.stat().st_size == last_record_offset


def test_torn_tail_then_append(tmp_path: Path) -> None:
    entries = build_journal(tmp_path)
    last = segment_files(tmp_path)[-1]
    with last.open("r+b") as file:
        file.truncate(last.stat().st_size - 3)

    with RaftJournal(tmp_path, segment_bytes=SEGMENT_BYTES) as journal:
        journal.add(b"replacement", 40, 2)
        journal.sync()

    assert read_all(tmp_path) == [*entries[:-1], (b"replacement", 40, 2)]


def test_tail_record_bit_flip_truncated(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    entries = build_journal(tmp_path)
    last = segment_files(tmp_path)[-1]
    offset, _ = records(last)[-1]
    flip_bit(last, offset + RECORD_HEADER_SIZE + 2)

    with caplog.at_level(logging.WARNING):
        assert read_all(tmp_path) == entries[:-1]
    assert "truncated torn tail" in caplog.text
    assert "CRC-32C does not match" in caplog.text


def test_zero_filled_tail_truncated(tmp_path: Path) -> None:
    entries = build_journal(tmp_path)
    last = segment_files(tmp_path)[-1]
    with last.open("ab") as file:
        file.write(bytes(300))

    assert read_all(tmp_path) == entries


def test_mid_segment_bit_flip_raises(tmp_path: Path) -> None:
    build_journal(tmp_path)
    last = segment_files(tmp_path)[-1]
    offset, _ = records(last)[0]
    assert len(records(last)) >= 2
    flip_bit(last, offset + RECORD_HEADER_SIZE + 1)

    with pytest.raises(
        StorageError, match=rf"{last.name} is damaged at byte offset {offset}"
    ) as info:
        RaftJournal(tmp_path, segment_bytes=SEGMENT_BYTES)
    assert "an intact record follows" in info.value.message
    assert info.value.details["offset"] == offset


def test_mid_segment_length_flip_raises(tmp_path: Path) -> None:
    build_journal(tmp_path)
    last = segment_files(tmp_path)[-1]
    offset, _ = records(last)[0]
    # The most significant byte of the length: the record now runs past the file end.
    flip_bit(last, offset)

    with pytest.raises(StorageError, match="an intact record follows"):
        RaftJournal(tmp_path, segment_bytes=SEGMENT_BYTES)


def test_sealed_header_flip_raises(tmp_path: Path) -> None:
    build_journal(tmp_path)
    first = segment_files(tmp_path)[0]
    offset, _ = records(first)[1]
    # The last byte of the index field.
    flip_bit(first, offset + 15)

    with pytest.raises(StorageError, match=rf"{first.name} is damaged at byte offset {offset}"):
        RaftJournal(tmp_path, segment_bytes=SEGMENT_BYTES)


def test_sealed_payload_flip_raises_on_read(tmp_path: Path) -> None:
    entries = build_journal(tmp_path)
    first = segment_files(tmp_path)[0]
    offset, _ = records(first)[1]
    flip_bit(first, offset + RECORD_HEADER_SIZE + 4)

    with RaftJournal(tmp_path, segment_bytes=SEGMENT_BYTES, cache_bytes=0) as journal:
        assert journal[0] == entries[0]
        with pytest.raises(StorageError, match=rf"damaged at byte offset {offset}: record CRC-32C"):
            journal[1]


def test_torn_segment_creation_removed(tmp_path: Path) -> None:
    entries = build_journal(tmp_path)
    empty = tmp_path / segment_file_name(len(entries) + 1)
    empty.write_bytes(b"")

    assert read_all(tmp_path) == entries
    assert not empty.exists()


def test_header_only_segment_reused(tmp_path: Path) -> None:
    entries = build_journal(tmp_path)
    # A crash right after a segment roll leaves a new segment with only its header.
    (tmp_path / segment_file_name(41)).write_bytes(encode_segment_header(41))
    segments = len(segment_files(tmp_path))

    with RaftJournal(tmp_path, segment_bytes=SEGMENT_BYTES) as journal:
        assert list(journal[0:]) == entries
        assert journal.statistics().segments == segments
        journal.add(b"next", 41, 1)
        journal.sync()

    assert read_all(tmp_path) == [*entries, (b"next", 41, 1)]
    assert len(segment_files(tmp_path)) == segments


def test_gap_between_segments_raises(tmp_path: Path) -> None:
    build_journal(tmp_path)
    files = segment_files(tmp_path)
    assert len(files) >= 3
    files[1].unlink()

    with pytest.raises(StorageError, match="entries are missing"):
        RaftJournal(tmp_path, segment_bytes=SEGMENT_BYTES)


def test_meta_temp_file_removed(tmp_path: Path) -> None:
    entries = build_journal(tmp_path)
    with RaftJournal(tmp_path) as journal:
        journal.setCurrentTerm(5, "a")
    (tmp_path / META_TEMP_FILE_NAME).write_bytes(b"half-written")

    with RaftJournal(tmp_path, segment_bytes=SEGMENT_BYTES) as journal:
        assert list(journal[0:]) == entries
        assert journal.getCurrentTerm() == 5
    assert not (tmp_path / META_TEMP_FILE_NAME).exists()


def test_damaged_meta_raises(tmp_path: Path) -> None:
    build_journal(tmp_path)
    flip_bit(tmp_path / META_FILE_NAME, 9)

    with pytest.raises(StorageError, match=r"meta file .* is damaged: meta file CRC-32C"):
        RaftJournal(tmp_path)


def test_missing_meta_with_segments_raises(tmp_path: Path) -> None:
    build_journal(tmp_path)
    (tmp_path / META_FILE_NAME).unlink()

    with pytest.raises(StorageError, match="segment files but no meta file"):
        RaftJournal(tmp_path)


def test_compaction_interrupted_before_removal(tmp_path: Path) -> None:
    entries = build_journal(tmp_path, count=60)
    saved = tmp_path / "saved"
    saved.mkdir()
    for file in segment_files(tmp_path):
        shutil.copy2(file, saved / file.name)

    with RaftJournal(tmp_path, segment_bytes=SEGMENT_BYTES) as journal:
        journal.deleteEntriesTo(45)
    # A crash after the meta file was stored but before the old files were
    # removed leaves them in place.
    for file in saved.iterdir():
        if not (tmp_path / file.name).exists():
            shutil.copy2(file, tmp_path / file.name)

    assert read_all(tmp_path) == entries[45:]
    assert len(segment_files(tmp_path)) < len(list(saved.iterdir()))


def test_clear_interrupted_before_removal(tmp_path: Path) -> None:
    build_journal(tmp_path)
    saved = {file.name: file.read_bytes() for file in segment_files(tmp_path)}

    with RaftJournal(tmp_path, segment_bytes=SEGMENT_BYTES) as journal:
        journal.clear()
    for name, data in saved.items():
        (tmp_path / name).write_bytes(data)

    assert read_all(tmp_path) == []
    assert segment_files(tmp_path) == []


def test_compaction_interrupted_before_meta_store(tmp_path: Path) -> None:
    entries = build_journal(tmp_path)
    # A crash while writing the new meta file leaves only the temporary file.
    (tmp_path / META_TEMP_FILE_NAME).write_bytes((tmp_path / META_FILE_NAME).read_bytes()[:10])

    assert read_all(tmp_path) == entries


def test_large_tail_record_checked_in_pieces(tmp_path: Path) -> None:
    entries = build_journal(tmp_path)
    # Larger than the 1 MiB piece in which start-up checks a record's CRC.
    large = bytes(range(256)) * 12_000
    with RaftJournal(tmp_path, segment_bytes=SEGMENT_BYTES) as journal:
        journal.add(large, 41, 1)
        journal.sync()
    last = segment_files(tmp_path)[-1]

    assert read_all(tmp_path) == [*entries, (large, 41, 1)]
    flip_bit(last, SEGMENT_HEADER_SIZE + RECORD_HEADER_SIZE + len(large) - 1)
    assert read_all(tmp_path) == entries


def test_large_mid_record_damage_raises(tmp_path: Path) -> None:
    build_journal(tmp_path)
    large = bytes(range(256)) * 12_000
    # Segments large enough that both records go to the current last segment.
    with RaftJournal(tmp_path, segment_bytes=8 * 1024 * 1024) as journal:
        journal.add(large, 41, 1)
        journal.add(b"after", 42, 1)
        journal.sync()
    last = segment_files(tmp_path)[-1]
    offset, header = records(last)[-2]
    assert header.index == 41
    # The length field: the intact record after it lies more than 1 MiB further on.
    flip_bit(last, offset + 1)

    with pytest.raises(StorageError, match="an intact record follows"):
        RaftJournal(tmp_path, segment_bytes=SEGMENT_BYTES)


def test_zeroed_header_with_records_raises(tmp_path: Path) -> None:
    build_journal(tmp_path)
    last = segment_files(tmp_path)[-1]
    data = bytearray(last.read_bytes())
    data[:SEGMENT_HEADER_SIZE] = bytes(SEGMENT_HEADER_SIZE)
    last.write_bytes(bytes(data))

    with pytest.raises(StorageError, match="the segment header is zero"):
        RaftJournal(tmp_path, segment_bytes=SEGMENT_BYTES)
    assert last.exists()
