"""Data directory providers on the chaos filesystems: lossy FUSE mounts and small tmpfs mounts."""

from __future__ import annotations

import logging
from pathlib import Path

from chaos.api import ChaosSetupError, ChaosUnsupportedError, DataDirProvider
from chaos.fs.mounts import LossyMount, TmpfsMount

__all__ = ["LossyDataDirs", "SmallDiskDataDirs"]

logger = logging.getLogger(__name__)


class LossyDataDirs(DataDirProvider):
    """Each node's data directory is a lossy FUSE mount under ``<root>/<node>``.

    ``power_cut`` discards what the node did not fsync; see
    :mod:`chaos.fs.durability` for the rules.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.mounts: dict[str, LossyMount] = {}

    def prepare(self, node_name: str) -> Path:
        mount = self.mounts.get(node_name)
        if mount is None:
            base = self.root / node_name
            base.mkdir(parents=True, exist_ok=True)
            mount = LossyMount(base / "backing", base / "data", base / "fuse.log")
            self.mounts[node_name] = mount
        if not mount.mounted:
            mount.mount()
        return mount.mountpoint

    def power_cut(self, node_name: str) -> None:
        mount = self.mounts.get(node_name)
        if mount is None:
            raise ChaosSetupError(
                f"node {node_name} has no lossy mount to cut power to; prepare() it first",
                node=node_name,
            )
        counts = mount.power_cut()
        logger.info("power cut node=%s kept=%s", node_name, counts)

    def cleanup(self) -> None:
        errors: list[str] = []
        for name, mount in self.mounts.items():
            try:
                mount.unmount()
            except (ChaosSetupError, OSError) as exc:
                errors.append(f"{name}: {exc}")
        if errors:
            raise ChaosSetupError("failed to unmount lossy filesystems: " + "; ".join(errors))


class SmallDiskDataDirs(DataDirProvider):
    """Each node's data directory is on its own tmpfs of ``size_bytes``.

    ``set_full(node, True)`` fills that node's tmpfs with a filler file next
    to the data directory; ``set_full(node, False)`` removes it. A tmpfs
    keeps its pages in memory, so only a filled disk costs ``size_bytes`` of
    RAM.
    """

    def __init__(self, root: Path, size_bytes: int = 64 * 1024 * 1024) -> None:
        self.root = root
        self.size_bytes = size_bytes
        self.mounts: dict[str, TmpfsMount] = {}

    def prepare(self, node_name: str) -> Path:
        mount = self.mounts.get(node_name)
        if mount is None:
            mount = TmpfsMount(self.root / node_name / "disk", self.size_bytes)
            self.mounts[node_name] = mount
        mount.mount()
        return mount.data_dir

    def set_full(self, node_name: str, full: bool) -> None:
        mount = self.mounts.get(node_name)
        if mount is None:
            raise ChaosUnsupportedError(
                f"node {node_name} has no small disk to fill; prepare() it first",
                node=node_name,
            )
        if full:
            mount.fill()
        else:
            mount.drain()

    def free_bytes(self, node_name: str) -> int:
        """Return the bytes free on the disk of ``node_name``."""
        return self.mounts[node_name].free_bytes()

    def cleanup(self) -> None:
        errors: list[str] = []
        for name, mount in self.mounts.items():
            try:
                mount.unmount()
            except (ChaosSetupError, OSError) as exc:
                errors.append(f"{name}: {exc}")
        if errors:
            raise ChaosSetupError("failed to unmount tmpfs disks: " + "; ".join(errors))
