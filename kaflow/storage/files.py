"""A bounded cache of open file descriptors shared by every partition log.

A node may hold thousands of segment and index files, far more than the
process's descriptor limit. Logs therefore never keep descriptors of their
own: each read or write leases one from :class:`FileCache`, which opens it on
demand and closes the least recently used idle descriptor when the cache is
full. A leased descriptor is never closed under its user. When every cached
descriptor is leased, a new lease waits for one to be released.

Callers must hold at most one lease per thread at a time, because a thread
that waited for a second descriptor while holding the first could wait
forever.

NOTE: directory listings and the removal of a partition directory
(``shutil.rmtree``) open descriptors outside the cache while they run.
Reads and writes use ``os.pread`` and ``os.pwrite`` with explicit positions,
so threads sharing a descriptor never race on a file position.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from kaflow.errors import InvalidConfigError, StorageError

__all__ = ["DELETED_SUFFIX", "FileCache", "remove_log_directory", "write_file_atomically"]

logger = logging.getLogger(__name__)

# Suffix of a partition directory that is being removed.
DELETED_SUFFIX = ".deleted"

_READ_FLAGS = os.O_RDONLY | os.O_CLOEXEC
_WRITE_FLAGS = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC


@dataclass(slots=True)
class _Entry:
    path: Path
    writable: bool
    fd: int
    leases: int = 0
    # Set by evict() while leased: close on the last release instead of reusing.
    doomed: bool = False


class FileCache:
    """An LRU cache of at most ``max_open`` open file descriptors."""

    def __init__(self, max_open: int = 256) -> None:
        if max_open < 1:
            raise InvalidConfigError(
                f"max open files is {max_open}; set it to 1 or more", max_open_files=max_open
            )
        self._max_open = max_open
        self._condition = threading.Condition(threading.Lock())
        # Keyed by (path, writable), least recently used first.
        self._entries: OrderedDict[tuple[Path, bool], _Entry] = OrderedDict()
        # Open descriptors, including doomed ones still leased.
        self._open_count = 0
        self._hits = 0
        self._misses = 0
        self._evictions = 0
        self._waits = 0
        self._closed = False

    @property
    def max_open(self) -> int:
        return self._max_open

    @contextmanager
    def lease(self, path: Path, *, writable: bool = False) -> Iterator[int]:
        """Lend a descriptor for ``path`` for the duration of the ``with`` block.

        ``writable=True`` opens the file read-write and creates it if it is
        missing. A read lease reuses a cached writable descriptor for the same
        path. Opening a missing file for reading raises FileNotFoundError.
        """
        entry = self._acquire(path, writable)
        try:
            yield entry.fd
        finally:
            self._release(entry)

    def _acquire(self, path: Path, writable: bool) -> _Entry:
        with self._condition:
            while True:
                if self._closed:
                    raise StorageError(f"cannot open {path}: the file cache is closed")
                entry = self._find(path, writable)
                if entry is not None:
                    self._hits += 1
                    entry.leases += 1
                    return entry
                if self._open_count < self._max_open or self._close_idle_entry():
                    break
                self._waits += 1
                self._condition.wait()

            self._misses += 1
            fd = os.open(path, _WRITE_FLAGS if writable else _READ_FLAGS, 0o644)
            entry = _Entry(path=path, writable=writable, fd=fd, leases=1)
            self._entries[(path, writable)] = entry
            self._open_count += 1
            return entry

    def _find(self, path: Path, writable: bool) -> _Entry | None:
        keys = [(path, True)] if writable else [(path, False), (path, True)]
        for key in keys:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                return entry
        return None

    def _close_idle_entry(self) -> bool:
        """Close the least recently used unleased descriptor; False if all are leased."""
        for key, entry in self._entries.items():
            if entry.leases == 0:
                del self._entries[key]
                self._close(entry)
                self._evictions += 1
                return True
        return False

    def _release(self, entry: _Entry) -> None:
        with self._condition:
            entry.leases -= 1
            if entry.leases == 0 and entry.doomed:
                self._close(entry)
            self._condition.notify()

    def _close(self, entry: _Entry) -> None:
        self._open_count -= 1
        try:
            os.close(entry.fd)
        except OSError as exc:
            logger.warning("failed to close file path=%s error=%s", entry.path, exc)

    def fsync(self, path: Path) -> None:
        """Fsync a file or directory through a read lease.

        Fsyncing a directory makes file creations, renames and deletions in
        it durable.
        """
        with self.lease(path) as fd:
            os.fsync(fd)

    def evict(self, path: Path) -> None:
        """Close every descriptor for ``path``; leased ones close on release.

        Call this after deleting or renaming a file, so the cache neither
        keeps its disk space allocated nor hands out its old descriptor.
        """
        with self._condition:
            for writable in (False, True):
                self._evict_key((path, writable))

    def evict_under(self, directory: Path) -> None:
        """Close every descriptor for a file inside ``directory``."""
        with self._condition:
            for key in [key for key in self._entries if key[0].parent == directory]:
                self._evict_key(key)

    def _evict_key(self, key: tuple[Path, bool]) -> None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        if entry.leases == 0:
            self._close(entry)
        else:
            entry.doomed = True
        self._condition.notify_all()

    def close_all(self) -> None:
        """Close every idle descriptor and reject new leases.

        Descriptors still leased close when they are released.
        """
        with self._condition:
            self._closed = True
            for key in list(self._entries):
                self._evict_key(key)
            self._condition.notify_all()

    def statistics(self) -> dict[str, int]:
        """Return a snapshot of the cache's counters."""
        with self._condition:
            return {
                "open_files": self._open_count,
                "max_open": self._max_open,
                "leased": sum(1 for entry in self._entries.values() if entry.leases > 0),
                "hits": self._hits,
                "misses": self._misses,
                "evictions": self._evictions,
                "waits": self._waits,
            }


def write_file_atomically(files: FileCache, path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old or the new content.

    The data goes to ``<path>.tmp``, which is fsynced and renamed over
    ``path``; then the directory is fsynced so the rename itself is durable.
    """
    temporary = path.with_name(path.name + ".tmp")
    with files.lease(temporary, writable=True) as fd:
        os.ftruncate(fd, 0)
        view = memoryview(data)
        position = 0
        while position < len(view):
            position += os.pwrite(fd, view[position:], position)
        os.fsync(fd)
    files.evict(temporary)
    os.replace(temporary, path)
    # A cached descriptor still points at the replaced file.
    files.evict(path)
    files.fsync(path.parent)


def remove_log_directory(directory: Path, files: FileCache) -> None:
    """Remove a partition directory so that a crash never leaves a partial log behind.

    The directory is first renamed to ``<name>.<random>.deleted`` and the
    rename is fsynced, then the renamed tree is removed. A start after a
    crash finds either the whole log or a ``*.deleted`` name to finish off.
    """
    files.evict_under(directory)
    files.evict(directory)
    doomed = directory.with_name(f"{directory.name}.{uuid.uuid4().hex[:12]}{DELETED_SUFFIX}")
    directory.rename(doomed)
    files.fsync(directory.parent)
    shutil.rmtree(doomed)
