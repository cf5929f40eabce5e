"""Bring the partition logs on disk in line with a replicated state.

After a restart the logs can hold more than the snapshot the node restores:
records appended after the snapshot was taken are on disk, and the Raft log
will apply them again. Reconciling truncates each log to the snapshot's end
offset, so the replay appends them once, in order. It also advances each
log start to the snapshot's and deletes partition directories the snapshot
does not know (topics deleted after it was taken are created again by the
replay if they still exist).

A log that contains fewer records than the snapshot expects cannot be
repaired from the Raft log, because the Raft log only contains commands after
the snapshot. Reconciling then raises StorageError instead of serving a log
with a hole.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from kaflow.errors import StorageError
from kaflow.replication.state import ReplicatedState
from kaflow.storage.log import LogConfig
from kaflow.storage.manager import LogManager
from kaflow.topics import effective_config

__all__ = ["reconcile_logs", "topic_log_config"]

logger = logging.getLogger(__name__)


def topic_log_config(overrides: Mapping[str, int]) -> LogConfig:
    """Return the storage settings for a topic with the given config overrides."""
    return LogConfig.from_topic_config(effective_config(overrides))


def reconcile_logs(logs: LogManager, state: ReplicatedState) -> None:
    """Make the partition logs match ``state``; raise StorageError if records are missing."""
    for topic, partition in sorted(set(logs.partitions()) - set(state.partitions)):
        logger.warning(
            "deleting partition log unknown to the replicated state topic=%s partition=%d",
            topic,
            partition,
        )
        logs.delete_partition(topic, partition)

    for (topic, partition), offsets in sorted(state.partitions.items()):
        log_config = topic_log_config(state.topics[topic].config)
        log = logs.create(topic, partition, log_config)
        log.update_config(log_config)

        if log.log_end_offset < offsets.log_end_offset:
            raise StorageError(
                f"partition {topic}-{partition} ends at offset {log.log_end_offset} on disk but "
                f"the replicated state expects {offsets.log_end_offset}; records are missing from "
                "the data directory, so restore it from a backup or a replica",
                topic=topic,
                partition=partition,
                log_end_offset=log.log_end_offset,
                expected_log_end_offset=offsets.log_end_offset,
            )
        if log.log_end_offset > offsets.log_end_offset:
            logger.info(
                "truncating partition log to the snapshot topic=%s partition=%d "
                "from_offset=%d to_offset=%d",
                topic,
                partition,
                log.log_end_offset,
                offsets.log_end_offset,
            )
            log.truncate_to(offsets.log_end_offset)
        if log.log_start_offset < offsets.log_start_offset:
            log.advance_log_start(offsets.log_start_offset)
