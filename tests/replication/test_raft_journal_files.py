"""Opening the Raft journal directory and converting the FileJournal of earlier releases."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pysyncobj.journal import FileJournal

from kaflow.config import FsyncPolicy
from kaflow.errors import StorageError
from kaflow.replication.raft import open_journal

ENTRIES = [(b"\x00", 1, 1), (b"create", 2, 1), (b"append", 3, 2)]


def write_file_journal(raft_dir: Path) -> None:
    """Write a journal as Kaflow releases before the journal directory left it."""
    raft_dir.mkdir(parents=True, exist_ok=True)
    old = FileJournal(str(raft_dir / "journal"))
    for entry in ENTRIES:
        old.add(*entry)
    old.setCurrentTerm(2, "127.0.0.1:9001")
    old.setRaftCommitIndex(3)
    old.onOneSecondTimer()
    old._destroy()


def test_open_journal_converts_file_journal(tmp_path: Path) -> None:
    raft_dir = tmp_path / "raft"
    write_file_journal(raft_dir)

    with open_journal(raft_dir, FsyncPolicy.ALWAYS) as journal:
        entries = [journal[i] for i in range(len(journal))]
        term, vote, commit = (
            journal.getCurrentTerm(),
            journal.getVotedForNodeId(),
            journal.getRaftCommitIndex(),
        )

    assert entries == ENTRIES
    assert (term, vote, commit) == (2, "127.0.0.1:9001", 3)
    assert (raft_dir / "journal").is_dir()
    assert (raft_dir / "journal.filejournal").is_file()
    assert (raft_dir / "journal.filejournal.meta").is_file()
    assert not (raft_dir / "journal.converting").exists()


def test_open_journal_reopens_converted(tmp_path: Path) -> None:
    raft_dir = tmp_path / "raft"
    write_file_journal(raft_dir)
    open_journal(raft_dir, FsyncPolicy.ALWAYS).close()

    with open_journal(raft_dir, FsyncPolicy.NEVER) as journal:
        assert journal[-1] == ENTRIES[-1]
        assert journal.getCurrentTerm() == 2


def test_open_journal_redoes_partial_conversion(tmp_path: Path) -> None:
    raft_dir = tmp_path / "raft"
    write_file_journal(raft_dir)
    # A crash while copying left an incomplete copy beside the intact old file.
    (raft_dir / "journal.converting").mkdir()
    (raft_dir / "journal.converting" / "garbage.seg").write_bytes(b"torn")

    with open_journal(raft_dir, FsyncPolicy.ALWAYS) as journal:
        assert len(journal) == len(ENTRIES)
        assert journal.getCurrentTerm() == 2


def test_open_journal_finishes_interrupted_swap(tmp_path: Path) -> None:
    raft_dir = tmp_path / "raft"
    write_file_journal(raft_dir)
    open_journal(raft_dir, FsyncPolicy.ALWAYS).close()
    # As if the process died after moving the old file away, before the last rename.
    (raft_dir / "journal").rename(raft_dir / "journal.converting")
    shutil.move(raft_dir / "journal.filejournal.meta", raft_dir / "journal.meta")

    with open_journal(raft_dir, FsyncPolicy.ALWAYS) as journal:
        assert len(journal) == len(ENTRIES)
        assert journal.getVotedForNodeId() == "127.0.0.1:9001"
    assert (raft_dir / "journal.filejournal.meta").is_file()


def test_open_journal_reports_unreadable_dir(tmp_path: Path) -> None:
    raft_dir = tmp_path / "raft"
    write_file_journal(raft_dir)
    # A file where the copy's directory must go makes the conversion fail.
    (raft_dir / "journal.converting").write_bytes(b"")

    with pytest.raises(StorageError, match=r"converting the Raft journal file .* failed"):
        open_journal(raft_dir, FsyncPolicy.ALWAYS)

    assert (raft_dir / "journal").is_file()
