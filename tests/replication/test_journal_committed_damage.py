"""RaftJournal start-up refuses to cut a damaged tail record that is already committed."""

from __future__ import annotations

from pathlib import Path

import pytest

from kaflow.errors import StorageError
from kaflow.replication.journal import RaftJournal
from kaflow.replication.journal_format import RECORD_HEADER_SIZE, SEGMENT_HEADER_SIZE
from tests.replication.test_journal_recovery import (
    SEGMENT_BYTES,
    flip_bit,
    make_entries,
    records,
    segment_files,
)


def build_committed_journal(path: Path, count: int, commit_index: int) -> None:
    with RaftJournal(path, segment_bytes=SEGMENT_BYTES) as journal:
        for entry in make_entries(1, count):
            journal.add(*entry)
        journal.setRaftCommitIndex(commit_index)
        # close() stores the commit index in the meta file.


def test_committed_tail_flip_raises(tmp_path: Path) -> None:
    build_committed_journal(tmp_path, count=40, commit_index=40)
    last = segment_files(tmp_path)[-1]
    offset, _ = records(last)[-1]
    flip_bit(last, offset + RECORD_HEADER_SIZE + 2)
    size = last.stat().st_size

    with pytest.raises(StorageError, match="at or below the stored commit index 40"):
        RaftJournal(tmp_path, segment_bytes=SEGMENT_BYTES)
    assert last.stat().st_size == size


def test_committed_tail_cut_raises(tmp_path: Path) -> None:
    build_committed_journal(tmp_path, count=40, commit_index=40)
    last = segment_files(tmp_path)[-1]
    with last.open("r+b") as file:
        file.truncate(last.stat().st_size - 3)

    with pytest.raises(StorageError, match="committed entry is damaged"):
        RaftJournal(tmp_path, segment_bytes=SEGMENT_BYTES)


def test_uncommitted_tail_flip_truncated(tmp_path: Path) -> None:
    build_committed_journal(tmp_path, count=40, commit_index=39)
    last = segment_files(tmp_path)[-1]
    offset, _ = records(last)[-1]
    flip_bit(last, offset + RECORD_HEADER_SIZE + 2)

    with RaftJournal(tmp_path, segment_bytes=SEGMENT_BYTES) as journal:
        assert len(journal) == 39
        assert journal.getRaftCommitIndex() == 39


def test_committed_zeroed_header_raises(tmp_path: Path) -> None:
    build_committed_journal(tmp_path, count=40, commit_index=40)
    last = segment_files(tmp_path)[-1]
    data = bytearray(last.read_bytes())
    data[:SEGMENT_HEADER_SIZE] = bytes(SEGMENT_HEADER_SIZE)
    last.write_bytes(bytes(data))

    with pytest.raises(StorageError, match="committed entry is damaged"):
        RaftJournal(tmp_path, segment_bytes=SEGMENT_BYTES)
    assert last.exists()
