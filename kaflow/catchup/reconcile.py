"""Bring the partition logs in line with a snapshot when missing records can be copied.

:func:`kaflow.replication.reconcile.reconcile_logs` serves a single node:
there a log shorter than the snapshot has lost records for good, so it
raises. In a cluster another member stores those records, so
:func:`reconcile_with_gaps` opens a gap instead (see :mod:`.gaps`) and the
back-fill task copies them.

Which local logs may be kept depends on where the snapshot came from
(:class:`LogOrigin`). Committed records are identical on every member, so
a log of the same topic incarnation is a prefix of the leader's and is
kept. A log of another incarnation (the topic was deleted and created again
while this node was down) contains other records at the same offsets and is
deleted.
"""

from __future__ import annotations

import enum
import logging

from kaflow.catchup.gaps import GapTracker
from kaflow.replication.reconcile import topic_log_config
from kaflow.replication.state import PartitionState, ReplicatedState
from kaflow.storage.checkpoint import write_log_start_offset
from kaflow.storage.log import LogConfig, PartitionLog
from kaflow.storage.manager import LogManager, partition_directory_name

__all__ = ["LogOrigin", "advance_log_start_with_gap", "reconcile_with_gaps", "restart_log_at"]

logger = logging.getLogger(__name__)


class LogOrigin(enum.Enum):
    """Knowledge about the local partition logs relative to a snapshot being installed."""

    # The logs were written under this state: the node's own snapshot at start.
    OWN = "own"
    # The snapshot came from the leader; ``previous`` is the state the logs were written under.
    LEADER = "leader"
    # Nothing records which topic incarnation the logs contain, so none of them is kept.
    UNKNOWN = "unknown"


def reconcile_with_gaps(
    logs: LogManager,
    state: ReplicatedState,
    previous: ReplicatedState | None,
    origin: LogOrigin,
    tracker: GapTracker,
) -> None:
    """Make the logs match ``state``, opening a gap for each log that ends too early.

    Runs on the Raft apply thread and replaces every gap tracked before.
    """
    with tracker.lock:
        tracker.discard_all()
        for topic, partition in sorted(set(logs.partitions()) - set(state.partitions)):
            logger.info(
                "deleting partition log unknown to the installed state topic=%s partition=%d",
                topic,
                partition,
            )
            logs.delete_partition(topic, partition)

        opened = 0
        for (topic, partition), offsets in sorted(state.partitions.items()):
            found = state.topics[topic]
            if not _keeps_log(origin, previous, topic, found.created_index):
                logs.delete_partition(topic, partition)
            log_config = topic_log_config(found.config)
            log = _align_log(logs, topic, partition, log_config, offsets)
            if log.log_end_offset < offsets.log_end_offset:
                tracker.open(topic, partition, found.created_index, log.log_end_offset)
                opened += 1
                logger.info(
                    "partition log is behind the replicated state topic=%s partition=%d "
                    "log_end_offset=%d replicated_end_offset=%d",
                    topic,
                    partition,
                    log.log_end_offset,
                    offsets.log_end_offset,
                )
        if opened:
            logger.info("partitions waiting for catch-up count=%d origin=%s", opened, origin.value)


def _keeps_log(
    origin: LogOrigin, previous: ReplicatedState | None, topic: str, created_index: int
) -> bool:
    if origin is LogOrigin.OWN:
        return True
    if origin is LogOrigin.UNKNOWN or previous is None:
        return False
    before = previous.topics.get(topic)
    return before is not None and before.created_index == created_index


def _align_log(
    logs: LogManager, topic: str, partition: int, config: LogConfig, offsets: PartitionState
) -> PartitionLog:
    log = logs.create(topic, partition, config)
    log.update_config(config)
    if log.log_end_offset > offsets.log_end_offset:
        logger.info(
            "truncating partition log to the replicated state topic=%s partition=%d "
            "from_offset=%d to_offset=%d",
            topic,
            partition,
            log.log_end_offset,
            offsets.log_end_offset,
        )
        log.truncate_to(offsets.log_end_offset)
    if log.log_end_offset < offsets.log_start_offset:
        # Nothing local is still part of the log, so it restarts empty at the log start.
        return restart_log_at(logs, topic, partition, config, offsets.log_start_offset)
    if log.log_start_offset < offsets.log_start_offset:
        log.advance_log_start(offsets.log_start_offset)
    return log


def restart_log_at(
    logs: LogManager, topic: str, partition: int, config: LogConfig, offset: int
) -> PartitionLog:
    """Replace the partition's log with an empty one whose log start and end are ``offset``.

    ``offset`` may lie past the old log end, which :meth:`PartitionLog.truncate_to`
    and :meth:`PartitionLog.advance_log_start` do not allow. A log directory
    that holds only a log start offset checkpoint opens empty at that offset.
    """
    logs.delete_partition(topic, partition)
    directory = logs.logs_directory / partition_directory_name(topic, partition)
    directory.mkdir(parents=True, exist_ok=True)
    write_log_start_offset(logs.files, directory, offset)
    log = logs.create(topic, partition, config)
    logger.info(
        "restarted partition log topic=%s partition=%d log_start_offset=%d",
        topic,
        partition,
        log.log_start_offset,
    )
    return log


def advance_log_start_with_gap(
    logs: LogManager, tracker: GapTracker, topic: str, partition: int, offset: int
) -> None:
    """Advance the log start of a partition with a gap, which may lie past its local end.

    Records below ``offset`` are deleted on every member, so a log that
    ends before it restarts empty at ``offset`` and the gap goes on from
    there. The caller must own ``tracker.lock``.
    """
    log = logs.get(topic, partition)
    if offset <= log.log_end_offset:
        log.advance_log_start(offset)
        return
    gap = tracker.get(topic, partition)
    restart_log_at(logs, topic, partition, log.config, offset)
    if gap is not None:
        tracker.open(topic, partition, gap.topic_id, offset)
