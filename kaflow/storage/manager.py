"""LogManager: every partition log of a node and the file cache they share.

Layout under the node's data directory::

    <data_dir>/logs/<topic>-<partition>/     one directory per partition
    <data_dir>/logs/<name>.<random>.deleted/ a partition being removed

Topic names may themselves contain '-', so a directory name is split at its
last '-': ``a-1-0`` is partition 0 of topic ``a-1``.
"""

from __future__ import annotations

import logging
import re
import shutil
import threading
from pathlib import Path

from kaflow.errors import InvalidPartitionsError, InvalidTopicNameError, StorageError
from kaflow.storage.files import DELETED_SUFFIX, FileCache, remove_log_directory
from kaflow.storage.log import LogConfig, PartitionLog

__all__ = ["LogManager", "parse_partition_directory", "partition_directory_name"]

logger = logging.getLogger(__name__)

# Kafka's legal topic characters and length limit; they also keep names safe as paths.
_TOPIC_NAME = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


def partition_directory_name(topic: str, partition: int) -> str:
    """Return ``<topic>-<partition>``, raising if either would make an unsafe path."""
    if not _TOPIC_NAME.match(topic) or topic in (".", ".."):
        raise InvalidTopicNameError(
            f"topic name {topic!r} is invalid: use 1 to 249 characters from "
            "letters, digits, '.', '_' and '-', other than '.' and '..'",
            topic=topic,
        )
    if partition < 0:
        raise InvalidPartitionsError(
            f"partition {partition} of topic {topic!r} is negative; partitions start at 0",
            partition=partition,
        )
    return f"{topic}-{partition}"


def parse_partition_directory(name: str) -> tuple[str, int] | None:
    """Return (topic, partition) for a ``<topic>-<partition>`` name, or None."""
    topic, separator, partition = name.rpartition("-")
    if not separator or not partition.isascii() or not partition.isdigit():
        return None
    if not _TOPIC_NAME.match(topic) or topic in (".", ".."):
        return None
    return topic, int(partition)


class LogManager:
    """Creates, opens, finds and deletes the partition logs under ``<data_dir>/logs``.

    Safe to call from any thread; creation and deletion normally happen on
    the Raft apply thread while HTTP handlers call :meth:`get`.
    """

    def __init__(
        self, data_dir: Path, max_open_files: int = 256, *, cut_damaged: bool = False
    ) -> None:
        self._data_dir = data_dir
        # Cut a log before a damaged closed segment instead of failing to open it.
        # A cluster member sets it, because it copies the lost records from a peer.
        self._cut_damaged = cut_damaged
        self._logs_dir = data_dir / "logs"
        self._files = FileCache(max_open_files)
        self._lock = threading.Lock()
        self._logs: dict[tuple[str, int], PartitionLog] = {}

    @property
    def logs_directory(self) -> Path:
        return self._logs_dir

    @property
    def files(self) -> FileCache:
        return self._files

    def open_existing(self) -> dict[tuple[str, int], PartitionLog]:
        """Open every partition directory under ``<data_dir>/logs`` with the default LogConfig.

        Callers apply each topic's settings afterwards with
        :meth:`PartitionLog.update_config` (or :meth:`create`). Leftover
        ``*.deleted`` directories are removed; other unexpected entries are
        logged and skipped. Raises CorruptLogError if any log cannot be
        recovered safely, unless the manager was built with ``cut_damaged``.
        """
        self._ensure_logs_directory()
        with self._lock:
            try:
                entries = sorted(self._logs_dir.iterdir())
                for entry in entries:
                    if entry.name.endswith(DELETED_SUFFIX):
                        logger.info("removing partially deleted partition path=%s", entry)
                        shutil.rmtree(entry)
            except OSError as exc:
                raise StorageError(
                    f"failed to list logs directory {self._logs_dir}: {exc}",
                    path=str(self._logs_dir),
                ) from exc

            for entry in entries:
                if entry.name.endswith(DELETED_SUFFIX):
                    continue
                key = parse_partition_directory(entry.name)
                if key is None or not entry.is_dir():
                    logger.warning("ignoring unexpected entry in logs directory path=%s", entry)
                    continue
                if key not in self._logs:
                    self._logs[key] = PartitionLog.open(
                        entry, LogConfig(), self._files, cut_damaged=self._cut_damaged
                    )
            logger.info("opened partition logs count=%d path=%s", len(self._logs), self._logs_dir)
            return dict(self._logs)

    def get(self, topic: str, partition: int) -> PartitionLog:
        """Return the open log of a partition; raises KeyError if there is none."""
        with self._lock:
            return self._logs[(topic, partition)]

    def create(self, topic: str, partition: int, config: LogConfig) -> PartitionLog:
        """Open or create the partition's log with ``config``.

        Idempotent: for a log that is already open, ``config`` is applied
        to it and it is returned.
        """
        name = partition_directory_name(topic, partition)
        self._ensure_logs_directory()
        with self._lock:
            log = self._logs.get((topic, partition))
            if log is not None:
                log.update_config(config)
                return log
            log = PartitionLog.open(
                self._logs_dir / name, config, self._files, cut_damaged=self._cut_damaged
            )
            self._logs[(topic, partition)] = log
        logger.info("created partition log topic=%s partition=%d", topic, partition)
        return log

    def delete_partition(self, topic: str, partition: int) -> None:
        """Delete a partition's log and directory; a missing partition is not an error."""
        name = partition_directory_name(topic, partition)
        with self._lock:
            log = self._logs.pop((topic, partition), None)
        if log is not None:
            log.delete()
            return
        directory = self._logs_dir / name
        if directory.is_dir():
            try:
                remove_log_directory(directory, self._files)
            except OSError as exc:
                raise StorageError(
                    f"failed to delete partition directory {directory}: {exc}",
                    path=str(directory),
                ) from exc
            logger.info("deleted unopened partition log path=%s", directory)

    def delete_topic(self, topic: str) -> None:
        """Delete every partition of ``topic`` and nothing of any other topic.

        Directories on disk are matched by the topic parsed from the right,
        so deleting ``a`` leaves ``a-1``'s partitions alone.
        """
        partitions: set[int] = set()
        with self._lock:
            partitions.update(p for (t, p) in self._logs if t == topic)
        if self._logs_dir.is_dir():
            for entry in self._logs_dir.iterdir():
                key = parse_partition_directory(entry.name)
                if key is not None and key[0] == topic:
                    partitions.add(key[1])
        for partition in sorted(partitions):
            self.delete_partition(topic, partition)
        if partitions:
            logger.info("deleted topic logs topic=%s partitions=%d", topic, len(partitions))

    def partitions(self) -> list[tuple[str, int]]:
        """Return the (topic, partition) of every open log, sorted."""
        with self._lock:
            return sorted(self._logs)

    def flush_all(self, fsync: bool) -> None:
        """Flush every open log; see :meth:`PartitionLog.flush`."""
        with self._lock:
            logs = list(self._logs.values())
        for log in logs:
            log.flush(fsync)

    def close(self) -> None:
        """Close every log and the file cache. Does not fsync."""
        with self._lock:
            logs = list(self._logs.values())
            self._logs.clear()
        for log in logs:
            log.close()
        self._files.close_all()

    def _ensure_logs_directory(self) -> None:
        if self._logs_dir.is_dir():
            return
        try:
            self._logs_dir.mkdir(parents=True, exist_ok=True)
            self._files.fsync(self._data_dir)
        except OSError as exc:
            raise StorageError(
                f"failed to create logs directory {self._logs_dir}: {exc}",
                path=str(self._logs_dir),
            ) from exc
