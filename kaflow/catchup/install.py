"""Install a Raft snapshot received from the leader.

PySyncObj 0.3.17 hands a follower whose log ends before the leader's
compacted log the leader's snapshot file, calls the deserializer, and then
replaces the follower's journal with the two entries the deserializer
returns (``syncobj.py`` ``__loadDumpFile(clearJournal=True)``). Kaflow's
snapshot file holds only references (index, term, size, CRC-32C) to those
two entries, because an append command carries record payloads, and the
follower never received them.

So the follower keeps a placeholder for each: a PySyncObj no-op command
with the entry's real index and term. Index and term are all Raft compares
when the leader sends the entries after the snapshot. Both placeholders lie
at or below the applied index, so no member applies them. The snapshot file
is rewritten to reference the placeholders, so that a restart finds the
journal and the snapshot consistent.

NOTE: if this node becomes leader while a placeholder is still in its
journal, it could send the placeholder to a follower whose log ends just
before it. The Raft adapter forces a compaction two entries after an
install, which drops both placeholders from the journal and shortens that
window to a few ticks.
"""

from __future__ import annotations

import os
from pathlib import Path

from kaflow.replication.snapshot import SnapshotFile, entry_ref, write_snapshot

__all__ = ["PLACEHOLDER_COMMAND", "placeholder_entries", "rewrite_with_placeholders"]

# PySyncObj's command type byte for a no-op entry (_COMMAND_TYPE.NO_OP in syncobj.py).
PLACEHOLDER_COMMAND = b"\x01"

Entry = tuple[bytes, int, int]


def placeholder_entries(snapshot: SnapshotFile) -> tuple[Entry, Entry]:
    """Return the (last, prev) placeholder entries for ``snapshot``."""
    return (
        (PLACEHOLDER_COMMAND, snapshot.last.index, snapshot.last.term),
        (PLACEHOLDER_COMMAND, snapshot.prev.index, snapshot.prev.term),
    )


def rewrite_with_placeholders(path: Path | str, snapshot: SnapshotFile, fsync: bool) -> None:
    """Replace the snapshot file at ``path`` by one that references the placeholders.

    The new file is written beside it and renamed over it, so a crash leaves
    either file, and both load.
    """
    last, prev = placeholder_entries(snapshot)
    rewritten = SnapshotFile(snapshot.state, entry_ref(*last), entry_ref(*prev), snapshot.members)
    target = Path(path)
    tmp_path = target.with_name(target.name + ".placeholders.tmp")
    write_snapshot(tmp_path, rewritten, fsync)
    os.replace(tmp_path, target)
    if fsync:
        fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
