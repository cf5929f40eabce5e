"""The deterministic state machine every Raft member runs.

:meth:`StateMachine.apply` runs on the Raft apply thread, one committed
command at a time in log order. Given the same commands, every member ends
with the same metadata and byte-identical partition logs, because apply reads
nothing but the command and the state: timestamps, partitions and batch
encoding were fixed by the proposer.

Apply validates each command again against the state at its index (a topic
can be deleted between propose and apply) and returns a rejection instead
of raising. A storage failure during apply is different: skipping the write
would let this member diverge silently, so the state machine stops applying
(every later command is rejected), refuses to take snapshots, and reports
the failure through ``on_failure``. The node then stops; on restart the log
replays from the last good snapshot. A record append that fails because the
disk is full is retried instead, until space is freed or the node stops.

Readers on other threads (fetch, describe, offsets) see the metadata under
a lock. The partition logs allow one writer and many readers at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from kaflow.catchup.gaps import GapTracker
from kaflow.catchup.reconcile import LogOrigin, advance_log_start_with_gap, reconcile_with_gaps
from kaflow.cluster.registry import MemberInfo, apply_registry_command
from kaflow.coordinator.model import GroupRecord
from kaflow.errors import (
    InvalidPartitionsError,
    InvalidRecordError,
    KaflowError,
    OffsetOutOfRangeError,
    StorageError,
    TopicAlreadyExistsError,
    UnknownPartitionError,
    UnknownTopicError,
)
from kaflow.replication.commands import (
    AlterTopic,
    Append,
    AppendItem,
    Command,
    CommandFormatError,
    CommitOffsets,
    CreateTopic,
    DeleteRecords,
    DeleteTopic,
    GroupDelete,
    GroupUpdate,
    InitProducer,
    ProducerBatch,
    RegisterMember,
    ResetOffsets,
    UnregisterMember,
    decode_command,
)
from kaflow.replication.group_apply import (
    apply_group_delete,
    apply_group_update,
    check_member_commit,
    check_no_members,
)
from kaflow.replication.producers import BatchSequence
from kaflow.replication.reconcile import reconcile_logs, topic_log_config
from kaflow.replication.results import AppendedBatch, CommandResult, Rejection
from kaflow.replication.state import (
    GroupOffset,
    PartitionState,
    ReplicatedState,
    TopicState,
    decode_state,
    encode_state,
)
from kaflow.storage.batch import read_batch_header
from kaflow.storage.log import PartitionLog
from kaflow.storage.manager import LogManager
from kaflow.storage.space import is_no_space
from kaflow.topics import (
    check_config_keys,
    check_topic_collision,
    parse_config,
    validate_topic_name,
)

__all__ = ["PartitionListener", "StateMachine"]

logger = logging.getLogger(__name__)

# Seconds between append attempts while the disk is full, and attempts per warning.
_SPACE_WAIT_S = 0.5
_SPACE_WAIT_LOG_EVERY = 20

PartitionListener = Callable[[list[tuple[str, int]]], None]
FailureListener = Callable[[BaseException], None]


class StateMachine:
    """Applies replicated commands to the metadata and the partition logs."""

    def __init__(self, log_manager: LogManager, gaps: GapTracker | None = None) -> None:
        self._logs = log_manager
        # Partitions whose log misses records that a peer must supply (kaflow.catchup).
        self.gaps = gaps if gaps is not None else GapTracker(enabled=False)
        self._state = ReplicatedState()
        self._lock = threading.Lock()
        self._failure: BaseException | None = None
        self._space_waits_cancelled = threading.Event()
        self.on_partitions_changed: PartitionListener | None = None
        self.on_failure: FailureListener | None = None

    # Reads, safe from any thread.

    @property
    def failure(self) -> BaseException | None:
        """The storage failure that stopped apply, or None while healthy."""
        return self._failure

    @property
    def applied_index(self) -> int:
        """Raft index of the last command this state machine applied."""
        return self._state.index

    def topic(self, name: str) -> TopicState | None:
        with self._lock:
            return self._state.topics.get(name)

    def topics(self) -> list[TopicState]:
        with self._lock:
            return sorted(self._state.topics.values(), key=lambda topic: topic.name)

    def topic_names(self) -> list[str]:
        with self._lock:
            return list(self._state.topics)

    def partition(self, topic: str, partition: int) -> PartitionState | None:
        with self._lock:
            return self._state.partitions.get((topic, partition))

    def partitions(self, topic: str) -> list[PartitionState]:
        """Return the offsets of every partition of ``topic``, in partition order."""
        with self._lock:
            found = self._state.topics.get(topic)
            if found is None:
                return []
            return [self._state.partitions[(topic, p)] for p in range(found.partitions)]

    def all_partitions(self) -> dict[tuple[str, int], PartitionState]:
        with self._lock:
            return dict(self._state.partitions)

    def group_offsets(self, group: str) -> dict[tuple[str, int], GroupOffset]:
        with self._lock:
            return dict(self._state.groups.get(group, {}))

    def groups(self) -> list[str]:
        """Return every group with committed offsets or a coordination record, sorted."""
        with self._lock:
            return sorted(set(self._state.groups) | set(self._state.group_records))

    def group_record(self, group: str) -> GroupRecord | None:
        """Return the group's coordination record (members, epochs, assignment), or None."""
        with self._lock:
            return self._state.group_records.get(group)

    def members(self) -> dict[str, MemberInfo]:
        """Return the member registry: Raft address -> registered member."""
        with self._lock:
            return dict(self._state.members)

    def stored_partitions(self) -> list[tuple[str, int]]:
        """Return the partitions that have a log on disk, known to the state or not."""
        return sorted(self._logs.partitions())

    # Snapshots, called on the Raft apply thread.

    def flush(self, fsync: bool) -> None:
        """Write every partition log's buffered data out; with ``fsync``, force it to disk."""
        self._logs.flush_all(fsync)

    def snapshot(self) -> bytes:
        """Encode the current state; raise StorageError after a storage failure.

        The caller must flush the partition logs first, so the logs hold
        every record up to the snapshot's end offsets.
        """
        if self._failure is not None:
            raise StorageError(
                f"no snapshot is taken after the storage failure at apply: {self._failure}"
            )
        with self._lock:
            return encode_state(self._state)

    def restore(self, data: bytes, origin: LogOrigin = LogOrigin.OWN) -> None:
        """Replace the state with a snapshot and bring the partition logs in line with it.

        ``origin`` says which local logs the snapshot may keep; see
        kaflow.catchup.reconcile.
        """
        self._install(decode_state(data), origin)

    def reset(self) -> None:
        """Start from the empty state, deleting every partition log on disk."""
        self._install(ReplicatedState())

    def _install(self, state: ReplicatedState, origin: LogOrigin = LogOrigin.OWN) -> None:
        if self.gaps.enabled:
            reconcile_with_gaps(self._logs, state, self._state, origin, self.gaps)
        else:
            reconcile_logs(self._logs, state)
        with self._lock:
            self._state = state
        self._notify(list(state.partitions))

    # Apply.

    def apply(self, command: bytes, index: int) -> CommandResult:
        """Apply one committed command at Raft ``index``; rejections are returned, not raised."""
        if self._failure is not None:
            return CommandResult(Rejection.of(self._failure_error()))
        try:
            decoded = decode_command(command)
        except CommandFormatError as exc:
            logger.error("rejected undecodable command index=%d error=%s", index, exc)
            return CommandResult(Rejection.of(InvalidRecordError(str(exc), index=index)))

        try:
            # Orders log writes against the back-fill of partitions with a gap.
            with self.gaps.lock:
                result = self._dispatch(decoded, index)
        except Exception as exc:
            self._fail(exc, index)
            return CommandResult(Rejection.of(self._failure_error()))
        with self._lock:
            self._state.index = index
        return result

    def _dispatch(self, command: Command, index: int) -> CommandResult:
        try:
            match command:
                case Append():
                    return self._append(command)
                case CreateTopic():
                    self._create_topic(command, index)
                case DeleteTopic():
                    self._delete_topic(command)
                case AlterTopic():
                    self._alter_topic(command)
                case CommitOffsets() | ResetOffsets():
                    self._commit_offsets(command)
                case GroupUpdate():
                    with self._lock:
                        return apply_group_update(self._state, command, index)
                case GroupDelete():
                    with self._lock:
                        try:
                            apply_group_delete(self._state, command)
                        except KaflowError as exc:
                            raise _Rejected(exc) from None
                case DeleteRecords():
                    self._delete_records(command)
                case InitProducer():
                    return self._init_producer(command)
                case RegisterMember() | UnregisterMember():
                    with self._lock:
                        apply_registry_command(self._state.members, command, index)
        except _Rejected as rejected:
            return CommandResult(Rejection.of(rejected.error))
        return CommandResult()

    def halt(self, exc: BaseException) -> None:
        """Stop applying commands for good, because the state can no longer be trusted."""
        if self._failure is not None:
            return
        self._failure = exc
        logger.error(
            "state machine halted; this node applies no further commands and must be "
            "restarted, which replays the Raft log from the last snapshot: %s",
            exc,
        )
        if self.on_failure is not None:
            self.on_failure(exc)

    def _fail(self, exc: BaseException, index: int) -> None:
        logger.error("storage failed while applying index=%d: %s", index, exc, exc_info=exc)
        self.halt(exc)

    def _failure_error(self) -> StorageError:
        return StorageError(
            f"this node stopped applying commands after a storage failure: {self._failure}; "
            "restart it after fixing the data directory"
        )

    def _notify(self, keys: list[tuple[str, int]]) -> None:
        if keys and self.on_partitions_changed is not None:
            self.on_partitions_changed(keys)

    def _require_topic(self, name: str, topic_id: int | None = None) -> TopicState:
        topic = self._state.topics.get(name)
        if topic is None or (topic_id is not None and topic.created_index != topic_id):
            raise _Rejected(
                UnknownTopicError(
                    f"topic {name!r} not found; create it first or check the name", topic=name
                )
            )
        return topic

    def _require_partition(self, topic: TopicState, partition: int) -> PartitionState:
        if not 0 <= partition < topic.partitions:
            raise _Rejected(
                UnknownPartitionError(
                    f"partition {partition} of topic {topic.name!r} not found; valid "
                    f"partitions are 0..{topic.partitions - 1}",
                    topic=topic.name,
                    partition=partition,
                    partitions=topic.partitions,
                )
            )
        return self._state.partitions[(topic.name, partition)]

    def _create_topic(self, command: CreateTopic, index: int) -> None:
        name = command.name
        try:
            validate_topic_name(name)
            config = parse_config(command.config)
        except KaflowError as exc:
            raise _Rejected(exc) from None
        if name in self._state.topics:
            raise _Rejected(
                TopicAlreadyExistsError(
                    f"topic {name!r} already exists; choose another name or delete it first",
                    topic=name,
                )
            )
        try:
            check_topic_collision(name, self._state.topics)
        except KaflowError as exc:
            raise _Rejected(exc) from None
        if command.partitions < 1:
            raise _Rejected(
                InvalidPartitionsError(
                    f"partition count {command.partitions} is below 1",
                    partitions=command.partitions,
                )
            )

        log_config = topic_log_config(config)
        for partition in range(command.partitions):
            self._logs.create(name, partition, log_config)
        topic = TopicState(name, command.partitions, config, index)
        with self._lock:
            self._state.topics[name] = topic
            for partition in range(command.partitions):
                self._state.partitions[(name, partition)] = PartitionState(0, 0)
        logger.info(
            "topic created topic=%s partitions=%d config=%s index=%d",
            name,
            command.partitions,
            config,
            index,
        )

    def _delete_topic(self, command: DeleteTopic) -> None:
        topic = self._require_topic(command.name)
        keys = [(topic.name, p) for p in range(topic.partitions)]
        with self._lock:
            del self._state.topics[topic.name]
            for key in keys:
                del self._state.partitions[key]
            self._state.producers.forget_topic(topic.name)
            for group in list(self._state.groups):
                offsets = self._state.groups[group]
                for key in keys:
                    offsets.pop(key, None)
                if not offsets:
                    del self._state.groups[group]
        self.gaps.discard_topic(topic.name)
        self._logs.delete_topic(topic.name)
        self._notify(keys)
        logger.info("topic deleted topic=%s partitions=%d", topic.name, topic.partitions)

    def _alter_topic(self, command: AlterTopic) -> None:
        topic = self._require_topic(command.name)
        partitions = topic.partitions if command.partitions is None else command.partitions
        if partitions < topic.partitions:
            raise _Rejected(
                InvalidPartitionsError(
                    f"topic {topic.name!r} has {topic.partitions} partitions and cannot shrink "
                    f"to {partitions}",
                    partitions=partitions,
                    current_partitions=topic.partitions,
                )
            )
        try:
            to_set = parse_config(command.config_set)
            check_config_keys(command.config_reset)
        except KaflowError as exc:
            raise _Rejected(exc) from None

        config = {k: v for k, v in topic.config.items() if k not in command.config_reset}
        config.update(to_set)
        log_config = topic_log_config(config)
        new_keys = [(topic.name, p) for p in range(topic.partitions, partitions)]
        for _, partition in new_keys:
            self._logs.create(topic.name, partition, log_config)
        if config != topic.config:
            for partition in range(topic.partitions):
                self._logs.get(topic.name, partition).update_config(log_config)

        with self._lock:
            self._state.topics[topic.name] = TopicState(
                topic.name, partitions, config, topic.created_index
            )
            for key in new_keys:
                self._state.partitions[key] = PartitionState(0, 0)
        logger.info(
            "topic altered topic=%s partitions=%d config=%s", topic.name, partitions, config
        )

    def _append(self, command: Append) -> CommandResult:
        outcomes: list[AppendedBatch | Rejection] = []
        changed: list[tuple[str, int]] = []
        for item in command.items:
            try:
                outcomes.append(self._append_item(item))
                changed.append((item.topic, item.partition))
            except _Rejected as rejected:
                outcomes.append(Rejection.of(rejected.error))
        self._notify(changed)
        return CommandResult(appended=tuple(outcomes))

    def _append_item(self, item: AppendItem) -> AppendedBatch:
        topic = self._require_topic(item.topic, item.topic_id)
        offsets = self._require_partition(topic, item.partition)
        _check_batch(item)
        if item.producer is not None:
            stored = self._check_sequence(item, item.producer)
            if stored is not None:
                return AppendedBatch(stored.base_offset, stored.last_offset, stored.timestamp)

        if self.gaps.has_gap(item.topic, item.partition):
            # The log misses earlier records, so this batch is copied with them later.
            base_offset = offsets.log_end_offset
            last_offset = base_offset + read_batch_header(item.batch).last_offset_delta
        else:
            log = self._logs.get(item.topic, item.partition)
            base_offset, last_offset = self._append_when_space(log, item.batch)
        if base_offset != offsets.log_end_offset:
            raise StorageError(
                f"partition {item.topic}-{item.partition} assigned base offset {base_offset} "
                f"but the replicated end offset is {offsets.log_end_offset}"
            )
        with self._lock:
            self._state.partitions[(item.topic, item.partition)] = PartitionState(
                offsets.log_start_offset, last_offset + 1
            )
            if item.producer is not None:
                self._state.producers.record_batch(
                    item.producer,
                    item.topic,
                    item.partition,
                    item.record_count,
                    (base_offset, last_offset),
                )
        return AppendedBatch(base_offset, last_offset)

    def _append_when_space(self, log: PartitionLog, batch: bytes) -> tuple[int, int]:
        """Append ``batch``, waiting while the disk is full instead of halting.

        A failed append is cut back, so the same batch can be appended again.
        Waiting blocks the Raft tick thread: this member stops acknowledging
        and voting, the others go on without it, and it catches up once space
        is freed. A stopping node cancels the wait, which then halts.
        """
        waited = 0
        while True:
            try:
                return log.append(batch)
            except StorageError as exc:
                if not is_no_space(exc) or self._space_waits_cancelled.is_set():
                    raise
                if waited % _SPACE_WAIT_LOG_EVERY == 0:
                    logger.warning(
                        "disk full while applying, waiting for space log=%s waited_s=%.1f error=%s",
                        log.directory.name,
                        waited * _SPACE_WAIT_S,
                        exc.message,
                    )
                waited += 1
                self._space_waits_cancelled.wait(_SPACE_WAIT_S)

    def cancel_space_waits(self) -> None:
        """Make an apply that waits for disk space give up and halt; the node is stopping."""
        self._space_waits_cancelled.set()

    def _check_sequence(self, item: AppendItem, producer: ProducerBatch) -> BatchSequence | None:
        """Return the stored batch ``item`` retries, or None when it is the next one."""
        try:
            with self._lock:
                return self._state.producers.check_batch(
                    producer, item.topic, item.partition, item.record_count
                )
        except KaflowError as exc:
            raise _Rejected(exc) from None

    def _init_producer(self, command: InitProducer) -> CommandResult:
        try:
            with self._lock:
                producer = self._state.producers.init_producer(
                    command.producer_id, command.timestamp
                )
        except KaflowError as exc:
            raise _Rejected(exc) from None
        return CommandResult(producer=producer)

    def _commit_offsets(self, command: CommitOffsets | ResetOffsets) -> None:
        if not command.group:
            raise _Rejected(InvalidRecordError("consumer group name must not be empty"))
        for entry in command.offsets:
            topic = self._require_topic(entry.topic)
            self._require_partition(topic, entry.partition)
            if entry.offset < 0:
                raise _Rejected(
                    OffsetOutOfRangeError(
                        f"committed offset {entry.offset} is negative",
                        topic=entry.topic,
                        partition=entry.partition,
                        offset=entry.offset,
                    )
                )
        try:
            if isinstance(command, CommitOffsets):
                check_member_commit(self._state, command)
            else:
                check_no_members(self._state, command)
        except KaflowError as exc:
            raise _Rejected(exc) from None
        with self._lock:
            offsets = self._state.groups.setdefault(command.group, {})
            for entry in command.offsets:
                offsets[(entry.topic, entry.partition)] = GroupOffset(
                    entry.offset, entry.metadata, command.timestamp
                )

    def _delete_records(self, command: DeleteRecords) -> None:
        topic = self._require_topic(command.topic)
        offsets = self._require_partition(topic, command.partition)
        if command.offset > offsets.log_end_offset:
            raise _Rejected(
                OffsetOutOfRangeError(
                    f"cannot delete records up to offset {command.offset} of partition "
                    f"{command.topic}-{command.partition}: its end offset is "
                    f"{offsets.log_end_offset}",
                    offset=command.offset,
                    log_start_offset=offsets.log_start_offset,
                    high_watermark=offsets.log_end_offset,
                )
            )
        if command.offset <= offsets.log_start_offset:
            return

        advance_log_start_with_gap(
            self._logs, self.gaps, command.topic, command.partition, command.offset
        )
        with self._lock:
            self._state.partitions[(command.topic, command.partition)] = PartitionState(
                command.offset, offsets.log_end_offset
            )
        self._notify([(command.topic, command.partition)])
        logger.info(
            "log start advanced topic=%s partition=%d log_start_offset=%d",
            command.topic,
            command.partition,
            command.offset,
        )


class _Rejected(Exception):
    """Internal signal: the command is refused with ``error``; nothing was changed."""

    def __init__(self, error: KaflowError) -> None:
        super().__init__(error.message)
        self.error = error


def _check_batch(item: AppendItem) -> None:
    try:
        header = read_batch_header(item.batch)
    except KaflowError as exc:
        raise _Rejected(InvalidRecordError(exc.message, topic=item.topic)) from None
    problem: str | None = None
    if header.length != len(item.batch):
        problem = f"header length {header.length} differs from the {len(item.batch)} bytes sent"
    elif header.record_count != item.record_count:
        problem = f"batch has {header.record_count} records, command says {item.record_count}"
    elif header.base_offset != 0:
        problem = f"batch was encoded with base offset {header.base_offset}, expected 0"
    if problem is not None:
        raise _Rejected(
            InvalidRecordError(
                f"invalid batch for partition {item.topic}-{item.partition}: {problem}",
                topic=item.topic,
                partition=item.partition,
            )
        )
