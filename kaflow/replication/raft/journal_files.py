"""Open a member's Raft journal, converting the single-file journal of earlier Kaflow releases.

Kaflow used to give PySyncObj its stock ``FileJournal``: one file at
``<raft dir>/journal`` and a pickled ``journal.meta`` beside it, neither ever
fsynced. The journal is now :class:`~kaflow.replication.journal.RaftJournal`,
a directory at the same path. When :func:`open_journal` finds the old file,
it converts it once:

1. copy every entry, the current term, the vote and the commit index into a
   new journal at ``journal.converting/`` and fsync it;
2. rename ``journal`` to ``journal.filejournal``, then ``journal.meta`` to
   ``journal.filejournal.meta``;
3. rename ``journal.converting`` to ``journal`` and fsync the raft directory.

A crash before step 2 leaves the old file in place, so the next start
converts again from scratch. A crash after the first rename of step 2 leaves
a complete ``journal.converting``, which the next start finishes moving. The
renamed old files are kept for the operator to delete.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from pysyncobj.journal import FileJournal

from kaflow.config import FsyncPolicy
from kaflow.errors import StorageError
from kaflow.replication.journal import RaftJournal
from kaflow.storage.space import SpaceGuard

__all__ = ["JOURNAL_NAME", "open_journal"]

logger = logging.getLogger(__name__)

JOURNAL_NAME = "journal"
_CONVERTING_SUFFIX = ".converting"
_OLD_FORMAT_SUFFIX = ".filejournal"
_OLD_META_SUFFIX = ".meta"


def open_journal(
    raft_dir: Path, fsync: FsyncPolicy, space: SpaceGuard | None = None
) -> RaftJournal:
    """Open the journal at ``raft_dir/journal``, converting an old FileJournal first."""
    path = raft_dir / JOURNAL_NAME
    converting = raft_dir / (JOURNAL_NAME + _CONVERTING_SUFFIX)
    old_copy = raft_dir / (JOURNAL_NAME + _OLD_FORMAT_SUFFIX)
    try:
        if path.is_file():
            _convert(path, converting, old_copy)
        elif not path.exists() and converting.is_dir() and old_copy.is_file():
            logger.info("finishing an interrupted Raft journal conversion path=%s", path)
            _swap_in(path, converting, old_copy)
    except OSError as exc:
        raise StorageError(
            f"converting the Raft journal file {path} to the journal directory failed: {exc}; "
            "free disk space or fix the permissions and restart the node",
            path=str(path),
        ) from exc
    return RaftJournal(path, fsync=fsync, space=space)


def _convert(path: Path, converting: Path, old_copy: Path) -> None:
    if converting.exists():
        # A crash during step 1 left a partial copy; the old file is still complete.
        shutil.rmtree(converting)
    old = FileJournal(str(path))
    try:
        entries = len(old)
        with RaftJournal(converting, fsync=FsyncPolicy.ALWAYS) as new:
            for position in range(entries):
                new.add(*old[position])
            new.setCurrentTerm(old.getCurrentTerm(), old.getVotedForNodeId())
            new.setRaftCommitIndex(old.getRaftCommitIndex())
    finally:
        old._destroy()
    _swap_in(path, converting, old_copy)
    logger.info(
        "converted the Raft journal file to a journal directory path=%s entries=%d "
        "old_file=%s; delete the old file once the node runs well",
        path,
        entries,
        old_copy,
    )


def _swap_in(path: Path, converting: Path, old_copy: Path) -> None:
    if path.is_file():
        path.rename(old_copy)
    old_meta = path.with_name(path.name + _OLD_META_SUFFIX)
    if old_meta.is_file():
        old_meta.rename(old_copy.with_name(old_copy.name + _OLD_META_SUFFIX))
    converting.rename(path)
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
