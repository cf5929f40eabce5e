"""The Raft journal's directory: its lock, its meta file and directory fsync.

The meta file contains the current term, the vote, the commit index and the log
start index (layout in :mod:`kaflow.replication.journal_format`). It is
replaced as a whole: the new contents go to a temporary file, which is
fsynced, renamed over the old file, and then the directory is fsynced. A
crash at any point leaves either the old or the new meta file.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
from pathlib import Path

from kaflow.errors import StorageError
from kaflow.replication.journal_format import (
    LOCK_FILE_NAME,
    META_FILE_NAME,
    META_TEMP_FILE_NAME,
    JournalMeta,
    decode_meta,
    encode_meta,
)

__all__ = ["JournalDirectory"]

logger = logging.getLogger(__name__)


class JournalDirectory:
    """An open, locked journal directory.

    ``durable`` selects whether writes are fsynced (the ``always`` fsync
    policy) or left to the kernel (``never``).
    """

    def __init__(self, path: Path, *, durable: bool) -> None:
        self.path = path
        self.durable = durable
        self.meta_path = path / META_FILE_NAME
        self._temp_path = path / META_TEMP_FILE_NAME
        # Counters reported by the journal's statistics().
        self.directory_fsyncs = 0
        self.meta_writes = 0

        self._create_if_missing()
        self._lock_fd = self._lock()
        try:
            self._dir_fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            os.close(self._lock_fd)
            raise self._error("open", path, exc) from exc

    def _create_if_missing(self) -> None:
        if self.path.is_dir():
            return
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            if self.durable:
                parent_fd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
                try:
                    os.fsync(parent_fd)
                finally:
                    os.close(parent_fd)
        except OSError as exc:
            raise self._error("create", self.path, exc) from exc

    def _lock(self) -> int:
        lock_path = self.path / LOCK_FILE_NAME
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise self._error("open", lock_path, exc) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise StorageError(
                    f"Raft journal directory {self.path} is in use: another process has "
                    f"locked {lock_path}. Stop the other node or process that uses it",
                    path=str(self.path),
                ) from exc
            raise self._error("lock", lock_path, exc) from exc
        return fd

    def fsync(self) -> None:
        """Make file creations, renames and removals in the directory durable."""
        if not self.durable:
            return
        try:
            os.fsync(self._dir_fd)
        except OSError as exc:
            raise self._error("fsync", self.path, exc) from exc
        self.directory_fsyncs += 1

    def load_meta(self) -> JournalMeta | None:
        """Read the meta file, or return None when there is none yet.

        A temporary file left by a store that a crash interrupted is removed.
        The rename never happened, so the meta file still contains the state
        from before that store.
        """
        if self._temp_path.exists():
            logger.info("removing meta file left by an interrupted store path=%s", self._temp_path)
            try:
                self._temp_path.unlink()
            except OSError as exc:
                raise self._error("remove", self._temp_path, exc) from exc

        try:
            data = self.meta_path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self._error("read", self.meta_path, exc) from exc

        try:
            return decode_meta(data)
        except ValueError as exc:
            raise StorageError(
                f"Raft journal meta file {self.meta_path} is damaged: {exc}. It contains "
                "the current term and vote, which Raft needs to stay safe. Restore this "
                "node's Raft directory from a healthy replica or remove it so the node "
                "resyncs from the leader",
                path=str(self.meta_path),
                reason=str(exc),
            ) from exc

    def store_meta(self, meta: JournalMeta) -> None:
        """Replace the meta file, which is on stable storage on return when ``durable``."""
        data = encode_meta(meta)
        try:
            fd = os.open(
                self._temp_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644
            )
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                if self.durable:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(self._temp_path, self.meta_path)
        except OSError as exc:
            raise self._error("write", self.meta_path, exc) from exc
        self.meta_writes += 1
        self.fsync()

    def remove(self, path: Path) -> None:
        """Remove a file of this directory. The removal is durable after the next fsync()."""
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise self._error("remove", path, exc) from exc

    def close(self) -> None:
        os.close(self._dir_fd)
        # Closing the descriptor releases the flock.
        os.close(self._lock_fd)

    @staticmethod
    def _error(action: str, path: Path, exc: OSError) -> StorageError:
        return StorageError(
            f"failed to {action} {path}: {exc.strerror or exc}",
            path=str(path),
            errno=exc.errno,
        )
