from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from kaflow.errors import InvalidConfigError, StorageError
from kaflow.storage import FileCache
from tests.storage.helpers import open_descriptors_under, wait_for


def make_files(directory: Path, count: int) -> list[Path]:
    paths = []
    for index in range(count):
        path = directory / f"file-{index}"
        path.write_bytes(f"content {index}".encode())
        paths.append(path)
    return paths


def test_file_cache_closes_least_recently_used(tmp_path: Path) -> None:
    first, second, third = make_files(tmp_path, 3)
    cache = FileCache(max_open=2)

    with cache.lease(first):
        pass
    with cache.lease(second):
        pass
    with cache.lease(first):
        pass
    with cache.lease(third):
        pass

    stats = cache.statistics()
    assert stats["open_files"] == 2
    assert stats["evictions"] == 1
    with cache.lease(first):
        pass
    assert cache.statistics()["misses"] == 3, "first should still be cached, second evicted"


def test_file_cache_bound_holds_for_many_files(tmp_path: Path) -> None:
    paths = make_files(tmp_path, 50)
    cache = FileCache(max_open=5)

    for path in paths * 2:
        with cache.lease(path) as fd:
            assert os.pread(fd, 7, 0) == b"content"
        assert open_descriptors_under(tmp_path) <= 5

    assert cache.statistics()["open_files"] == 5


def test_file_cache_read_lease_reuses_writable_descriptor(tmp_path: Path) -> None:
    path = tmp_path / "data"
    cache = FileCache(max_open=4)

    with cache.lease(path, writable=True) as fd:
        os.pwrite(fd, b"hello", 0)
    with cache.lease(path) as fd:
        data = os.pread(fd, 5, 0)

    assert data == b"hello"
    assert cache.statistics()["open_files"] == 1
    assert cache.statistics()["hits"] == 1


def test_file_cache_read_lease_of_missing_file_raises(tmp_path: Path) -> None:
    cache = FileCache(max_open=4)

    with pytest.raises(FileNotFoundError), cache.lease(tmp_path / "missing"):
        pass
    assert cache.statistics()["open_files"] == 0


def test_file_cache_evict_while_leased_closes_on_release(tmp_path: Path) -> None:
    (path,) = make_files(tmp_path, 1)
    cache = FileCache(max_open=4)

    with cache.lease(path) as fd:
        cache.evict(path)
        assert os.pread(fd, 7, 0) == b"content", "a leased descriptor must stay open"
        assert cache.statistics()["open_files"] == 1

    assert cache.statistics()["open_files"] == 0
    with pytest.raises(OSError):
        os.fstat(fd)


def test_file_cache_lease_waits_when_all_leased(tmp_path: Path) -> None:
    first, second = make_files(tmp_path, 2)
    cache = FileCache(max_open=1)
    release = threading.Event()
    leased = threading.Event()
    second_content: list[bytes] = []

    def hold_first() -> None:
        with cache.lease(first):
            leased.set()
            release.wait(10)

    def read_second() -> None:
        with cache.lease(second) as fd:
            second_content.append(os.pread(fd, 9, 0))

    holder = threading.Thread(target=hold_first)
    holder.start()
    assert leased.wait(10)
    reader = threading.Thread(target=read_second)
    reader.start()

    wait_for(lambda: cache.statistics()["waits"] >= 1)
    assert second_content == []
    release.set()
    holder.join(10)
    reader.join(10)

    assert second_content == [b"content 1"]
    assert cache.statistics()["open_files"] == 1


def test_file_cache_close_all_rejects_new_leases(tmp_path: Path) -> None:
    (path,) = make_files(tmp_path, 1)
    cache = FileCache(max_open=4)
    with cache.lease(path):
        pass

    cache.close_all()

    assert cache.statistics()["open_files"] == 0
    with pytest.raises(StorageError, match="closed"), cache.lease(path):
        pass


def test_file_cache_rejects_zero_capacity() -> None:
    with pytest.raises(InvalidConfigError, match="max open files is 0"):
        FileCache(max_open=0)


def test_file_cache_fsync_directory(tmp_path: Path) -> None:
    cache = FileCache(max_open=2)

    cache.fsync(tmp_path)

    assert cache.statistics()["open_files"] == 1
