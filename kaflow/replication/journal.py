"""A durable Raft journal for PySyncObj: checksummed segment files and an atomic meta file.

:class:`RaftJournal` implements the journal interface that PySyncObj 0.3.17's
``SyncObj`` calls (the methods of ``pysyncobj.journal.Journal``) without
importing PySyncObj. Compared with PySyncObj's ``FileJournal`` it

- fsyncs. With the ``always`` policy, ``sync()`` makes every entry added so
  far durable with one fdatasync (group commit), and the term and vote are
  durable before ``setCurrentTerm`` returns.
- checks a CRC-32C on every record and repairs a torn tail at start-up.
- keeps only 8 bytes per entry in memory and reads entries from disk on
  demand, with a small cache of recent entries.
- uses 64-bit offsets, and compacts crash-safely by storing the new log start
  index before removing whole segment files.

File layout: :mod:`kaflow.replication.journal_format`. Start-up recovery:
:mod:`kaflow.replication.journal_recovery`.

Entries are ``(command, index, term)`` tuples. Like PySyncObj's journals, the
journal is addressed by position: ``journal[0]`` is the oldest entry kept and
``journal[-1]`` the newest. A slice returns a :class:`JournalView`, a sequence
that reads its entries when they are accessed.
"""

from __future__ import annotations

import logging
import operator
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import overload

from kaflow.config import FsyncPolicy
from kaflow.errors import (
    DiskFullError,
    InternalError,
    InvalidConfigError,
    RecordTooLargeError,
    StorageError,
)
from kaflow.replication.journal_directory import JournalDirectory
from kaflow.replication.journal_format import (
    MAX_PAYLOAD_BYTES,
    MAX_U64,
    RECORD_HEADER_SIZE,
    SEGMENT_HEADER_SIZE,
    JournalMeta,
)
from kaflow.replication.journal_log import SegmentLog
from kaflow.replication.journal_recovery import recover
from kaflow.replication.journal_segment import Entry
from kaflow.replication.journal_view import EntryCache, JournalStatistics, JournalView
from kaflow.storage.space import SpaceGuard, is_no_space

__all__ = [
    "DEFAULT_CACHE_BYTES",
    "DEFAULT_MAX_OPEN_SEGMENTS",
    "DEFAULT_SEGMENT_BYTES",
    "Entry",
    "JournalStatistics",
    "JournalView",
    "RaftJournal",
]

logger = logging.getLogger(__name__)

DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024
MIN_SEGMENT_BYTES = SEGMENT_HEADER_SIZE + RECORD_HEADER_SIZE
# Recent entries kept in memory: followers are sent entries from the tail.
DEFAULT_CACHE_BYTES = 8 * 1024 * 1024
DEFAULT_MAX_OPEN_SEGMENTS = 16


class RaftJournal:
    """The Raft log, term, vote and commit index of one node, stored in a directory.

    ``fsync`` is the durability policy. With ``ALWAYS`` (the default) the
    caller must call :meth:`sync` before it reports entries as stored (a
    follower's AppendEntries reply, the leader counting its own entries), and
    the meta file is fsynced on every store. With ``NEVER`` nothing is
    fsynced: data survives a process crash but not necessarily a power loss.

    Segments roll over once they reach ``segment_bytes``, and a single entry
    larger than that gets a segment of its own. ``cache_bytes`` bounds the
    payload bytes of recent entries kept in memory, and ``max_open_segments``
    the read-only descriptors kept open for sealed segments.

    All methods are thread-safe. After a failed write or fsync every further
    write raises StorageError, because the kernel may have dropped the data
    that failed to reach the disk: reopen the journal to recover. A full disk
    is the exception: when ``space`` reports less free space than its
    reserve, or a record write fails with ENOSPC and is undone, add() raises
    DiskFullError and the journal accepts entries again once space is freed.
    """

    def __init__(
        self,
        directory: Path | str,
        *,
        fsync: FsyncPolicy = FsyncPolicy.ALWAYS,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        max_open_segments: int = DEFAULT_MAX_OPEN_SEGMENTS,
        space: SpaceGuard | None = None,
    ) -> None:
        _check_setting("segment_bytes", segment_bytes, MIN_SEGMENT_BYTES)
        _check_setting("cache_bytes", cache_bytes, 0)
        _check_setting("max_open_segments", max_open_segments, 1)
        self._lock = threading.Lock()
        self._space = space

        self._directory = JournalDirectory(Path(directory), durable=fsync is FsyncPolicy.ALWAYS)
        try:
            recovered = recover(self._directory)
        except BaseException:
            self._directory.close()
            raise
        self._meta: JournalMeta = recovered.meta
        self._first_index = recovered.first_index
        self._last_index = recovered.last_index
        self._torn_bytes = recovered.torn_bytes
        self._log = SegmentLog(
            self._directory,
            recovered.segments,
            recovered.active_fd,
            segment_bytes=segment_bytes,
            max_open_segments=max_open_segments,
        )

        self._cache = EntryCache(cache_bytes)
        # journal[0] is read on almost every PySyncObj call, so it is kept apart
        # from the cache, where tail traffic would evict it.
        self._head: Entry | None = None
        # Bumped whenever entries may be replaced (truncation, clear), which
        # invalidates earlier views.
        self._truncation_epoch = 0
        self._unsynced_entries = 0
        # The commit index changed since the last meta store.
        self._meta_dirty = False
        self._closed = False
        self._failure: StorageError | None = None

        logger.info(
            "opened Raft journal path=%s entries=%d first_index=%d last_index=%d segments=%d "
            "fsync=%s torn_bytes_removed=%d",
            self._directory.path,
            len(self),
            self._first_index,
            self._last_index,
            self._log.segment_count,
            fsync.value,
            self._torn_bytes,
        )

    # PySyncObj's journal interface. The camelCase names are fixed by it.

    def add(self, command: bytes, idx: int, term: int) -> None:
        """Append an entry, which becomes durable at the next :meth:`sync`.

        ``idx`` must follow the last entry's index, but an empty journal
        accepts any index. Raises RecordTooLargeError for commands over
        4 GiB - 1 bytes.
        """
        if not isinstance(command, bytes):
            raise InternalError(
                f"journal command must be bytes, got {type(command).__name__}",
                index=idx,
            )
        _check_u64("index", idx)
        _check_u64("term", term)
        if len(command) > MAX_PAYLOAD_BYTES:
            raise RecordTooLargeError(
                f"Raft entry {idx} is {len(command)} bytes, more than the journal's "
                f"maximum of {MAX_PAYLOAD_BYTES} bytes. Send smaller commands",
                size=len(command),
                max_size=MAX_PAYLOAD_BYTES,
            )

        if self._space is not None:
            self._space.check(RECORD_HEADER_SIZE + len(command))

        with self._mutation():
            if self._last_index >= self._first_index and idx != self._last_index + 1:
                raise InternalError(
                    f"Raft journal append out of order: index {idx} after last index "
                    f"{self._last_index}. Entries must have consecutive indexes",
                    index=idx,
                    last_index=self._last_index,
                )
            if self._last_index < self._first_index:
                self._start_log_at(idx)
            self._append_record(command, idx, term)
            self._last_index = idx
            self._unsynced_entries += 1
            entry = (command, idx, term)
            self._cache.put(idx, entry)
            if idx == self._first_index:
                self._head = entry

    def clear(self) -> None:
        """Remove every entry. The next add() may start at any index."""
        with self._mutation():
            self._clear()

    def deleteEntriesFrom(self, entryFrom: int) -> None:
        """Remove the entries from position ``entryFrom`` on, as ``del log[entryFrom:]`` does.

        Used to drop a conflicting tail. With the ``always`` policy the
        truncation is durable on return.
        """
        with self._mutation():
            length = self._length()
            new_length = slice(operator.index(entryFrom), None).indices(length)[0]
            if new_length >= length:
                return
            if new_length == 0:
                self._clear()
                return
            self._truncate(self._first_index + new_length)

    def deleteEntriesTo(self, entryTo: int) -> None:
        """Remove the entries before position ``entryTo``, as ``log = log[entryTo:]`` does.

        Used after a snapshot. The new log start index is stored in the meta
        file before any segment file is removed, so a crash in between only
        leaves files that the next start-up removes.
        """
        with self._mutation():
            length = self._length()
            start = slice(operator.index(entryTo), None).indices(length)[0]
            if start == 0:
                return
            if start >= length:
                self._clear()
                return
            self._compact(self._first_index + start)

    @overload
    def __getitem__(self, item: int) -> Entry: ...

    @overload
    def __getitem__(self, item: slice) -> JournalView: ...

    def __getitem__(self, item: int | slice) -> Entry | JournalView:
        with self._lock:
            self._check_open()
            if isinstance(item, slice):
                indexes = range(self._first_index, self._last_index + 1)[item]
                return JournalView(self._read_for_view, indexes, self._truncation_epoch)
            position = operator.index(item)
            length = self._length()
            if position < 0:
                position += length
            if not 0 <= position < length:
                raise IndexError(f"journal position {item} out of range for {length} entries")
            return self._read(self._first_index + position)

    def __len__(self) -> int:
        with self._lock:
            return self._length()

    def _destroy(self) -> None:
        self.close()

    def setRaftCommitIndex(self, raftCommitIndex: int) -> None:
        """Record the commit index, which onOneSecondTimer() or close() stores."""
        _check_u64("commit index", raftCommitIndex)
        with self._lock:
            if raftCommitIndex != self._meta.commit_index:
                self._meta = replace(self._meta, commit_index=raftCommitIndex)
                self._meta_dirty = True

    def getRaftCommitIndex(self) -> int:
        return self._meta.commit_index

    def setCurrentTerm(self, term: int, votedForNodeId: str | None) -> None:
        """Store the term and vote, durably before returning under the ``always`` policy.

        Raft requires this before any message that reflects them is sent.
        """
        _check_u64("term", term)
        if votedForNodeId is not None and not isinstance(votedForNodeId, str):
            raise InternalError(
                f"voted-for node id must be a str, got {type(votedForNodeId).__name__}"
            )
        with self._mutation():
            if term == self._meta.current_term and votedForNodeId == self._meta.voted_for:
                return
            self._store_meta(replace(self._meta, current_term=term, voted_for=votedForNodeId))

    def getCurrentTerm(self) -> int:
        return self._meta.current_term

    def getVotedForNodeId(self) -> str | None:
        return self._meta.voted_for

    def onOneSecondTimer(self) -> None:
        """Store the commit index if it changed. PySyncObj calls this once a second.

        After a storage failure this does nothing, so that the failure is
        not raised into every tick again. add() and sync() still raise it.
        """
        if self._failure is not None:
            return
        if self._space is not None and not self._space.has_room():
            # The commit index is only a hint for the next start-up, so it waits for space.
            return
        with self._mutation():
            if self._meta_dirty:
                self._store_meta(self._meta)

    def flush(self) -> None:
        self.sync()

    # Kaflow's additions.

    def sync(self) -> None:
        """Make every entry added so far durable, with one fdatasync for all of them.

        Does nothing when no entry was added since the last sync, and only
        clears the bookkeeping under the ``never`` policy.
        """
        with self._mutation():
            self._sync()

    def statistics(self) -> JournalStatistics:
        with self._lock:
            return JournalStatistics(
                entries=self._length(),
                first_index=self._first_index,
                last_index=self._last_index,
                segments=self._log.segment_count,
                size_bytes=self._log.size_bytes,
                unsynced_entries=self._unsynced_entries,
                data_fsyncs=self._log.data_fsyncs,
                directory_fsyncs=self._directory.directory_fsyncs,
                meta_writes=self._directory.meta_writes,
                cache_entries=len(self._cache),
                cache_bytes=self._cache.size_bytes,
                cache_hits=self._cache.hits,
                cache_misses=self._cache.misses,
                open_segment_files=self._log.open_files,
                torn_bytes_removed=self._torn_bytes,
                failed=self._failure is not None,
            )

    @property
    def path(self) -> Path:
        return self._directory.path

    def close(self) -> None:
        """Store pending state, sync, and release the files and the directory lock."""
        with self._lock:
            if self._closed:
                return
            try:
                if self._failure is None:
                    self._sync()
                    if self._meta_dirty:
                        self._store_meta(self._meta)
            finally:
                self._closed = True
                self._log.close()
                self._directory.close()
                logger.info(
                    "closed Raft journal path=%s last_index=%d",
                    self._directory.path,
                    self._last_index,
                )

    def __enter__(self) -> RaftJournal:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _read_for_view(self, index: int, epoch: int) -> Entry:
        """Read the entry with log ``index`` for a view taken at truncation ``epoch``."""
        with self._lock:
            self._check_open()
            if epoch != self._truncation_epoch:
                raise InternalError(
                    f"journal view is stale: entries were truncated after it was taken, "
                    f"so entry {index} may have changed. Take a new slice",
                    index=index,
                )
            if not self._first_index <= index <= self._last_index:
                raise InternalError(
                    f"journal view refers to entry {index}, which is no longer in the journal "
                    f"(entries {self._first_index}..{self._last_index}). Take a new slice",
                    index=index,
                )
            return self._read(index)

    # Internals. The caller has acquired self._lock.

    @contextmanager
    def _mutation(self) -> Iterator[None]:
        """Hold the lock for a write and stop accepting writes after a storage failure."""
        with self._lock:
            self._check_open()
            if self._failure is not None:
                raise StorageError(
                    f"Raft journal {self._directory.path} rejects writes after an earlier "
                    f"failure ({self._failure.message}). Restart the node to reopen it",
                    path=str(self._directory.path),
                )
            try:
                yield
            except StorageError as exc:
                self._failure = exc
                logger.error(
                    "Raft journal write failed, rejecting further writes path=%s error=%s",
                    self._directory.path,
                    exc.message,
                )
                raise

    def _check_open(self) -> None:
        if self._closed:
            raise InternalError(f"Raft journal {self._directory.path} is closed")

    def _length(self) -> int:
        return self._last_index - self._first_index + 1

    def _start_log_at(self, index: int) -> None:
        """Make ``index`` the first index of an empty journal."""
        if index != self._meta.log_start_index:
            # The log start index must be durable before records below the
            # old one exist, or the next start-up would drop them as compacted.
            self._store_meta(replace(self._meta, log_start_index=index))
        self._first_index = index
        self._last_index = index - 1

    def _append_record(self, command: bytes, idx: int, term: int) -> None:
        segments = self._log.segment_count
        try:
            self._log.append(command, idx, term)
        except StorageError as exc:
            # A failed record write is cut back, so ENOSPC there leaves the journal
            # intact. A failure while a segment was created or sealed is not retried.
            if not is_no_space(exc) or self._log.segment_count != segments:
                raise
            free = self._space.free_bytes() if self._space is not None else 0
            raise DiskFullError(
                f"the disk of Raft journal {self._directory.path} is full ({exc.message}); "
                "free space on that filesystem. The entry is accepted when the leader sends "
                "it again",
                path=str(self._directory.path),
                free_bytes=free,
                reserve_bytes=self._space.reserve_bytes if self._space is not None else 0,
            ) from exc

    def _sync(self) -> None:
        self._log.sync()
        self._unsynced_entries = 0

    def _store_meta(self, meta: JournalMeta) -> None:
        # Syncing the records first keeps the stored commit index within the
        # records that are durable.
        self._sync()
        self._directory.store_meta(meta)
        self._meta = meta
        self._meta_dirty = False

    def _read(self, index: int) -> Entry:
        if index == self._first_index and self._head is not None:
            return self._head
        entry = self._cache.get(index)
        if entry is None:
            entry = self._log.read(index)
            self._cache.put(index, entry)
        if index == self._first_index:
            self._head = entry
        return entry

    def _clear(self) -> None:
        removed = self._length()
        if removed == 0:
            return
        new_start = self._last_index + 1
        self._store_meta(replace(self._meta, log_start_index=new_start))
        self._log.remove_all()
        self._first_index = new_start
        self._last_index = new_start - 1
        self._forget_entries()
        logger.info(
            "cleared Raft journal path=%s removed_entries=%d log_start_index=%d",
            self._directory.path,
            removed,
            new_start,
        )

    def _truncate(self, cut_index: int) -> None:
        """Remove the entries from ``cut_index`` on, durably under the ``always`` policy."""
        removed_entries = self._last_index - cut_index + 1
        removed_bytes = self._log.truncate_from(cut_index)
        self._last_index = cut_index - 1
        self._forget_entries()
        self._unsynced_entries = 0
        logger.info(
            "truncated Raft journal path=%s from_index=%d removed_entries=%d removed_bytes=%d",
            self._directory.path,
            cut_index,
            removed_entries,
            removed_bytes,
        )

    def _compact(self, new_first_index: int) -> None:
        self._store_meta(replace(self._meta, log_start_index=new_first_index))
        self._first_index = new_first_index
        self._head = None
        self._cache.discard_below(new_first_index)
        removed_segments = self._log.remove_below(new_first_index)
        logger.info(
            "compacted Raft journal path=%s log_start_index=%d removed_segments=%d",
            self._directory.path,
            new_first_index,
            removed_segments,
        )

    def _forget_entries(self) -> None:
        """Drop cached entries after a truncation, because entries at those indexes may change."""
        self._truncation_epoch += 1
        self._cache.clear()
        self._head = None


def _check_setting(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidConfigError(
            f"journal setting {name}={value!r} is invalid: it must be an integer of at "
            f"least {minimum}",
            name=name,
            value=value,
            min=minimum,
        )


def _check_u64(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_U64:
        raise InternalError(
            f"Raft {name} {value!r} is invalid: it must be an integer in 0..{MAX_U64}",
            value=value,
        )
