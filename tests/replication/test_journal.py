"""RaftJournal: entry access, persistence, compaction, truncation and fsync accounting."""

from __future__ import annotations

import errno
import os
import pickle
from pathlib import Path

import pytest

import kaflow.replication.journal as journal_module
from kaflow.config import FsyncPolicy
from kaflow.errors import InternalError, InvalidConfigError, RecordTooLargeError, StorageError
from kaflow.replication.journal import RaftJournal
from kaflow.replication.journal_format import META_FILE_NAME, decode_meta

# Small segments so that a few dozen entries span several files.
SEGMENT_BYTES = 256


def make_entries(first: int, count: int, term: int = 1) -> list[tuple[bytes, int, int]]:
    return [(f"command-{index}".encode(), index, term) for index in range(first, first + count)]


def open_journal(path: Path, **settings: object) -> RaftJournal:
    settings.setdefault("segment_bytes", SEGMENT_BYTES)
    return RaftJournal(path, **settings)  # type: ignore[arg-type]


def fill(journal: RaftJournal, entries: list[tuple[bytes, int, int]]) -> None:
    for entry in entries:
        journal.add(*entry)
    journal.sync()


def segment_files(path: Path) -> list[Path]:
    return sorted(path.glob("*.seg"))


def stored_meta(path: Path) -> tuple[int, str | None, int, int]:
    meta = decode_meta((path / META_FILE_NAME).read_bytes())
    return meta.current_term, meta.voted_for, meta.commit_index, meta.log_start_index


def test_index_positive_and_negative(tmp_path: Path) -> None:
    entries = make_entries(1, 20)
    with open_journal(tmp_path) as journal:
        fill(journal, entries)

        assert len(journal) == 20
        assert journal[0] == entries[0]
        assert journal[-1] == entries[-1]
        assert journal[7] == entries[7]
        assert journal[-20] == entries[0]


@pytest.mark.parametrize("position", [20, -21, 1000], ids=["end", "before-start", "far"])
def test_index_out_of_range_raises(tmp_path: Path, position: int) -> None:
    with open_journal(tmp_path) as journal:
        fill(journal, make_entries(1, 20))

        with pytest.raises(IndexError, match="out of range"):
            journal[position]


@pytest.mark.parametrize(
    "cut",
    [
        slice(3, None),
        slice(None, -2),
        slice(-5, None),
        slice(2, 9, 3),
        slice(None, None, -1),
        slice(15, 4, -2),
        slice(9, 3),
        slice(100, None),
    ],
    ids=[
        "from-3",
        "to-minus-2",
        "last-5",
        "step-3",
        "reversed",
        "reversed-step",
        "empty",
        "past-end",
    ],
)
def test_slice_matches_list(tmp_path: Path, cut: slice) -> None:
    entries = make_entries(5, 20)
    with open_journal(tmp_path) as journal:
        fill(journal, entries)

        view = journal[cut]

        assert len(view) == len(entries[cut])
        assert list(view) == entries[cut]
        assert view == entries[cut]


def test_view_slice_and_reversed(tmp_path: Path) -> None:
    entries = make_entries(1, 12)
    with open_journal(tmp_path) as journal:
        fill(journal, entries)

        view = journal[2:]

        assert list(view[1:4]) == entries[2:][1:4]
        assert list(reversed(view)) == list(reversed(entries[2:]))
        assert view[-1] == entries[-1]


def test_view_reads_entries_on_access(tmp_path: Path) -> None:
    with open_journal(tmp_path, cache_bytes=0) as journal:
        fill(journal, make_entries(1, 30))
        misses_before = journal.statistics().cache_misses

        view = journal[3:]
        misses_after_slice = journal.statistics().cache_misses
        view[4]

        assert misses_after_slice == misses_before
        assert journal.statistics().cache_misses == misses_before + 1


def test_view_pickles_as_list(tmp_path: Path) -> None:
    entries = make_entries(1, 6)
    with open_journal(tmp_path) as journal:
        fill(journal, entries)

        restored = pickle.loads(pickle.dumps({"entries": journal[1:4]}, protocol=2))

        assert restored["entries"] == entries[1:4]
        assert type(restored["entries"]) is list


def test_view_after_truncation_raises(tmp_path: Path) -> None:
    with open_journal(tmp_path) as journal:
        fill(journal, make_entries(1, 10))
        view = journal[2:]

        journal.deleteEntriesFrom(5)

        with pytest.raises(InternalError, match="stale"):
            view[0]


def test_view_of_compacted_entry_raises(tmp_path: Path) -> None:
    entries = make_entries(1, 10)
    with open_journal(tmp_path) as journal:
        fill(journal, entries)
        view = journal[0:]

        journal.deleteEntriesTo(4)

        assert view[6] == entries[6]
        with pytest.raises(InternalError, match="no longer in the journal"):
            view[1]


def test_add_out_of_order_raises(tmp_path: Path) -> None:
    with open_journal(tmp_path) as journal:
        fill(journal, make_entries(1, 3))

        with pytest.raises(InternalError, match="out of order: index 5 after last index 3"):
            journal.add(b"x", 5, 1)
        assert len(journal) == 3


def test_add_rejects_non_bytes_command(tmp_path: Path) -> None:
    with open_journal(tmp_path) as journal, pytest.raises(InternalError, match="must be bytes"):
        journal.add("text", 1, 1)  # type: ignore[arg-type]


def test_add_rejects_oversized_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(journal_module, "MAX_PAYLOAD_BYTES", 8)
    with open_journal(tmp_path) as journal:
        with pytest.raises(RecordTooLargeError, match=r"9 bytes, more than .* 8 bytes"):
            journal.add(b"123456789", 1, 1)
        assert len(journal) == 0


def test_empty_journal_any_first_index(tmp_path: Path) -> None:
    with open_journal(tmp_path) as journal:
        journal.add(b"first", 41, 2)
        journal.sync()

    with open_journal(tmp_path) as journal:
        assert list(journal[0:]) == [(b"first", 41, 2)]


def test_reopen_restores_all_state(tmp_path: Path) -> None:
    entries = make_entries(1, 40, term=3)
    with open_journal(tmp_path) as journal:
        fill(journal, entries)
        journal.setCurrentTerm(4, "127.0.0.1:9001")
        journal.setRaftCommitIndex(33)

    with open_journal(tmp_path) as journal:
        assert list(journal[0:]) == entries
        assert journal.getCurrentTerm() == 4
        assert journal.getVotedForNodeId() == "127.0.0.1:9001"
        assert journal.getRaftCommitIndex() == 33
        assert journal.statistics().torn_bytes_removed == 0


def test_fresh_journal_defaults(tmp_path: Path) -> None:
    with open_journal(tmp_path / "new") as journal:
        assert len(journal) == 0
        assert journal.getCurrentTerm() == 0
        assert journal.getVotedForNodeId() is None
        assert journal.getRaftCommitIndex() == 1


def test_set_current_term_durable_on_return(tmp_path: Path) -> None:
    with open_journal(tmp_path) as journal:
        journal.setCurrentTerm(7, "node-b")

        assert stored_meta(tmp_path)[:2] == (7, "node-b")
        journal.setCurrentTerm(8, None)
        assert stored_meta(tmp_path)[:2] == (8, None)


def test_commit_index_stored_by_timer(tmp_path: Path) -> None:
    with open_journal(tmp_path) as journal:
        fill(journal, make_entries(1, 10))
        journal.setCurrentTerm(1, None)
        journal.setRaftCommitIndex(9)
        stored_before_timer = stored_meta(tmp_path)[2]

        journal.onOneSecondTimer()

        assert stored_before_timer == 1
        assert stored_meta(tmp_path)[2] == 9


def test_compaction_drops_whole_segments(tmp_path: Path) -> None:
    entries = make_entries(1, 60)
    with open_journal(tmp_path) as journal:
        fill(journal, entries)
        files_before = len(segment_files(tmp_path))

        journal.deleteEntriesTo(45)

        assert list(journal[0:]) == entries[45:]
        assert len(segment_files(tmp_path)) < files_before
        assert stored_meta(tmp_path)[3] == 46

    with open_journal(tmp_path) as journal:
        assert list(journal[0:]) == entries[45:]
        assert journal[0] == entries[45]


def test_truncation_across_segments(tmp_path: Path) -> None:
    entries = make_entries(1, 60)
    with open_journal(tmp_path) as journal:
        fill(journal, entries)

        journal.deleteEntriesFrom(12)
        replacement = make_entries(13, 5, term=2)
        fill(journal, replacement)

        assert list(journal[0:]) == entries[:12] + replacement

    with open_journal(tmp_path) as journal:
        assert list(journal[0:]) == entries[:12] + replacement


def test_truncation_durable_on_return(tmp_path: Path) -> None:
    with open_journal(tmp_path) as journal:
        fill(journal, make_entries(1, 60))
        fsyncs_before = journal.statistics().data_fsyncs

        journal.deleteEntriesFrom(30)

        assert journal.statistics().data_fsyncs == fsyncs_before + 1
        assert journal.statistics().unsynced_entries == 0


def test_clear_then_reopen_is_empty(tmp_path: Path) -> None:
    with open_journal(tmp_path) as journal:
        fill(journal, make_entries(1, 30))
        journal.clear()

        assert len(journal) == 0
        assert segment_files(tmp_path) == []

    with open_journal(tmp_path) as journal:
        assert len(journal) == 0


def test_clear_then_lower_index(tmp_path: Path) -> None:
    snapshot_entries = [(b"prev", 7, 2), (b"last", 8, 2)]
    with open_journal(tmp_path) as journal:
        fill(journal, make_entries(1, 30))
        journal.clear()
        fill(journal, snapshot_entries)

    with open_journal(tmp_path) as journal:
        assert list(journal[0:]) == snapshot_entries


def test_segments_roll_by_size(tmp_path: Path) -> None:
    with open_journal(tmp_path, segment_bytes=1024) as journal:
        fill(journal, [(bytes(100), index, 1) for index in range(1, 51)])

        files = segment_files(tmp_path)
        assert len(files) == journal.statistics().segments
        assert len(files) > 1
        assert all(file.stat().st_size <= 1024 for file in files)


def test_oversized_entry_own_segment(tmp_path: Path) -> None:
    big = bytes(5000)
    with open_journal(tmp_path, segment_bytes=1024) as journal:
        fill(journal, [(b"a", 1, 1), (big, 2, 1), (b"c", 3, 1)])

        assert journal[1] == (big, 2, 1)
        assert journal.statistics().segments == 3


def test_group_sync_uses_one_fdatasync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real_fdatasync = os.fdatasync

    def counting_fdatasync(fd: int) -> None:
        calls.append(fd)
        real_fdatasync(fd)

    with open_journal(tmp_path, segment_bytes=1024 * 1024) as journal:
        fill(journal, make_entries(1, 5))
        before = journal.statistics()
        monkeypatch.setattr(os, "fdatasync", counting_fdatasync)

        for entry in make_entries(6, 200):
            journal.add(*entry)
        unsynced = journal.statistics().unsynced_entries
        journal.sync()
        journal.sync()

        after = journal.statistics()
        assert unsynced == 200
        assert after.data_fsyncs - before.data_fsyncs == 1
        assert len(calls) == 1
        assert after.unsynced_entries == 0


def test_never_policy_skips_fsync(tmp_path: Path) -> None:
    with open_journal(tmp_path, fsync=FsyncPolicy.NEVER) as journal:
        fill(journal, make_entries(1, 50))
        journal.setCurrentTerm(2, "a")
        journal.deleteEntriesFrom(10)
        journal.deleteEntriesTo(3)

        stats = journal.statistics()
        assert stats.data_fsyncs == 0
        assert stats.directory_fsyncs == 0
        assert stats.meta_writes > 0


def test_second_open_of_directory_raises(tmp_path: Path) -> None:
    with open_journal(tmp_path), pytest.raises(StorageError, match="is in use"):
        open_journal(tmp_path)


@pytest.mark.parametrize(
    ("setting", "value"),
    [("segment_bytes", 10), ("cache_bytes", -1), ("max_open_segments", 0)],
    ids=["segment-bytes", "cache-bytes", "open-segments"],
)
def test_invalid_setting_raises(tmp_path: Path, setting: str, value: int) -> None:
    with pytest.raises(InvalidConfigError, match=f"{setting}={value}"):
        open_journal(tmp_path, **{setting: value})


def test_fsync_failure_rejects_further_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A real fsync error needs a failing disk, so os.fdatasync is replaced.
    def failing_fdatasync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    journal = open_journal(tmp_path)
    fill(journal, make_entries(1, 3))
    journal.add(b"unsynced", 4, 1)
    monkeypatch.setattr(os, "fdatasync", failing_fdatasync)

    with pytest.raises(StorageError, match=r"failed to fsync .*Input/output error"):
        journal.sync()
    with pytest.raises(StorageError, match="rejects writes after an earlier failure"):
        journal.add(b"next", 5, 1)
    assert journal.statistics().failed
    # The timer stays quiet, so that PySyncObj's tick does not raise every second.
    journal.setRaftCommitIndex(3)
    journal.onOneSecondTimer()
    journal.close()


def test_closed_journal_raises(tmp_path: Path) -> None:
    journal = open_journal(tmp_path)
    journal.close()

    with pytest.raises(InternalError, match="is closed"):
        journal.add(b"x", 1, 1)


def test_reads_with_bounded_handles(tmp_path: Path) -> None:
    entries = make_entries(1, 200)
    with open_journal(tmp_path, max_open_segments=2, cache_bytes=0) as journal:
        fill(journal, entries)

        assert list(journal[0:]) == entries
        assert journal.statistics().segments > 10
        assert journal.statistics().open_segment_files <= 3
