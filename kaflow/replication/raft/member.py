"""The PySyncObj ``SyncObj`` subclass and transport that make Kaflow's journal durable in time.

An entry must be fsynced before this member reports it as stored. Line
references are to ``pysyncobj/syncobj.py`` of the PyPI release 0.3.17:

- A follower appends entries in its AppendEntries handler (``:1005-1006``,
  or ``:1024`` when it installs a snapshot) and replies in the same handler
  (``:1019``, ``:1025``). :class:`DurableTransport` syncs the journal before
  it sends any message, so the reply never leaves before the entries it
  acknowledges are durable.
- The leader appends entries when it takes commands from its queue
  (``:528``) and counts itself toward the commit index at the start of the
  next tick (``:653-676``). :meth:`MemberSyncObj._onTick` syncs before that.
- A member that wins an election in the tick's own election step
  (``:651``, possible only in a one-member cluster) appends its no-op entry
  and computes the commit index in that same tick, so
  ``_SyncObj__onBecomeLeader`` syncs after appending.

The journal's ``sync()`` costs one fdatasync for everything appended since
the previous one (group commit), and returns at once when nothing is waiting.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from pysyncobj import SyncObj, replicated
from pysyncobj.transport import TCPTransport

from kaflow.errors import DiskFullError, StorageError
from kaflow.replication.journal import RaftJournal
from kaflow.replication.raft.patches import ChunkLabels
from kaflow.replication.results import CommandResult

__all__ = ["DurableTransport", "MemberSyncObj"]

logger = logging.getLogger(__name__)

# Minimum seconds between two warnings about a full disk.
_DISK_FULL_LOG_INTERVAL_S = 10.0

# (member, command, Raft index) -> result; called on the tick thread.
ApplyFunction = Callable[["MemberSyncObj", bytes, int], CommandResult]


class MemberSyncObj(SyncObj):  # type: ignore[misc]
    """A SyncObj whose log is ``journal`` and whose only replicated method applies a command."""

    def __init__(
        self,
        self_address: str,
        peers: list[str],
        conf: Any,
        journal: RaftJournal,
        apply: ApplyFunction,
        before_tick: Callable[[], None],
        on_journal_failure: Callable[[StorageError], None],
    ) -> None:
        # The tick thread starts inside SyncObj.__init__ and may apply entries about
        # 0.1 s later, and the transport is built there too, so these come first.
        self.kaflow_journal = journal
        self.kaflow_apply = apply
        self.kaflow_before_tick = before_tick
        self.kaflow_on_journal_failure = on_journal_failure
        super().__init__(self_address, peers, conf, transportClass=DurableTransport)

    @replicated  # type: ignore[untyped-decorator]
    def apply_command(self, command: bytes) -> CommandResult:
        # PySyncObj advances raftLastApplied after the method returns.
        return self.kaflow_apply(self, command, self.raftLastApplied + 1)

    def _onTick(self, timeToWait: float = 0.0) -> None:  # name fixed by PySyncObj
        # Both the tick thread and doTick() call this. An on-tick callback would run
        # too late: after this tick's commit computation.
        try:
            self.kaflow_journal.sync()
        except StorageError as exc:
            # The journal rejects every write after a failed fsync. Skipping the tick
            # keeps this member from voting or acknowledging until it is restarted.
            self.kaflow_on_journal_failure(exc)
            time.sleep(timeToWait)
            return
        self.kaflow_before_tick()
        try:
            super()._onTick(timeToWait)
        except DiskFullError as exc:
            # The journal rejected an entry before writing it: a follower sends no
            # acknowledgement, so the leader sends the entries again later.
            self._log_disk_full(exc)
            time.sleep(timeToWait)

    def _log_disk_full(self, exc: DiskFullError) -> None:
        now = time.monotonic()
        self.kaflow_disk_full_count = getattr(self, "kaflow_disk_full_count", 0) + 1
        if now - getattr(self, "kaflow_disk_full_logged", 0.0) >= _DISK_FULL_LOG_INTERVAL_S:
            self.kaflow_disk_full_logged = now
            logger.warning(
                "Raft journal rejects entries, disk full: %s rejected_ticks=%d",
                exc.message,
                self.kaflow_disk_full_count,
            )

    def _SyncObj__onBecomeLeader(self) -> None:  # overrides PySyncObj's private method
        super()._SyncObj__onBecomeLeader()
        self.kaflow_journal.sync()


class DurableTransport(TCPTransport):  # type: ignore[misc]
    """PySyncObj's TCP transport, syncing the journal before each message it sends.

    It also corrects the labels of chunked entries (see
    :class:`~kaflow.replication.raft.patches.ChunkLabels`).
    """

    def __init__(self, syncObj: MemberSyncObj, selfNode: Any, otherNodes: Any) -> None:
        self._journal = syncObj.kaflow_journal
        self.chunk_labels = ChunkLabels(self._entry_at)
        super().__init__(syncObj, selfNode, otherNodes)

    def send(self, node: Any, message: Any) -> bool:
        self._journal.sync()
        if isinstance(message, dict):
            message = self.chunk_labels.relabel(node, message)
        return bool(super().send(node, message))

    def _entry_at(self, index: int) -> tuple[bytes, int, int] | None:
        journal = self._journal
        if not len(journal):
            return None
        position = index - journal[0][1]
        if not 0 <= position < len(journal):
            return None
        entry: tuple[bytes, int, int] = journal[position]
        return entry
