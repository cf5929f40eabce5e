"""Free-space checks on the data directory, so a full disk rejects writes instead of failing them.

A write that fails half way with ENOSPC leaves a replica that cannot apply
the Raft log, so the node keeps a reserve. The frontend rejects produce
requests once the free space falls below it. The Raft journal rejects new
entries below a smaller reserve, so entries it already stored can still be
applied to the partition logs.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
from pathlib import Path

from kaflow.errors import DiskFullError

__all__ = ["SpaceGuard", "is_no_space"]

logger = logging.getLogger(__name__)

_NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def is_no_space(exc: BaseException) -> bool:
    """True if ``exc`` or an exception that caused it is an OSError for a full disk or quota."""
    current: BaseException | None = exc
    seen: set[int] = set()
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _NO_SPACE_ERRNOS:
            return True
        if getattr(current, "details", {}).get("errno") in _NO_SPACE_ERRNOS:
            return True
        current = current.__cause__
    return False


class SpaceGuard:
    """Compares the free space of the filesystem holding ``path`` with ``reserve_bytes``.

    The free space is what an unprivileged process may use (``f_bavail``),
    read with statvfs on every check: one system call, no caching. Logs a
    WARNING when the space first falls below the reserve and INFO when it is
    back.
    """

    def __init__(self, path: Path, reserve_bytes: int, *, purpose: str = "writes") -> None:
        if reserve_bytes < 0:
            raise ValueError(f"reserve_bytes must be >= 0, got {reserve_bytes}")
        self.path = path
        self.reserve_bytes = reserve_bytes
        self.purpose = purpose
        self._lock = threading.Lock()
        self._low = False
        self.rejections = 0

    def free_bytes(self) -> int:
        """Return the bytes available on the filesystem of ``path``."""
        stat = os.statvfs(self.path)
        return stat.f_bavail * stat.f_frsize

    def has_room(self, needed_bytes: int = 0) -> bool:
        """True if ``needed_bytes`` fit and leave the reserve free; always True with no reserve."""
        if self.reserve_bytes == 0:
            return True
        try:
            free = self.free_bytes()
        except OSError:
            # A missing or unreadable directory fails the write itself with a clearer error.
            return True
        room = free - needed_bytes >= self.reserve_bytes
        self._note(room, free)
        return room

    def check(self, needed_bytes: int = 0) -> None:
        """Raise DiskFullError unless ``needed_bytes`` fit and leave the reserve free."""
        if self.has_room(needed_bytes):
            return
        free = self.free_bytes()
        with self._lock:
            self.rejections += 1
        raise DiskFullError(
            f"the data directory {self.path} has {free} bytes free, less than the "
            f"{self.reserve_bytes}-byte reserve this node keeps for {self.purpose} "
            f"({needed_bytes} bytes requested); free space on that filesystem and retry",
            path=str(self.path),
            free_bytes=free,
            reserve_bytes=self.reserve_bytes,
            needed_bytes=needed_bytes,
        )

    def _note(self, room: bool, free: int) -> None:
        with self._lock:
            if room == (not self._low):
                return
            self._low = not room
        if room:
            logger.info(
                "disk space is above the reserve again path=%s free_bytes=%d reserve_bytes=%d",
                self.path,
                free,
                self.reserve_bytes,
            )
        else:
            logger.warning(
                "disk space is below the reserve, rejecting %s path=%s free_bytes=%d "
                "reserve_bytes=%d",
                self.purpose,
                self.path,
                free,
                self.reserve_bytes,
            )
