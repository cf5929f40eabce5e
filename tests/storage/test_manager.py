from __future__ import annotations

from pathlib import Path

import pytest

from kaflow.errors import InvalidPartitionsError, InvalidTopicNameError
from kaflow.storage import LogConfig, LogManager
from kaflow.storage.manager import parse_partition_directory
from tests.storage.helpers import make_batch, open_descriptors_under, read_all

CONFIG = LogConfig(segment_bytes=300, index_interval_bytes=50)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("orders-0", ("orders", 0)),
        ("a-1-0", ("a-1", 0)),
        ("a-12", ("a", 12)),
        ("my.topic_x-7", ("my.topic_x", 7)),
        ("orders", None),
        ("orders-", None),
        ("-3", None),
        ("orders--1", ("orders-", 1)),
        ("orders-1.deleted", None),
        ("orders-٣", None),
    ],
    ids=lambda value: repr(value),
)
def test_parse_partition_directory(name: str, expected: tuple[str, int] | None) -> None:
    assert parse_partition_directory(name) == expected


def test_manager_create_idempotent(tmp_path: Path) -> None:
    manager = LogManager(tmp_path)
    first = manager.create("orders", 0, CONFIG)
    first.append(make_batch(2))

    second = manager.create("orders", 0, LogConfig(segment_bytes=1_000))

    assert second is first
    assert second.config.segment_bytes == 1_000
    assert manager.get("orders", 0) is first
    assert (tmp_path / "logs" / "orders-0").is_dir()


def test_manager_get_missing_raises_key_error(tmp_path: Path) -> None:
    manager = LogManager(tmp_path)

    with pytest.raises(KeyError):
        manager.get("orders", 0)


@pytest.mark.parametrize("topic", ["", ".", "..", "a/b", "a b", "x" * 250])
def test_manager_rejects_unsafe_topic_names(tmp_path: Path, topic: str) -> None:
    manager = LogManager(tmp_path)

    with pytest.raises(InvalidTopicNameError, match="is invalid"):
        manager.create(topic, 0, CONFIG)


def test_manager_rejects_negative_partition(tmp_path: Path) -> None:
    with pytest.raises(InvalidPartitionsError, match="negative"):
        LogManager(tmp_path).create("orders", -1, CONFIG)


def test_manager_delete_topic_leaves_similar_names(tmp_path: Path) -> None:
    manager = LogManager(tmp_path)
    for topic in ("a", "a-1", "a-1-0", "ab"):
        for partition in range(2):
            manager.create(topic, partition, CONFIG).append(make_batch(1))

    manager.delete_topic("a-1")

    assert manager.partitions() == [
        ("a", 0),
        ("a", 1),
        ("a-1-0", 0),
        ("a-1-0", 1),
        ("ab", 0),
        ("ab", 1),
    ]
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == [
        "a-0",
        "a-1",
        "a-1-0-0",
        "a-1-0-1",
        "ab-0",
        "ab-1",
    ]
    assert len(read_all(manager.get("a", 1))) == 1


def test_manager_delete_partition_is_idempotent(tmp_path: Path) -> None:
    manager = LogManager(tmp_path)
    manager.create("orders", 0, CONFIG)

    manager.delete_partition("orders", 0)
    manager.delete_partition("orders", 0)

    assert manager.partitions() == []
    assert list((tmp_path / "logs").iterdir()) == []


def test_manager_open_existing_finds_partitions(tmp_path: Path) -> None:
    manager = LogManager(tmp_path)
    for topic, partition in [("a", 0), ("a-1", 0), ("a-1", 3)]:
        log = manager.create(topic, partition, CONFIG)
        for _ in range(partition + 1):
            log.append(make_batch(2))
    manager.flush_all(fsync=True)
    manager.close()
    (tmp_path / "logs" / "not a partition").mkdir()
    (tmp_path / "logs" / "b-0.0123456789ab.deleted").mkdir()

    reopened = LogManager(tmp_path)
    logs = reopened.open_existing()

    assert sorted(logs) == [("a", 0), ("a-1", 0), ("a-1", 3)]
    assert logs[("a-1", 3)].log_end_offset == 8
    assert logs[("a", 0)].config == LogConfig()
    assert not (tmp_path / "logs" / "b-0.0123456789ab.deleted").exists()
    assert (tmp_path / "logs" / "not a partition").exists()


def test_manager_open_existing_on_empty_data_dir(tmp_path: Path) -> None:
    manager = LogManager(tmp_path / "new")

    assert manager.open_existing() == {}
    assert (tmp_path / "new" / "logs").is_dir()


def test_manager_file_descriptors_stay_bounded(tmp_path: Path) -> None:
    max_open = 8
    manager = LogManager(tmp_path, max_open_files=max_open)
    logs = [manager.create("t", partition, CONFIG) for partition in range(40)]
    highest = 0

    for round_number in range(3):
        for log in logs:
            log.append(make_batch(3, value_size=40))
            highest = max(highest, open_descriptors_under(tmp_path))
            assert len(log.read_records(0, 1 << 20, 1 << 20)) == 3 * (round_number + 1)
            highest = max(highest, open_descriptors_under(tmp_path))
        manager.flush_all(fsync=True)
        highest = max(highest, open_descriptors_under(tmp_path))

    assert highest <= max_open
    assert manager.files.statistics()["open_files"] <= max_open
    assert manager.files.statistics()["evictions"] > 0
    manager.close()
    assert open_descriptors_under(tmp_path) == 0
