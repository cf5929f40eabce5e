"""Mounting and unmounting the chaos filesystems: lossy FUSE mounts and small tmpfs mounts.

Both need root (``mount(2)``, ``/dev/fuse``) and the tools that
``chaos/install-deps.sh`` installs. Every mount made here is unmounted by
``unmount()``, which the data directory providers call in their cleanup even
when a run fails.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from chaos.api import ChaosSetupError
from chaos.fs.durability import format_backing, restore

__all__ = ["LossyMount", "TmpfsMount", "is_mounted", "unmount_path"]

logger = logging.getLogger(__name__)

MOUNT_TIMEOUT_S = 15.0
_POLL_S = 0.05


def is_mounted(path: Path) -> bool:
    """True if ``path`` is a mountpoint in this mount namespace (read from mountinfo)."""
    target = os.path.realpath(path)
    with open("/proc/self/mountinfo", encoding="utf-8") as mountinfo:
        for line in mountinfo:
            fields = line.split()
            # Field 5 is the mountpoint, with spaces and the like escaped as octal.
            if len(fields) > 4 and _unescape(fields[4]) == target:
                return True
    return False


def _unescape(field: str) -> str:
    return field.encode("utf-8").decode("unicode_escape").encode("latin-1").decode("utf-8")


def unmount_path(path: Path) -> None:
    """Unmount ``path`` if something is mounted there, lazily if it is busy."""
    if not is_mounted(path):
        return
    result = subprocess.run(["umount", str(path)], capture_output=True, text=True, check=False)
    if result.returncode != 0 and is_mounted(path):
        logger.warning(
            "unmount failed, detaching lazily path=%s error=%s", path, result.stderr.strip()
        )
        subprocess.run(["umount", "-l", str(path)], capture_output=True, text=True, check=False)
    if is_mounted(path):
        raise ChaosSetupError(f"failed to unmount {path}; unmount it by hand with umount -l")


def _wait_for(predicate_name: str, check: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(_POLL_S)
    logger.warning("timed out waiting for %s", predicate_name)
    return False


class LossyMount:
    """One lossy FUSE mount: a daemon process serving ``mountpoint`` from ``backing``."""

    def __init__(self, backing: Path, mountpoint: Path, log_path: Path | None = None) -> None:
        self.backing = backing
        self.mountpoint = mountpoint
        self.log_path = log_path or backing.with_name(backing.name + ".fuse.log")
        self._process: subprocess.Popen[bytes] | None = None
        self.power_cuts = 0

    @property
    def mounted(self) -> bool:
        return self._process is not None and is_mounted(self.mountpoint)

    def mount(self) -> None:
        """Format the backing directory on first use, then start the daemon and wait for it."""
        if self._process is not None:
            return
        if not (self.backing / "durable").exists():
            format_backing(self.backing)
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        _check_fuse_available()

        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "chaos.fs.lossy",
                    str(self.backing),
                    str(self.mountpoint),
                    "--log-level",
                    "INFO",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        process = self._process
        if not _wait_for(
            f"lossy mount on {self.mountpoint}",
            lambda: process.poll() is not None or is_mounted(self.mountpoint),
            MOUNT_TIMEOUT_S,
        ) or not is_mounted(self.mountpoint):
            self._stop_process()
            raise ChaosSetupError(
                f"the lossy FUSE filesystem did not mount on {self.mountpoint}; "
                f"see {self.log_path}, and run chaos/install-deps.sh if fuse3 is missing",
                mountpoint=str(self.mountpoint),
            )
        logger.info("lossy filesystem mounted mountpoint=%s pid=%d", self.mountpoint, process.pid)

    def unmount(self) -> None:
        """Unmount and wait for the daemon to exit; safe to call when not mounted."""
        try:
            unmount_path(self.mountpoint)
        finally:
            self._stop_process()

    def power_cut(self) -> dict[str, int]:
        """Unmount, drop everything not made durable, and mount again.

        Whatever has the mount open must be gone already (the node is killed
        first), or the unmount falls back to a lazy detach.
        """
        self.unmount()
        counts = restore(self.backing)
        self.power_cuts += 1
        self.mount()
        return counts

    def _stop_process(self) -> None:
        process = self._process
        self._process = None
        if process is None:
            return
        try:
            process.wait(timeout=MOUNT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            logger.warning("lossy filesystem daemon did not exit, killing pid=%d", process.pid)
            process.kill()
            process.wait()


def _check_fuse_available() -> None:
    if not os.path.exists("/dev/fuse"):
        raise ChaosSetupError(
            "/dev/fuse is missing: the lossy filesystem needs FUSE; load the fuse module or "
            "run in a container with --device /dev/fuse"
        )
    try:
        import mfusepy  # noqa: F401
    except (ImportError, OSError) as exc:
        raise ChaosSetupError(
            f"the mfusepy package or libfuse3 is missing ({exc}); run chaos/install-deps.sh"
        ) from exc


class TmpfsMount:
    """A tmpfs of ``size_bytes`` on ``mountpoint`` that a filler file can make full."""

    FILLER_NAME = ".chaos-filler"

    def __init__(self, mountpoint: Path, size_bytes: int) -> None:
        self.mountpoint = mountpoint
        self.size_bytes = size_bytes
        # The filler sits next to the data, on the same filesystem, but not inside
        # the data directory the node scans.
        self.data_dir = mountpoint / "data"
        self.filler = mountpoint / self.FILLER_NAME

    def mount(self) -> None:
        if is_mounted(self.mountpoint):
            return
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            [
                "mount",
                "-t",
                "tmpfs",
                "-o",
                f"size={self.size_bytes},mode=0755",
                "kaflow-chaos-tmpfs",
                str(self.mountpoint),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise ChaosSetupError(
                f"failed to mount a {self.size_bytes}-byte tmpfs on {self.mountpoint}: "
                f"{result.stderr.strip()}; the disk-full scenario must run as root",
                mountpoint=str(self.mountpoint),
            )
        self.data_dir.mkdir(exist_ok=True)
        logger.info("tmpfs mounted mountpoint=%s size_bytes=%d", self.mountpoint, self.size_bytes)

    def free_bytes(self) -> int:
        stat = os.statvfs(self.mountpoint)
        return stat.f_bavail * stat.f_frsize

    def fill(self, leave_bytes: int = 0) -> int:
        """Write a filler file until at most ``leave_bytes`` stay free; return its size."""
        chunk = b"\0" * (1024 * 1024)
        written = 0
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            while (room := self.free_bytes() - leave_bytes) > 0:
                try:
                    written += os.write(fd, chunk[: min(len(chunk), room)])
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
        finally:
            os.close(fd)
        logger.info(
            "filled tmpfs mountpoint=%s filler_bytes=%d free_bytes=%d",
            self.mountpoint,
            written,
            self.free_bytes(),
        )
        return written

    def drain(self) -> None:
        """Remove the filler file, giving its space back."""
        self.filler.unlink(missing_ok=True)
        logger.info("freed tmpfs mountpoint=%s free_bytes=%d", self.mountpoint, self.free_bytes())

    def unmount(self) -> None:
        unmount_path(self.mountpoint)


def remove_tree(path: Path) -> None:
    """Remove ``path`` after checking that nothing is mounted inside it."""
    if is_mounted(path):
        raise ChaosSetupError(f"refusing to remove {path}: something is still mounted there")
    shutil.rmtree(path, ignore_errors=True)
