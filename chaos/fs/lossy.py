"""A FUSE pass-through filesystem that loses what was not fsynced when the power is cut.

The mount passes every operation through to ``<backing>/live`` and reports
fsync and directory fsync calls to :class:`~chaos.fs.durability.DurableTree`,
which keeps a copy of what they made durable. :func:`~chaos.fs.durability.restore`
later replaces the live tree with that copy. See :mod:`chaos.fs.durability`
for what survives.

Run one mount in the foreground with::

    python -m chaos.fs.lossy BACKING MOUNTPOINT

The process serves until the mountpoint is unmounted (``fusermount3 -u``).
The mount does not use the writeback cache, so the kernel sends every write
to this process at once. After SIGKILL of a program, all it wrote is in the
live tree, and only the durable copy decides what a power cut keeps.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import threading
from pathlib import Path
from typing import Any

import mfusepy

from chaos.fs.durability import DurableTree

__all__ = ["LossyOperations", "main", "serve"]

logger = logging.getLogger(__name__)

_SYNC_FLAGS = os.O_SYNC | os.O_DSYNC
_STAT_FIELDS = ("st_mode", "st_nlink", "st_uid", "st_gid", "st_size", "st_ino", "st_blocks")


class LossyOperations(mfusepy.Operations):  # type: ignore[misc]
    """The pass-through operations; file handles are file descriptors in the live tree."""

    use_ns = True

    def __init__(self, tree: DurableTree) -> None:
        self.tree = tree
        self.live = tree.live
        self._lock = threading.Lock()
        # fd -> (inode number, synced after every write)
        self._handles: dict[int, tuple[int, bool]] = {}

    def _path(self, path: str | None) -> Path:
        if path is None:
            raise OSError(errno.EBADF, "operation on an unlinked file needs a file handle")
        return self.live / path.lstrip("/")

    # Attributes and directories.

    def getattr(self, path: str | None, fh: Any = None) -> dict[str, Any]:
        stat = os.fstat(fh.fh) if fh is not None else os.lstat(self._path(path))
        attrs = {name: getattr(stat, name) for name in _STAT_FIELDS}
        attrs["st_atime"] = stat.st_atime_ns
        attrs["st_mtime"] = stat.st_mtime_ns
        attrs["st_ctime"] = stat.st_ctime_ns
        return attrs

    def access(self, path: str, amode: int) -> int:
        if not os.access(self._path(path), amode):
            raise OSError(errno.EACCES, "access denied")
        return 0

    def readdir(self, path: str, fh: int) -> list[str]:
        return [".", "..", *os.listdir(self._path(path))]

    def mkdir(self, path: str, mode: int) -> int:
        os.mkdir(self._path(path), mode)
        return 0

    def rmdir(self, path: str) -> int:
        target = self._path(path)
        ino = os.lstat(target).st_ino
        os.rmdir(target)
        self.tree.forget(ino)
        return 0

    def unlink(self, path: str) -> int:
        target = self._path(path)
        stat = os.lstat(target)
        os.unlink(target)
        if stat.st_nlink <= 1:
            self.tree.forget(stat.st_ino)
        return 0

    def rename(self, old: str, new: str) -> int:
        source, target = self._path(old), self._path(new)
        try:
            replaced: os.stat_result | None = os.lstat(target)
        except FileNotFoundError:
            replaced = None
        source_ino = os.lstat(source).st_ino
        os.rename(source, target)
        if replaced is not None and replaced.st_ino != source_ino:
            self.tree.forget(replaced.st_ino)
        return 0

    def link(self, target: str, source: str) -> int:
        # Two names for one id would need reference counts in the durable model.
        raise OSError(errno.ENOTSUP, "hard links are not supported by the lossy filesystem")

    def chmod(self, path: str | None, mode: int) -> int:
        os.chmod(self._path(path), mode)
        return 0

    def chown(self, path: str | None, uid: int, gid: int) -> int:
        os.chown(self._path(path), uid, gid)
        return 0

    def utimens(self, path: str | None, times: tuple[int, int] | None = None) -> int:
        if times is None:
            os.utime(self._path(path))
        else:
            os.utime(self._path(path), ns=times)
        return 0

    def statfs(self, path: str) -> dict[str, int]:
        stat = os.statvfs(self.live)
        names = ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail")
        result = {name: getattr(stat, name) for name in names}
        result.update(f_files=stat.f_files, f_ffree=stat.f_ffree, f_namemax=stat.f_namemax)
        return result

    # Files.

    def create(self, path: str, mode: int, fi: Any = None) -> int:
        fi.fh = self._open(self._path(path), fi.flags | os.O_CREAT, mode)
        return 0

    def open(self, path: str, fi: Any) -> int:
        fi.fh = self._open(self._path(path), fi.flags, 0)
        return 0

    def _open(self, path: Path, flags: int, mode: int) -> int:
        # The backing descriptor is always read-write so fsync can copy the data, and
        # never O_APPEND: the kernel already passes the end-of-file offset, and Linux
        # pwrite() on an O_APPEND descriptor ignores its offset.
        backing_flags = (flags & ~(os.O_ACCMODE | os.O_APPEND)) | os.O_RDWR | os.O_CLOEXEC
        fd = os.open(path, backing_flags, mode)
        with self._lock:
            self._handles[fd] = (os.fstat(fd).st_ino, bool(flags & _SYNC_FLAGS))
        return fd

    def read(self, path: str | None, size: int, offset: int, fh: Any) -> bytes:
        return os.pread(fh.fh, size, offset)

    def write(self, path: str | None, data: bytes, offset: int, fh: Any) -> int:
        written = os.pwrite(fh.fh, data, offset)
        ino, synchronous = self._handle(fh.fh)
        self.tree.note_write(ino, offset)
        if synchronous:
            self.tree.sync_file(fh.fh)
        return written

    def truncate(self, path: str | None, length: int, fh: Any = None) -> int:
        if fh is not None:
            os.ftruncate(fh.fh, length)
            ino = self._handle(fh.fh)[0]
        else:
            target = self._path(path)
            os.truncate(target, length)
            ino = os.lstat(target).st_ino
        self.tree.note_write(ino, length)
        return 0

    def fallocate(self, path: str | None, mode: int, offset: int, size: int, fh: Any) -> int:
        if mode != 0:
            raise OSError(errno.EOPNOTSUPP, "only plain fallocate (mode 0) is supported")
        os.posix_fallocate(fh.fh, offset, size)
        self.tree.note_write(self._handle(fh.fh)[0], offset)
        return 0

    def flush(self, path: str | None, fh: Any) -> int:
        return 0

    def release(self, path: str | None, fh: Any) -> int:
        with self._lock:
            self._handles.pop(fh.fh, None)
        os.close(fh.fh)
        return 0

    def fsync(self, path: str | None, datasync: int, fh: Any) -> int:
        self.tree.sync_file(fh.fh)
        return 0

    def fsyncdir(self, path: str, datasync: int, fh: int) -> int:
        self.tree.sync_directory(self._path(path))
        return 0

    def destroy(self, path: str) -> None:
        self.tree.store_inodes()
        logger.info(
            "lossy filesystem unmounted live=%s file_syncs=%d directory_syncs=%d",
            self.live,
            self.tree.file_syncs,
            self.tree.directory_syncs,
        )

    def _handle(self, fd: int) -> tuple[int, bool]:
        with self._lock:
            handle = self._handles.get(fd)
        if handle is None:
            raise OSError(errno.EBADF, f"file handle {fd} is not open")
        return handle


def serve(backing: Path, mountpoint: Path) -> None:
    """Mount the lossy filesystem of ``backing`` on ``mountpoint`` and serve until unmounted."""
    tree = DurableTree(backing)
    logger.info("mounting lossy filesystem backing=%s mountpoint=%s", backing, mountpoint)
    mfusepy.FUSE(
        LossyOperations(tree),
        str(mountpoint),
        foreground=True,
        raw_fi=True,
        # Unlink removes the live file at once instead of renaming open files to
        # .fuse_hidden*, which would otherwise show up in the durable tree.
        hard_remove=True,
        # Chaos nodes run with their own group id (the network faults match on it),
        # and without allow_other the kernel denies every process but the mounter's.
        allow_other=True,
        fsname="kaflow-lossy",
        subtype="kaflow-lossy",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m chaos.fs.lossy",
        description="Serve a FUSE mount that keeps only fsynced data across a power cut.",
    )
    parser.add_argument("backing", type=Path, help="backing directory made by format_backing()")
    parser.add_argument("mountpoint", type=Path, help="empty directory to mount on")
    parser.add_argument(
        "--log-level", default="WARNING", help="logging level of the daemon (default WARNING)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    serve(args.backing, args.mountpoint)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
