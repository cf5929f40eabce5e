"""The durability model of the lossy filesystem: what survives a power cut.

A lossy filesystem keeps its files in a backing directory::

    <backing>/live/              the current contents, which the FUSE mount passes through to
    <backing>/durable/data/<id>  the last fsynced contents of file <id>
    <backing>/durable/tree.json  the durable directory entries (format below)
    <backing>/inodes.json        live inode number -> id, written when the mount is down

Every file and directory gets an id when it is created, because the backing
filesystem may reuse an inode number once its file is gone. The model
follows what Linux's fsync(2) page promises and nothing more:

- fsync or fdatasync of a file makes its data and size durable, under its id.
  A file opened with O_SYNC or O_DSYNC is synced after every write.
- fsync of a directory makes its current entries durable: created and renamed
  entries appear, unlinked and renamed-away entries disappear. A new
  subdirectory survives with no entries until it is fsynced itself.
- nothing else is durable. A file whose name was never made durable is lost
  even if its data was fsynced, and a durable name whose data was never
  fsynced comes back as an empty file.

``tree.json`` is ``{"version": 1, "root": ID, "next_id": ID, "directories":
{"ID": {"name": ["file" or "dir", ID]}}}``. A power cut (:func:`restore`)
replaces ``live`` with the tree reachable from the root.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = ["DurableTree", "DurableTreeError", "format_backing", "restore"]

logger = logging.getLogger(__name__)

TREE_VERSION = 1
COPY_CHUNK_BYTES = 1024 * 1024

EntryKind = Literal["file", "dir"]


class DurableTreeError(Exception):
    """The backing directory is missing or its durable state cannot be read."""


@dataclass
class _TreeState:
    root: int
    next_id: int
    # directory id -> entry name -> (kind, id)
    directories: dict[int, dict[str, tuple[EntryKind, int]]] = field(default_factory=dict)


def live_dir(backing: Path) -> Path:
    return backing / "live"


def _data_dir(backing: Path) -> Path:
    return backing / "durable" / "data"


def _tree_path(backing: Path) -> Path:
    return backing / "durable" / "tree.json"


def _inodes_path(backing: Path) -> Path:
    return backing / "inodes.json"


class DurableTree:
    """The durable state of one backing directory, updated by the mount's fsync calls.

    Thread-safe: the FUSE daemon calls it from several threads.
    """

    def __init__(self, backing: Path) -> None:
        self.backing = backing
        self.live = live_dir(backing)
        self._lock = threading.Lock()
        self._state = _load_tree(backing)
        self._ids = _load_inodes(backing)
        # id -> smallest byte offset written since the data was last made durable.
        self._dirty_from: dict[int, int] = {}
        self.file_syncs = 0
        self.directory_syncs = 0

    def id_of(self, path: Path) -> int:
        """Return the id of the live file or directory at ``path``, assigning one if new."""
        ino = os.lstat(path).st_ino
        with self._lock:
            return self._id_for_inode(ino)

    def forget(self, ino: int) -> None:
        """Drop the id of inode ``ino``, whose last name was removed."""
        with self._lock:
            self._ids.pop(ino, None)

    def note_write(self, ino: int, offset: int) -> None:
        """Record that bytes from ``offset`` on of inode ``ino`` changed since the last sync."""
        with self._lock:
            file_id = self._id_for_inode(ino)
            previous = self._dirty_from.get(file_id)
            self._dirty_from[file_id] = offset if previous is None else min(previous, offset)

    def sync_file(self, fd: int) -> None:
        """Make the data and size of the open file ``fd`` durable."""
        ino = os.fstat(fd).st_ino
        with self._lock:
            file_id = self._id_for_inode(ino)
            target = _data_dir(self.backing) / str(file_id)
            dirty_from = self._dirty_from.pop(file_id, None)
            if not target.exists():
                dirty_from = 0
            _copy_tail(fd, target, dirty_from)
            self.file_syncs += 1

    def sync_directory(self, path: Path) -> None:
        """Make the current entries of the live directory ``path`` durable."""
        with self._lock:
            directory_id = self._id_for_inode(os.lstat(path).st_ino)
            entries: dict[str, tuple[EntryKind, int]] = {}
            with os.scandir(path) as scan:
                for entry in scan:
                    stat = entry.stat(follow_symlinks=False)
                    kind: EntryKind = "dir" if entry.is_dir(follow_symlinks=False) else "file"
                    entries[entry.name] = (kind, self._id_for_inode(stat.st_ino))
            self._state.directories[directory_id] = entries
            _store_tree(self.backing, self._state)
            self.directory_syncs += 1

    def store_inodes(self) -> None:
        """Write the inode-to-id map, so a later mount of the same live tree keeps the ids."""
        with self._lock:
            _store_inodes(self.backing, self._ids)

    def _id_for_inode(self, ino: int) -> int:
        file_id = self._ids.get(ino)
        if file_id is None:
            file_id = self._state.next_id
            self._state.next_id += 1
            self._ids[ino] = file_id
        return file_id


def format_backing(backing: Path) -> None:
    """Create an empty backing directory whose root directory is durable."""
    if backing.exists() and any(backing.iterdir()):
        raise DurableTreeError(f"backing directory {backing} is not empty; pass an empty one")
    live_dir(backing).mkdir(parents=True)
    _data_dir(backing).mkdir(parents=True)
    state = _TreeState(root=0, next_id=1, directories={0: {}})
    _store_tree(backing, state)
    _store_inodes(backing, {os.lstat(live_dir(backing)).st_ino: 0})


def restore(backing: Path) -> dict[str, int]:
    """Replace the live tree with its durable state, as after a power cut.

    Must run while nothing is mounted on ``backing``. Returns counts of the
    directories and files kept and of the data files dropped as unreachable.
    """
    state = _load_tree(backing)
    live = live_dir(backing)
    data = _data_dir(backing)
    for child in list(live.iterdir()):
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()

    ids = {os.lstat(live).st_ino: state.root}
    reachable: set[int] = set()
    directories = 0
    pending: list[tuple[int, Path]] = [(state.root, live)]
    while pending:
        directory_id, path = pending.pop()
        directories += 1
        for name, (kind, child_id) in sorted(state.directories.get(directory_id, {}).items()):
            child = path / name
            if kind == "dir":
                child.mkdir()
                pending.append((child_id, child))
            else:
                source = data / str(child_id)
                if source.exists():
                    shutil.copyfile(source, child)
                    reachable.add(child_id)
                else:
                    child.touch()
            ids[os.lstat(child).st_ino] = child_id

    dropped = 0
    for stored in list(data.iterdir()):
        if not stored.name.isdigit() or int(stored.name) not in reachable:
            stored.unlink()
            dropped += 1
    # Directory records of directories that are no longer reachable go too.
    state.directories = {
        directory_id: entries
        for directory_id, entries in state.directories.items()
        if directory_id in set(ids.values())
    }
    _store_tree(backing, state)
    _store_inodes(backing, ids)
    counts = {"directories": directories, "files": len(ids) - directories, "dropped": dropped}
    logger.info("restored durable state backing=%s %s", backing, counts)
    return counts


def _copy_tail(fd: int, target: Path, start: int | None) -> None:
    """Copy bytes from ``start`` on of ``fd`` into ``target`` and give it ``fd``'s size.

    ``start`` None means no byte changed, so only the size is copied.
    """
    size = os.fstat(fd).st_size
    start = size if start is None else min(start, size)
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC
    out = os.open(target, flags, 0o644)
    try:
        offset = start
        while offset < size:
            chunk = os.pread(fd, min(COPY_CHUNK_BYTES, size - offset), offset)
            if not chunk:
                break
            os.pwrite(out, chunk, offset)
            offset += len(chunk)
        os.ftruncate(out, size)
    finally:
        os.close(out)


def _load_tree(backing: Path) -> _TreeState:
    path = _tree_path(backing)
    try:
        raw: Any = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise DurableTreeError(
            f"{path} is missing: {backing} is not a lossy filesystem backing directory; "
            "create one with format_backing()"
        ) from exc
    except (OSError, ValueError) as exc:
        raise DurableTreeError(f"failed to read {path}: {exc}") from exc
    if not isinstance(raw, dict) or raw.get("version") != TREE_VERSION:
        raise DurableTreeError(f"{path} has an unknown format; expected version {TREE_VERSION}")
    directories = {
        int(directory_id): {name: (entry[0], int(entry[1])) for name, entry in entries.items()}
        for directory_id, entries in raw["directories"].items()
    }
    return _TreeState(root=int(raw["root"]), next_id=int(raw["next_id"]), directories=directories)


def _store_tree(backing: Path, state: _TreeState) -> None:
    payload = {
        "version": TREE_VERSION,
        "root": state.root,
        "next_id": state.next_id,
        "directories": {
            str(directory_id): {name: [kind, child] for name, (kind, child) in entries.items()}
            for directory_id, entries in state.directories.items()
        },
    }
    _replace_json(_tree_path(backing), payload)


def _load_inodes(backing: Path) -> dict[int, int]:
    path = _inodes_path(backing)
    try:
        raw: Any = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DurableTreeError(f"failed to read {path}: {exc}") from exc
    return {int(ino): int(file_id) for ino, file_id in raw.items()}


def _store_inodes(backing: Path, ids: dict[int, int]) -> None:
    _replace_json(_inodes_path(backing), {str(ino): file_id for ino, file_id in ids.items()})


def _replace_json(path: Path, payload: object) -> None:
    # The backing filesystem is not the one under test, so no fsync here.
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(payload, sort_keys=True), encoding="utf-8")
    temporary.replace(path)
