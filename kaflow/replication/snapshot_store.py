"""Keep one member's Raft snapshot, Raft journal and partition logs consistent.

A snapshot must reflect exactly the state after its Raft index, and the
partition logs must hold every record up to the snapshot's end offsets. So
:meth:`SnapshotStore.write` flushes (and with fsync, syncs) every partition
log before it writes the snapshot file, and :meth:`SnapshotStore.load`
truncates logs that ran ahead of the snapshot before the journal entries
after it are replayed. Both run on PySyncObj's tick thread, between applies.

When there is no snapshot yet, the journal contains every command since
index 1, so :meth:`SnapshotStore.prepare` empties the partition logs and the
replay rebuilds them. It refuses to start, instead of deleting anything, when the
data cannot be explained: partition logs without any Raft journal, or a
compacted journal without the snapshot it was compacted into.

Every load after the one at start installs a snapshot the leader sent,
because this member's log ended before the leader's compacted log; see
kaflow.catchup.install for how the two entries it lacks are replaced.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Protocol

from kaflow.catchup.install import placeholder_entries, rewrite_with_placeholders
from kaflow.catchup.reconcile import LogOrigin
from kaflow.errors import StorageError
from kaflow.replication.snapshot import SnapshotFile, entry_ref, read_snapshot, write_snapshot
from kaflow.replication.state_machine import StateMachine

__all__ = ["Entry", "JournalLike", "SnapshotStore"]

logger = logging.getLogger(__name__)

# A Raft log entry as PySyncObj stores it: (command, index, term).
Entry = tuple[bytes, int, int]


class JournalLike(Protocol):
    """The part of PySyncObj's journal interface the store uses; positions start at 0."""

    def __len__(self) -> int: ...

    def __getitem__(self, position: int) -> Entry: ...

    def deleteEntriesTo(self, entryTo: int) -> None: ...  # name fixed by PySyncObj


class SnapshotStore:
    """Writes and loads the snapshot file of one Raft member."""

    def __init__(
        self, state_machine: StateMachine, journal: JournalLike, path: Path, fsync: bool
    ) -> None:
        self._state_machine = state_machine
        self._journal = journal
        self._path = path
        self._fsync = fsync
        self._failing = False
        # Raft index of the last snapshot written or loaded; 0 before the first one.
        self.index = 0
        # True until the load at start, when a snapshot file exists; later loads are installs.
        self._load_at_start = False
        # Raft index of the last installed snapshot until a compaction after it is requested.
        self._installed_index: int | None = None

    @property
    def path(self) -> Path:
        return self._path

    def prepare(self) -> None:
        """Check the data directory before Raft starts; reset storage if there is no snapshot."""
        if self._path.exists():
            self._load_at_start = True
            return  # Loaded on PySyncObj's first tick, which calls load().
        raft_dir = self._path.parent
        if len(self._journal) and self._journal[0][1] > 1:
            raise StorageError(
                f"the Raft journal in {raft_dir} starts at index {self._journal[0][1]} but the "
                "snapshot file it was compacted into is missing; restore the snapshot file or "
                "the whole data directory from a backup",
                raft_dir=str(raft_dir),
            )
        if not len(self._journal) and self._state_machine.stored_partitions():
            raise StorageError(
                f"the data directory contains partition logs but {raft_dir} has no Raft journal "
                "or snapshot, so their offsets and topics are unknown; move the logs away or "
                "restore the raft directory",
                raft_dir=str(raft_dir),
            )
        self._state_machine.reset()

    def write(self, tmp_path: str, last: Entry, prev: Entry, members: list[str]) -> None:
        """Write a snapshot of the state after entry ``last`` to ``tmp_path``.

        PySyncObj renames ``tmp_path`` over the snapshot file afterwards.
        Raises (after a WARNING, once per failure episode) if any step fails.
        """
        try:
            self._state_machine.flush(self._fsync)
            snapshot = SnapshotFile(
                state=self._state_machine.snapshot(),
                last=entry_ref(*last),
                prev=entry_ref(*prev),
                members=members,
            )
            write_snapshot(tmp_path, snapshot, self._fsync)
        except Exception as exc:
            if not self._failing:
                logger.warning("writing the Raft snapshot failed index=%d error=%s", last[1], exc)
            self._failing = True
            raise
        if self._failing:
            logger.info("writing the Raft snapshot succeeds again index=%d", last[1])
        self._failing = False
        self.index = last[1]

    def load(self, path: str) -> tuple[Entry, Entry, list[str]]:
        """Restore the state machine from the snapshot at ``path``.

        Returns the two log entries the snapshot was taken after, taken from
        the journal, and the member addresses. On failure the state machine
        halts before the exception propagates: PySyncObj only logs a failed
        load and would go on applying entries to the wrong state.
        """
        at_start, self._load_at_start = self._load_at_start, False
        try:
            snapshot = read_snapshot(path)
            origin = self._install_origin(snapshot, at_start)
            if origin is None:
                last, prev = self._matching_entries(snapshot)
                self._drop_journal_before(snapshot.prev.index)
                self._state_machine.restore(snapshot.state)
            else:
                rewrite_with_placeholders(path, snapshot, self._fsync)
                last, prev = placeholder_entries(snapshot)
                self._state_machine.restore(snapshot.state, origin)
                self._installed_index = snapshot.last.index
                self._log_install(snapshot, origin)
        except Exception as exc:
            self._state_machine.halt(
                StorageError(f"cannot load the Raft snapshot {path}: {exc}", path=path)
            )
            raise
        self.index = snapshot.last.index
        logger.info("raft snapshot loaded index=%d", snapshot.last.index)
        return last, prev, snapshot.members

    def compaction_due(self, applied_index: int) -> bool:
        """Return True once, when entries past an installed snapshot allow a compaction.

        A compaction at ``applied_index`` keeps the journal from
        ``applied_index - 1``, so two entries past the install it drops both
        placeholder entries (see kaflow.catchup.install).
        """
        installed = self._installed_index
        if installed is None or applied_index < installed + 2:
            return False
        self._installed_index = None
        return True

    def _install_origin(self, snapshot: SnapshotFile, at_start: bool) -> LogOrigin | None:
        """Return how to install ``snapshot``, or None to load it against the journal."""
        if not at_start:
            return LogOrigin.LEADER
        if not self._state_machine.gaps.enabled:
            return None
        journal = self._journal
        behind = not len(journal) or journal[len(journal) - 1][1] < snapshot.prev.index
        if behind:
            # A crash cut an install short after PySyncObj stored the leader's snapshot.
            return LogOrigin.UNKNOWN
        return None

    def _matching_entries(self, snapshot: SnapshotFile) -> tuple[Entry, Entry]:
        last = self._journal_entry(snapshot.last.index)
        prev = self._journal_entry(snapshot.prev.index)
        if not (snapshot.last.matches(*last) and snapshot.prev.matches(*prev)):
            raise StorageError(
                f"the Raft journal entries at indexes {snapshot.prev.index} and "
                f"{snapshot.last.index} differ from the ones the snapshot was taken after"
            )
        return last, prev

    def _log_install(self, snapshot: SnapshotFile, origin: LogOrigin) -> None:
        partitions = self._state_machine.all_partitions()
        logger.info(
            "raft snapshot installed index=%d term=%d origin=%s topics=%d partitions=%d "
            "partitions_behind=%d snapshot_bytes=%d",
            snapshot.last.index,
            snapshot.last.term,
            origin.value,
            len(self._state_machine.topic_names()),
            len(partitions),
            self._state_machine.gaps.statistics().open_gaps,
            len(snapshot.state),
        )

    def _journal_entry(self, index: int) -> Entry:
        journal = self._journal
        if len(journal):
            position = index - journal[0][1]
            if 0 <= position < len(journal):
                return journal[position]
        raise StorageError(f"the Raft journal has no entry at index {index}")

    def _drop_journal_before(self, index: int) -> None:
        # A crash between writing the snapshot and compacting the journal leaves older
        # entries in front. PySyncObj would then clear the whole journal, dropping
        # committed entries after the snapshot; finishing the compaction keeps them.
        position = index - self._journal[0][1]
        if position > 0:
            logger.info("finishing an interrupted journal compaction up_to_index=%d", index)
            self._journal.deleteEntriesTo(position)

    def fsync_directory(self) -> None:
        """Make the rename of a new snapshot file durable (with fsync on)."""
        if not self._fsync:
            return
        try:
            fd = os.open(self._path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            logger.warning("fsync of directory failed path=%s error=%s", self._path.parent, exc)
