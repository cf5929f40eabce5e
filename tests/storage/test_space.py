"""SpaceGuard and the Raft journal's handling of a full disk."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from kaflow.errors import DiskFullError, StorageError, error_from_payload
from kaflow.replication.journal import RaftJournal
from kaflow.storage.space import SpaceGuard, is_no_space

# More bytes than any test machine's disk has free, so the guard always rejects.
HUGE_RESERVE = 2**62


def test_space_guard_rejects_below_reserve(tmp_path: Path) -> None:
    guard = SpaceGuard(tmp_path, HUGE_RESERVE, purpose="produce requests")

    with pytest.raises(DiskFullError, match=r"less than the \d+-byte reserve") as raised:
        guard.check(100)

    details = raised.value.details
    assert details["path"] == str(tmp_path)
    assert details["reserve_bytes"] == HUGE_RESERVE
    assert details["needed_bytes"] == 100
    assert 0 <= details["free_bytes"] < HUGE_RESERVE
    assert str(tmp_path) in raised.value.message
    assert guard.rejections == 1


def test_space_guard_accepts_with_room(tmp_path: Path) -> None:
    guard = SpaceGuard(tmp_path, 1)

    guard.check(0)

    assert guard.has_room()
    assert guard.rejections == 0


def test_space_guard_without_reserve_never_rejects(tmp_path: Path) -> None:
    guard = SpaceGuard(tmp_path, 0)

    assert guard.has_room(HUGE_RESERVE)


def test_space_guard_rejects_negative_reserve(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="reserve_bytes must be >= 0"):
        SpaceGuard(tmp_path, -1)


def test_space_guard_missing_directory_is_not_full(tmp_path: Path) -> None:
    guard = SpaceGuard(tmp_path / "missing", HUGE_RESERVE)

    assert guard.has_room()


def test_is_no_space_follows_causes() -> None:
    cause = OSError(errno.ENOSPC, "No space left on device")
    try:
        try:
            raise cause
        except OSError as exc:
            raise StorageError("append failed") from exc
    except StorageError as wrapped:
        assert is_no_space(wrapped)

    assert is_no_space(StorageError("fsync failed", errno=errno.EDQUOT))
    assert not is_no_space(StorageError("bad permissions", errno=errno.EACCES))
    assert not is_no_space(ValueError("no errno"))


def test_disk_full_error_round_trips() -> None:
    error = DiskFullError("disk full", path="/data", free_bytes=0, reserve_bytes=10)

    rebuilt = error_from_payload(error.to_payload())

    assert isinstance(rebuilt, DiskFullError)
    assert rebuilt.details == {"path": "/data", "free_bytes": 0, "reserve_bytes": 10}
    assert DiskFullError.http_status == 507
    assert DiskFullError.retriable


def test_journal_rejects_entries_when_disk_full(tmp_path: Path) -> None:
    guard = SpaceGuard(tmp_path, HUGE_RESERVE, purpose="Raft journal entries")
    with RaftJournal(tmp_path / "journal", space=guard) as journal:
        with pytest.raises(DiskFullError, match="Raft journal entries"):
            journal.add(b"first", 1, 1)

        assert len(journal) == 0
        assert not journal.statistics().failed


def test_journal_accepts_entries_after_space_frees(tmp_path: Path) -> None:
    guard = SpaceGuard(tmp_path, HUGE_RESERVE)
    with RaftJournal(tmp_path / "journal", space=guard) as journal:
        with pytest.raises(DiskFullError):
            journal.add(b"first", 1, 1)

        guard.reserve_bytes = 0
        journal.add(b"first", 1, 1)
        journal.sync()

        assert journal[0] == (b"first", 1, 1)
        assert not journal.statistics().failed


def test_journal_skips_commit_index_store_when_disk_full(tmp_path: Path) -> None:
    guard = SpaceGuard(tmp_path, 0)
    with RaftJournal(tmp_path / "journal", space=guard) as journal:
        journal.add(b"first", 1, 1)
        journal.add(b"second", 2, 1)
        journal.setRaftCommitIndex(2)
        writes_before = journal.statistics().meta_writes
        guard.reserve_bytes = HUGE_RESERVE

        journal.onOneSecondTimer()

        assert journal.statistics().meta_writes == writes_before
        guard.reserve_bytes = 0
        journal.onOneSecondTimer()
        assert journal.statistics().meta_writes == writes_before + 1
