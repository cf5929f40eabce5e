"""The lossy FUSE filesystem keeps what was fsynced and drops the rest on a power cut."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from chaos.fs.durability import DurableTree, DurableTreeError, format_backing
from chaos.fs.mounts import LossyMount, is_mounted


def _fuse_missing() -> str | None:
    if os.geteuid() != 0:
        return "mounting needs root"
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing"
    try:
        import mfusepy  # type: ignore[import-untyped]  # noqa: F401
    except (ImportError, OSError) as exc:
        return f"mfusepy or libfuse3 is missing ({exc}); run chaos/install-deps.sh"
    return None


needs_fuse = pytest.mark.skipif(_fuse_missing() is not None, reason=str(_fuse_missing()))


@pytest.fixture
def lossy(tmp_path: Path) -> Iterator[LossyMount]:
    mount = LossyMount(tmp_path / "backing", tmp_path / "mnt")
    mount.mount()
    try:
        yield mount
    finally:
        mount.unmount()
    assert not is_mounted(tmp_path / "mnt")


def _write(path: Path, data: bytes, *, fsync: bool) -> None:
    with open(path, "ab") as file:
        file.write(data)
        file.flush()
        if fsync:
            os.fsync(file.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@needs_fuse
def test_power_cut_keeps_fsynced_data(lossy: LossyMount) -> None:
    path = lossy.mountpoint / "segment.log"
    _write(path, b"acknowledged", fsync=True)
    _fsync_dir(lossy.mountpoint)

    lossy.power_cut()

    assert path.read_bytes() == b"acknowledged"


@needs_fuse
def test_power_cut_drops_unsynced_tail(lossy: LossyMount) -> None:
    path = lossy.mountpoint / "segment.log"
    _write(path, b"durable", fsync=True)
    _fsync_dir(lossy.mountpoint)
    _write(path, b"+volatile", fsync=False)
    assert path.read_bytes() == b"durable+volatile"

    lossy.power_cut()

    assert path.read_bytes() == b"durable"


@needs_fuse
def test_power_cut_keeps_fdatasync_data(lossy: LossyMount) -> None:
    path = lossy.mountpoint / "journal"
    with open(path, "wb") as file:
        file.write(b"entry-1")
        file.flush()
        os.fdatasync(file.fileno())
    _fsync_dir(lossy.mountpoint)

    lossy.power_cut()

    assert path.read_bytes() == b"entry-1"


@needs_fuse
def test_power_cut_drops_unsynced_name(lossy: LossyMount) -> None:
    path = lossy.mountpoint / "new.log"
    _write(path, b"data synced, name not", fsync=True)

    lossy.power_cut()

    assert not path.exists()
    assert os.listdir(lossy.mountpoint) == []


@needs_fuse
def test_power_cut_empties_unsynced_data(lossy: LossyMount) -> None:
    path = lossy.mountpoint / "named.log"
    _write(path, b"never fsynced", fsync=False)
    _fsync_dir(lossy.mountpoint)

    lossy.power_cut()

    assert path.exists()
    assert path.read_bytes() == b""


@needs_fuse
def test_power_cut_keeps_o_dsync_writes(lossy: LossyMount) -> None:
    path = lossy.mountpoint / "sync.log"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_DSYNC, 0o644)
    try:
        os.write(fd, b"written with O_DSYNC")
    finally:
        os.close(fd)
    _fsync_dir(lossy.mountpoint)

    lossy.power_cut()

    assert path.read_bytes() == b"written with O_DSYNC"


@needs_fuse
def test_rename_durable_after_directory_fsync(lossy: LossyMount) -> None:
    target = lossy.mountpoint / "meta"
    _write(target, b"old", fsync=True)
    _fsync_dir(lossy.mountpoint)
    temporary = lossy.mountpoint / "meta.tmp"
    _write(temporary, b"new", fsync=True)
    temporary.replace(target)
    _fsync_dir(lossy.mountpoint)

    lossy.power_cut()

    assert target.read_bytes() == b"new"
    assert not temporary.exists()


@needs_fuse
def test_rename_lost_without_directory_fsync(lossy: LossyMount) -> None:
    target = lossy.mountpoint / "meta"
    _write(target, b"old", fsync=True)
    _fsync_dir(lossy.mountpoint)
    temporary = lossy.mountpoint / "meta.tmp"
    _write(temporary, b"new", fsync=True)
    temporary.replace(target)

    lossy.power_cut()

    assert target.read_bytes() == b"old"
    assert not temporary.exists()


@needs_fuse
def test_unlink_needs_directory_fsync(lossy: LossyMount) -> None:
    path = lossy.mountpoint / "old-segment"
    _write(path, b"data", fsync=True)
    _fsync_dir(lossy.mountpoint)
    path.unlink()

    lossy.power_cut()
    assert path.read_bytes() == b"data"

    path.unlink()
    _fsync_dir(lossy.mountpoint)
    lossy.power_cut()
    assert not path.exists()


@needs_fuse
def test_subdirectory_entries_need_their_own_fsync(lossy: LossyMount) -> None:
    partition = lossy.mountpoint / "orders-0"
    partition.mkdir()
    _fsync_dir(lossy.mountpoint)
    _write(partition / "00000000000000000000.log", b"batch", fsync=True)

    lossy.power_cut()

    assert partition.is_dir()
    assert os.listdir(partition) == []

    _write(partition / "00000000000000000000.log", b"batch", fsync=True)
    _fsync_dir(partition)
    lossy.power_cut()
    assert (partition / "00000000000000000000.log").read_bytes() == b"batch"


@needs_fuse
def test_directory_rename_moves_durable_entries(lossy: LossyMount) -> None:
    staging = lossy.mountpoint / "topic.staging"
    staging.mkdir()
    _write(staging / "file", b"inside", fsync=True)
    _fsync_dir(staging)
    staging.rename(lossy.mountpoint / "topic")
    _fsync_dir(lossy.mountpoint)

    lossy.power_cut()

    assert (lossy.mountpoint / "topic" / "file").read_bytes() == b"inside"
    assert not staging.exists()


@needs_fuse
def test_unsynced_truncate_is_undone(lossy: LossyMount) -> None:
    path = lossy.mountpoint / "segment.log"
    _write(path, b"0123456789", fsync=True)
    _fsync_dir(lossy.mountpoint)
    os.truncate(path, 4)
    assert path.read_bytes() == b"0123"

    lossy.power_cut()

    assert path.read_bytes() == b"0123456789"


@needs_fuse
def test_synced_truncate_then_regrow(lossy: LossyMount) -> None:
    path = lossy.mountpoint / "segment.log"
    _write(path, b"0123456789", fsync=True)
    _fsync_dir(lossy.mountpoint)
    with open(path, "r+b") as file:
        file.truncate(4)
        file.seek(4)
        file.write(b"abc")
        file.flush()
        os.fsync(file.fileno())

    lossy.power_cut()

    assert path.read_bytes() == b"0123abc"


@needs_fuse
def test_overwrite_in_place_survives_after_fsync(lossy: LossyMount) -> None:
    path = lossy.mountpoint / "index"
    _write(path, b"aaaaaaaa", fsync=True)
    _fsync_dir(lossy.mountpoint)
    with open(path, "r+b") as file:
        file.seek(2)
        file.write(b"BB")
        file.flush()
        os.fsync(file.fileno())
        file.seek(6)
        file.write(b"CC")

    lossy.power_cut()

    assert path.read_bytes() == b"aaBBaaaa"


@needs_fuse
def test_remount_without_power_cut_keeps_everything(lossy: LossyMount) -> None:
    path = lossy.mountpoint / "file"
    _write(path, b"unsynced but not cut", fsync=False)
    _fsync_dir(lossy.mountpoint)

    lossy.unmount()
    lossy.mount()
    _write(path, b"!", fsync=True)
    lossy.power_cut()

    assert path.read_bytes() == b"unsynced but not cut!"


@needs_fuse
def test_repeated_power_cuts_keep_ids_consistent(lossy: LossyMount) -> None:
    names = [f"f{i}" for i in range(5)]
    for round_number in range(3):
        for name in names:
            _write(lossy.mountpoint / name, f"{round_number};".encode(), fsync=True)
        _fsync_dir(lossy.mountpoint)
        # An unlinked file's inode number may be reused by the next create.
        (lossy.mountpoint / "scratch").write_bytes(b"x")
        os.unlink(lossy.mountpoint / "scratch")
        lossy.power_cut()

    for name in names:
        assert (lossy.mountpoint / name).read_bytes() == b"0;1;2;"
    assert lossy.power_cuts == 3


@needs_fuse
def test_hard_link_rejected(lossy: LossyMount) -> None:
    path = lossy.mountpoint / "file"
    path.write_bytes(b"x")

    with pytest.raises(OSError) as raised:
        os.link(path, lossy.mountpoint / "second-name")

    assert raised.value.errno in (errno.ENOTSUP, errno.EOPNOTSUPP)


def test_format_backing_rejects_non_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "stray").write_bytes(b"")

    with pytest.raises(DurableTreeError, match="not empty"):
        format_backing(tmp_path)


def test_durable_tree_rejects_unformatted_directory(tmp_path: Path) -> None:
    with pytest.raises(DurableTreeError, match="not a lossy filesystem backing directory"):
        DurableTree(tmp_path)


def test_durable_tree_rejects_unknown_version(tmp_path: Path) -> None:
    format_backing(tmp_path / "backing")
    (tmp_path / "backing" / "durable" / "tree.json").write_text('{"version": 99}')

    with pytest.raises(DurableTreeError, match="unknown format"):
        DurableTree(tmp_path / "backing")
