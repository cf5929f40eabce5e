"""PartitionLog: the on-disk log of one partition.

A partition directory contains segments named by their base offset (see
:mod:`kaflow.storage.segment`) and a log start offset checkpoint (see
:mod:`kaflow.storage.checkpoint`). Only the last segment, the active one,
is appended to.

Threads: one writer (the Raft apply thread) calls the mutating methods
while any number of threads read. ``_write_lock`` serializes the mutating
methods, so a second writer is safe but waits. Readers never take it: they
capture the :class:`~kaflow.storage.view.LogView` and retry when a
truncation or deletion raced with them, and a batch is written completely
before the segment state that covers it is published.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from kaflow.broker import StoredRecord
from kaflow.errors import InvalidOffsetError, InvalidRequestError, StorageError
from kaflow.storage.batch import (
    BatchHeader,
    decode_batch,
    iter_batches,
    read_batch_header,
    verify_batch,
    with_base_offset,
)
from kaflow.storage.checkpoint import (
    clamp_log_start,
    read_log_start_offset,
    write_log_start_offset,
)
from kaflow.storage.files import FileCache, remove_log_directory
from kaflow.storage.log_config import LogConfig
from kaflow.storage.reads import (
    find_offset_for_timestamp,
    out_of_range,
    read_batches,
    read_consistently,
)
from kaflow.storage.recovery import load_segments, recover_segment
from kaflow.storage.retention import retention_target
from kaflow.storage.scrub import Damage, check_batch_chain, find_damage
from kaflow.storage.segment import MAX_RELATIVE_OFFSET, Segment
from kaflow.storage.truncation import cut_position, state_cut_at
from kaflow.storage.view import LogView, PublishedView

__all__ = ["LogConfig", "PartitionLog"]

logger = logging.getLogger(__name__)

_INT64_MAX = 2**63 - 1


class PartitionLog:
    """The segments of one partition, with append, read, retention and truncation.

    Build instances with :meth:`open`.
    """

    def __init__(
        self,
        directory: Path,
        config: LogConfig,
        files: FileCache,
        segments: list[Segment],
        log_start_offset: int,
    ) -> None:
        self._directory = directory
        self._name = directory.name
        self._config = config
        self._files = files
        self._write_lock = threading.RLock()
        self._published = PublishedView(LogView(tuple(segments), log_start_offset, 0))
        # Files written since the last fsync, and whether directory entries changed.
        self._dirty: set[Path] = set()
        self._directory_dirty = False
        self._parent_dirty = False
        self._closed = False
        self._failing = False

    @classmethod
    def open(
        cls, directory: Path, config: LogConfig, files: FileCache, *, cut_damaged: bool = False
    ) -> PartitionLog:
        """Open the log in ``directory``, creating it if missing and recovering it if not.

        Raises CorruptLogError (a StorageError) when the directory has a gap
        in its offsets or a damaged closed segment; see
        :mod:`kaflow.storage.recovery` for what is repaired instead. With
        ``cut_damaged`` the log is cut before such damage instead, for a
        node that can copy the lost records from another member.
        """
        try:
            created = not directory.exists()
            directory.mkdir(parents=True, exist_ok=True)
            segments = load_segments(
                directory, files, config.index_interval_bytes, cut_damaged=cut_damaged
            )
            checkpoint = read_log_start_offset(files, directory)
            if not segments:
                segments = [Segment.create(directory, checkpoint or 0, files)]
        except OSError as exc:
            raise StorageError(
                f"failed to open partition log {directory}: {exc}", path=str(directory)
            ) from exc

        log = cls(directory, config, files, segments, 0)
        if created:
            log._dirty.update(segments[0].paths)
            log._directory_dirty = log._parent_dirty = True
        # Finishes a retention step that a crash cut short after the checkpoint was written.
        log._delete_segments_below(clamp_log_start(directory, checkpoint, segments))
        logger.debug(
            "opened partition log log=%s segments=%d log_start_offset=%d log_end_offset=%d",
            log._name,
            log.segment_count,
            log.log_start_offset,
            log.log_end_offset,
        )
        return log

    @property
    def directory(self) -> Path:
        return self._directory

    @property
    def config(self) -> LogConfig:
        return self._config

    @property
    def log_start_offset(self) -> int:
        """The first offset that can be read."""
        return self._published.get().log_start_offset

    @property
    def log_end_offset(self) -> int:
        """The offset the next appended record gets."""
        return self._published.get().active.state.next_offset

    @property
    def size_bytes(self) -> int:
        """Bytes of all segments, including records below the log start offset."""
        return sum(segment.state.size for segment in self._published.get().segments)

    @property
    def segment_count(self) -> int:
        return len(self._published.get().segments)

    # Writes.

    def append(self, batch: bytes) -> tuple[int, int]:
        """Append one encoded batch at the log end offset; return its (base, last) offsets.

        The batch may carry any base offset because the log patches in its
        own. It is CRC-checked first, so CorruptBatchError means nothing was
        written.
        """
        header = read_batch_header(batch)
        verify_batch(batch)
        with self._write_lock, self._write_errors("append to"):
            self._check_open()
            base_offset = self.log_end_offset
            if base_offset + header.last_offset_delta > _INT64_MAX:
                raise StorageError(
                    f"partition log {self._name} cannot store offsets past 2**63 - 1; "
                    f"the log end offset is {base_offset}",
                    log_end_offset=base_offset,
                )
            if header.base_offset != base_offset:
                batch = with_base_offset(batch, base_offset)
                header = replace(header, base_offset=base_offset)
            if self._should_roll(header):
                self._roll()

            active = self._published.get().active
            try:
                state = active.append(batch, header, self._config.index_interval_bytes)
            except OSError:
                self._undo_partial_append(active)
                raise
            self._published.publish_state(active, state)
            self._dirty.update(active.paths)
            return base_offset, header.last_offset

    def _undo_partial_append(self, active: Segment) -> None:
        """Cut the files back to the published state after a failed append."""
        try:
            active.truncate_files(active.state)
        except OSError as exc:
            # Recovery at the next start cuts off the partial batch instead.
            logger.warning(
                "failed to remove a partial append log=%s path=%s error=%s",
                self._name,
                active.log_path,
                exc,
            )

    def _should_roll(self, header: BatchHeader) -> bool:
        """Decide from the batch alone, never the clock, so every replica rolls alike."""
        active = self._published.get().active
        state = active.state
        if state.size == 0:
            return False
        if state.size + header.length > self._config.segment_bytes:
            return True
        if state.first_timestamp is not None and (
            header.first_timestamp >= state.first_timestamp + self._config.segment_ms
        ):
            return True
        return header.last_offset - active.base_offset > MAX_RELATIVE_OFFSET

    def _roll(self) -> None:
        view = self._published.get()
        old = view.active
        closed_state = old.close_for_roll()
        new = Segment.create(self._directory, old.state.next_offset, self._files)
        self._published.publish_state(old, closed_state)
        self._published.replace(replace(view, segments=(*view.segments, new)))
        self._dirty.update(old.paths)
        self._dirty.update(new.paths)
        self._directory_dirty = True
        logger.info(
            "rolled segment log=%s base_offset=%d previous_segment_bytes=%d",
            self._name,
            new.base_offset,
            closed_state.size,
        )

    def truncate_to(self, end_offset: int) -> None:
        """Remove every record at offset ``end_offset`` and above.

        ``end_offset`` must fall on a batch boundary. One inside a batch
        raises StorageError and changes nothing. At or past the log end this
        does nothing. Below the log start offset the whole log is emptied
        and restarts at ``end_offset``, which becomes the log start offset.
        Readers wait while a segment is cut, which rescans that segment.
        """
        if end_offset < 0:
            raise InvalidOffsetError(
                f"cannot truncate to negative offset {end_offset}", offset=end_offset
            )
        with self._write_lock, self._write_errors("truncate"):
            self._check_open()
            view = self._published.get()
            if end_offset >= view.active.state.next_offset:
                return
            if end_offset < view.log_start_offset:
                self._restart_at(end_offset)
                return

            kept = [s for s in view.segments if s.base_offset < end_offset] or [view.segments[0]]
            cut = cut_position(kept[-1], end_offset, self._name)
            self._cut(view, len(kept), end_offset, cut)

    def truncate_damaged(self, damage: Damage) -> bool:
        """Remove the damaged batch that :meth:`verify` found and every record after it.

        Unlike :meth:`truncate_to` this needs no readable batch header at the
        cut, because ``damage`` names the byte position. Returns False and
        changes nothing when the log no longer contains that position (it was
        truncated or its segment deleted since the verification), or when
        the damage lies below the log start offset.
        """
        with self._write_lock, self._write_errors("truncate"):
            self._check_open()
            view = self._published.get()
            if damage.offset < view.log_start_offset:
                return False
            bases = [segment.base_offset for segment in view.segments]
            if damage.segment_base_offset not in bases:
                return False
            kept = bases.index(damage.segment_base_offset) + 1
            if view.segments[kept - 1].state.size < damage.position:
                return False
            self._cut(view, kept, damage.offset, damage.position)
            return True

    def _cut(self, view: LogView, kept_count: int, end_offset: int, cut: int) -> None:
        """Keep the first ``kept_count`` segments, cutting the last of them at byte ``cut``."""
        kept = list(view.segments[:kept_count])
        removed = view.segments[kept_count:]
        target = kept[-1]

        with self._published.exclusive():
            self._published.replace(
                LogView(tuple(kept), view.log_start_offset, view.generation + 1)
            )
            for segment in reversed(removed):
                segment.delete_files()
                self._dirty.difference_update(segment.paths)
            target.truncate_files(state_cut_at(target, end_offset, cut))
            self._published.publish_state(
                target, recover_segment(target, self._config.index_interval_bytes)
            )
        self._dirty.update(target.paths)
        self._directory_dirty = self._directory_dirty or bool(removed)
        logger.info(
            "truncated partition log log=%s log_end_offset=%d deleted_segments=%d",
            self._name,
            end_offset,
            len(removed),
        )

    def _restart_at(self, offset: int) -> None:
        """Delete every segment and restart the empty log at ``offset``."""
        view = self._published.get()
        with self._published.exclusive():
            for segment in view.segments:
                segment.delete_files()
            self._dirty.clear()
            fresh = Segment.create(self._directory, offset, self._files)
            self._published.replace(LogView((fresh,), offset, view.generation + 1))
        write_log_start_offset(self._files, self._directory, offset)
        self._dirty.update(fresh.paths)
        self._directory_dirty = True
        logger.info(
            "emptied partition log log=%s log_start_offset=%d deleted_segments=%d",
            self._name,
            offset,
            len(view.segments),
        )

    # Retention.

    def retention_target(self, now_ms: int) -> int | None:
        """Return the offset the log start could advance to under retention, or None.

        See :func:`kaflow.storage.retention.retention_target` for the rule.
        The active segment is never a candidate.
        """
        view = self._published.get()
        return retention_target(view.segments, view.log_start_offset, self._config, now_ms)

    def advance_log_start(self, offset: int) -> None:
        """Move the log start offset forward to ``offset`` and delete segments below it.

        An offset at or below the current log start does nothing, and one
        past the log end raises OffsetOutOfRangeError. The new log start is
        checkpointed before any segment is deleted. When it reaches the log
        end, a new empty segment is rolled so the old active one can go too.
        """
        with self._write_lock, self._write_errors("advance the log start of"):
            self._check_open()
            view = self._published.get()
            end = view.active.state.next_offset
            if offset > end:
                raise out_of_range(self._name, offset, view.log_start_offset, end)
            if offset <= view.log_start_offset:
                return
            write_log_start_offset(self._files, self._directory, offset)
            if offset == end and view.active.state.size > 0:
                self._roll()
            deleted = self._delete_segments_below(offset)
            logger.info(
                "advanced log start offset log=%s log_start_offset=%d deleted_segments=%d",
                self._name,
                offset,
                deleted,
            )

    def _delete_segments_below(self, offset: int) -> int:
        """Publish ``offset`` as the log start and delete closed segments wholly below it."""
        view = self._published.get()
        doomed = [s for s in view.segments[:-1] if s.state.next_offset <= offset]
        self._published.replace(
            LogView(view.segments[len(doomed) :], offset, view.generation + bool(doomed))
        )
        # Readers that still hold the old view see the new generation and retry.
        for segment in doomed:
            segment.delete_files()
            self._dirty.difference_update(segment.paths)
        self._directory_dirty = self._directory_dirty or bool(doomed)
        return len(doomed)

    # Reads.

    def read(self, offset: int, max_bytes: int) -> bytes:
        """Return whole batches from the one containing ``offset``, up to ``max_bytes``.

        At least one batch is returned when one exists at or after
        ``offset``, however large. The first batch may start below
        ``offset``. At the log end the result is empty; below the log start
        or past the end raises OffsetOutOfRangeError.
        """
        self._check_open()
        return read_consistently(
            self._published,
            self._name,
            offset,
            lambda view: read_batches(view.segments, offset, max_bytes),
        )

    def read_records(self, offset: int, max_bytes: int, max_records: int) -> list[StoredRecord]:
        """Read like :meth:`read` and decode, dropping records below ``offset``.

        Returns at most ``max_records`` records. Raises CorruptBatchError
        when a stored batch fails its CRC check.
        """
        if max_records < 1:
            raise InvalidRequestError(
                f"max_records is {max_records}; request at least 1 record",
                max_records=max_records,
            )
        records: list[StoredRecord] = []
        data = self.read(offset, max_bytes)
        check_batch_chain(data, offset, self._name)
        for batch in iter_batches(data):
            for record in decode_batch(batch):
                if record.offset < offset:
                    continue
                records.append(record)
                if len(records) == max_records:
                    return records
        return records

    def verify(self) -> Damage | None:
        """Read every batch and return the first that fails its CRC-32C or offset chain.

        Runs without blocking the writer; see :func:`kaflow.storage.scrub.find_damage`.
        """
        self._check_open()
        return read_consistently(
            self._published,
            self._name,
            None,
            lambda view: find_damage(view.segments, view.log_start_offset),
        )

    def offset_for_timestamp(self, timestamp: int) -> tuple[int, int] | None:
        """Return (offset, timestamp) of the first record with a timestamp >= ``timestamp``.

        Records below the log start offset are not considered. Returns None
        when no record is that recent.
        """
        self._check_open()
        return read_consistently(
            self._published,
            self._name,
            None,
            lambda view: find_offset_for_timestamp(view.segments, view.log_start_offset, timestamp),
        )

    # Lifecycle.

    def update_config(self, config: LogConfig) -> None:
        """Use ``config`` from the next append and retention query on."""
        with self._write_lock:
            self._config = config

    def flush(self, fsync: bool) -> None:
        """Make the data written so far durable when ``fsync`` is True.

        Appends reach the operating system before :meth:`append` returns, so
        there is no buffer in this process and ``fsync=False`` returns at
        once. With ``fsync=True`` every file written since the last flush is
        fsynced, then the directory if files were created or deleted. After a
        failed fsync the data may be lost even if a later fsync succeeds, so
        treat StorageError from here as fatal.
        """
        if not fsync:
            return
        with self._write_lock, self._write_errors("fsync"):
            self._check_open()
            for path in sorted(self._dirty):
                if path.exists():
                    self._files.fsync(path)
            self._dirty.clear()
            if self._directory_dirty:
                self._files.fsync(self._directory)
                self._directory_dirty = False
            if self._parent_dirty:
                self._files.fsync(self._directory.parent)
                self._parent_dirty = False

    def close(self) -> None:
        """Release the log's file descriptors; later calls raise StorageError.

        Closing does not fsync, so call ``flush(fsync=True)`` first when needed.
        """
        with self._write_lock:
            self._closed = True
            self._files.evict_under(self._directory)
            self._files.evict(self._directory)

    def delete(self) -> None:
        """Close the log and remove its directory; see :func:`remove_log_directory`."""
        with self._write_lock, self._write_errors("delete"):
            self.close()
            remove_log_directory(self._directory, self._files)
            logger.info("deleted partition log log=%s", self._name)

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError(f"partition log {self._name} is closed", path=str(self._directory))

    @contextmanager
    def _write_errors(self, action: str) -> Iterator[None]:
        """Turn OSError into StorageError, logging the first failure of an episode."""
        try:
            yield
        except OSError as exc:
            if not self._failing:
                logger.warning(
                    "storage write failed log=%s action=%r error=%s", self._name, action, exc
                )
                self._failing = True
            raise StorageError(
                f"failed to {action} partition log {self._name}: {exc}",
                path=str(self._directory),
            ) from exc
        if self._failing:
            logger.info("storage writes succeed again log=%s", self._name)
            self._failing = False
