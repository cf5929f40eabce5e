"""A Kaflow node: storage, Raft replication and the Broker interface in one object.

:class:`Node` opens the partition logs, starts a Raft member (one member by
default, the same write path a cluster runs), and implements
:class:`kaflow.broker.Broker` for the HTTP frontend. Every write becomes a
replicated command; every read is served from this node's applied state.

Consumer offset commits follow Kafka: any offset >= 0 on an existing
partition is accepted, even past the high watermark, because a consumer may
commit a position it has not read yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

from kaflow.broker import (
    Broker,
    ClusterStatus,
    CommittedOffset,
    FetchResult,
    GroupDescription,
    GroupSummary,
    OffsetCommit,
    OffsetLookup,
    OffsetReset,
    PartitionInfo,
    ProduceRecord,
    ProducerIdAndEpoch,
    ProducerSequences,
    RecordMetadata,
    TopicInfo,
)
from kaflow.catchup.serving import (
    PeerBatches,
    check_local_lookup,
    check_local_range,
    read_batches_for_peer,
)
from kaflow.cluster.membership import MembershipManager
from kaflow.cluster.registration import MemberRegistration
from kaflow.config import NodeConfig
from kaflow.coordinator.admin import describe_group, group_summaries, plan_offset_reset
from kaflow.coordinator.reconcile import HeartbeatRequest, HeartbeatResponse
from kaflow.coordinator.service import GroupCoordinator
from kaflow.errors import (
    CorruptBatchError,
    CorruptLogError,
    InternalError,
    InvalidOffsetError,
    OffsetOutOfRangeError,
    StorageError,
    TopicAlreadyExistsError,
    UnknownGroupError,
    UnknownPartitionError,
    UnknownTopicError,
)
from kaflow.groups import validate_group_name
from kaflow.observability import NodeMetrics
from kaflow.partitioner import Partitioner
from kaflow.replication.cluster_status import build_cluster_status
from kaflow.replication.commands import (
    AlterTopic,
    CommitOffsets,
    CreateTopic,
    DeleteTopic,
    GroupDelete,
    InitProducer,
    ResetOffsets,
    encode_command,
)
from kaflow.replication.produce import plan_produce
from kaflow.replication.producer_requests import (
    attach_producer,
    check_producer_id,
    check_producer_sequences,
    record_timestamp,
)
from kaflow.replication.replica import Replica, raft_settings
from kaflow.replication.request_checks import (
    check_fetch_arguments,
    check_fetch_offset,
    offset_entries,
)
from kaflow.replication.results import AppendedBatch
from kaflow.replication.state import PartitionState, TopicState
from kaflow.replication.state_machine import StateMachine
from kaflow.storage.log import PartitionLog
from kaflow.storage.manager import LogManager
from kaflow.storage.space import SpaceGuard
from kaflow.topics import (
    check_topic_collision,
    effective_config,
    parse_config,
    parse_config_update,
    validate_partition_count,
    validate_partition_growth,
    validate_topic_name,
)

__all__ = ["Node"]

logger = logging.getLogger(__name__)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class Node:
    """One Kaflow broker node; implements :class:`kaflow.broker.Broker`."""

    def __init__(self, config: NodeConfig) -> None:
        self._config = config
        self._replica = Replica(config)
        self._partitioner = Partitioner()
        self._metrics = NodeMetrics(self, self._replica)
        self._registration = MemberRegistration(config, self._replica)
        self.membership = MembershipManager(config, self._replica)
        self.coordinator = GroupCoordinator(config, self._replica)
        # Twice the Raft journal's reserve of one command, so that after this node
        # rejects produce requests it still stores entries from other members and
        # the deletions that free space.
        self.space = SpaceGuard(
            config.data_dir,
            2 * raft_settings(config).max_command_bytes,
            purpose="produce requests",
        )

    # Lifecycle.

    @property
    def node_id(self) -> str:
        return self._config.node_id

    @property
    def config(self) -> NodeConfig:
        return self._config

    @property
    def failure(self) -> BaseException | None:
        """The storage failure that made this node stop itself, or None."""
        return self._replica.failure

    @property
    def replica(self) -> Replica:
        """The replicated core (logs, state machine, Raft, group commit), for status and tests."""
        return self._replica

    @property
    def metrics(self) -> NodeMetrics:
        """The node's Prometheus registry, counters and scrape-time collectors."""
        return self._metrics

    async def start(self, wait_ready: bool = True) -> None:
        """Open storage, start Raft and, with ``wait_ready``, wait until the log is replayed.

        Raises InvalidConfigError for an unusable configuration (peers without
        a cluster secret, a Raft port in use), StorageError when the data
        directory cannot be trusted, and InternalError for a wrong PySyncObj
        release.
        """
        await self._replica.start()
        self._registration.start()
        self.coordinator.start()
        if wait_ready:
            await self.wait_ready()

    async def wait_ready(self) -> None:
        """Wait until the node has a Raft leader and has applied the log it started with.

        Raises StorageError if the node stops itself first (for example on a
        damaged snapshot), or NotReadyError if it is stopped.
        """
        await self._replica.wait_ready()

    async def wait_stopped(self) -> None:
        """Wait until the node has stopped, by :meth:`stop` or after a storage failure."""
        await self._replica.wait_stopped()

    def is_ready(self) -> bool:
        """Return True once the node has replayed its log and can serve requests."""
        return self._replica.is_ready()

    async def stop(self) -> None:
        """Stop accepting requests, stop Raft, flush (and fsync) the partition logs, close them."""
        await self.coordinator.stop()
        await self._registration.stop()
        await self._replica.stop()

    async def compact(self) -> int:
        """Write a Raft snapshot now; return the log index it covers."""
        self._replica.check_ready()
        return await self._replica.raft.compact()

    # Helpers.

    def _check_ready(self) -> tuple[StateMachine, LogManager]:
        return self._replica.check_ready()

    def _topic(self, name: str) -> TopicState:
        state, _ = self._check_ready()
        topic = state.topic(name)
        if topic is None:
            raise UnknownTopicError(
                f"topic {name!r} not found; create it first or check the name", topic=name
            )
        return topic

    def _partition(self, topic_name: str, partition: int) -> tuple[PartitionState, PartitionLog]:
        topic = self._topic(topic_name)
        state, logs = self._check_ready()
        offsets = state.partition(topic_name, partition)
        if (
            isinstance(partition, bool)
            or not isinstance(partition, int)
            or not 0 <= partition < topic.partitions
            or offsets is None
        ):
            raise UnknownPartitionError(
                f"partition {partition!r} of topic {topic_name!r} not found; valid partitions are "
                f"0..{topic.partitions - 1}",
                topic=topic_name,
                partition=partition,
                partitions=topic.partitions,
            )
        try:
            log = logs.get(topic_name, partition)
        except KeyError:
            raise UnknownTopicError(
                f"topic {topic_name!r} not found; create it first or check the name",
                topic=topic_name,
            ) from None
        return offsets, log

    def _topic_info(self, topic: TopicState, offsets: list[PartitionState]) -> TopicInfo:
        return TopicInfo(
            name=topic.name,
            partitions=[
                PartitionInfo(p, partition.log_start_offset, partition.log_end_offset)
                for p, partition in enumerate(offsets)
            ],
            config=effective_config(topic.config),
        )

    # Topics.

    def list_topics(self) -> list[TopicInfo]:
        state, _ = self._check_ready()
        return [self._topic_info(topic, state.partitions(topic.name)) for topic in state.topics()]

    def describe_topic(self, name: str) -> TopicInfo:
        topic = self._topic(name)
        state, _ = self._check_ready()
        return self._topic_info(topic, state.partitions(name))

    async def create_topic(self, name: str, partitions: int, config: dict[str, Any]) -> TopicInfo:
        state, _ = self._check_ready()
        validate_topic_name(name)
        validate_partition_count(partitions, self._config.max_partitions)
        overrides = parse_config(config)
        if state.topic(name) is not None:
            raise TopicAlreadyExistsError(
                f"topic {name!r} already exists; choose another name or delete it first", topic=name
            )
        check_topic_collision(name, state.topic_names())

        result = await self._replica.propose(
            encode_command(CreateTopic(name, partitions, overrides))
        )
        result.raise_for_rejection()
        return self.describe_topic(name)

    async def alter_topic(
        self, name: str, partitions: int | None, config: dict[str, Any]
    ) -> TopicInfo:
        topic = self._topic(name)
        if partitions is not None:
            validate_partition_growth(topic.partitions, partitions, self._config.max_partitions)
        to_set, to_reset = parse_config_update(config)
        if (partitions is None or partitions == topic.partitions) and not to_set and not to_reset:
            return self.describe_topic(name)

        result = await self._replica.propose(
            encode_command(AlterTopic(name, partitions, to_set, to_reset))
        )
        result.raise_for_rejection()
        return self.describe_topic(name)

    async def delete_topic(self, name: str) -> None:
        self._topic(name)
        result = await self._replica.propose(encode_command(DeleteTopic(name)))
        result.raise_for_rejection()
        self._partitioner.forget(name)
        self._metrics.forget_topic(name)

    # Records.

    async def produce(
        self,
        topic: str,
        records: list[ProduceRecord],
        producer: ProducerSequences | None = None,
    ) -> list[RecordMetadata]:
        found = self._topic(topic)
        if producer is not None:
            check_producer_sequences(records, producer)
        self.space.check()
        now_ms = _now_ms()
        plan = plan_produce(
            found, records, self._partitioner, now_ms, self._config.max_request_bytes
        )
        items = plan.items if producer is None else attach_producer(plan.items, producer, now_ms)
        outcomes = await self._replica.proposer.append(items)
        for outcome in outcomes:
            if not isinstance(outcome, AppendedBatch):
                raise outcome.to_error()
        appended = [outcome for outcome in outcomes if isinstance(outcome, AppendedBatch)]
        # Records of a batch that was an idempotent retry were stored before: not counted again.
        self._metrics.count_produced(
            topic,
            (
                requested
                for requested, record in zip(records, plan.records, strict=True)
                if not appended[record.item].duplicate
            ),
        )
        return [
            RecordMetadata(
                partition=record.partition,
                offset=appended[record.item].base_offset + record.position,
                timestamp=record_timestamp(requested, record.timestamp, appended[record.item]),
            )
            for requested, record in zip(records, plan.records, strict=True)
        ]

    async def init_producer(self, producer_id: int | None) -> ProducerIdAndEpoch:
        self._check_ready()
        check_producer_id(producer_id)
        result = await self._replica.propose(encode_command(InitProducer(producer_id, _now_ms())))
        result.raise_for_rejection()
        if result.producer is None:
            raise InternalError(f"init_producer for producer id {producer_id} returned no id")
        return result.producer

    async def fetch(
        self,
        topic: str,
        partition: int,
        offset: int,
        max_records: int,
        max_bytes: int,
        max_wait_ms: int,
    ) -> FetchResult:
        check_fetch_arguments(offset, max_records, max_bytes, max_wait_ms)
        self._partition(topic, partition)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max_wait_ms / 1000

        while True:
            with self._replica.waiters.watch(topic, partition) as changed:
                offsets, log = self._partition(topic, partition)
                check_fetch_offset(topic, partition, offset, offsets)
                if offset < offsets.log_end_offset:
                    check_local_range(topic, partition, offset, offsets, log)
                    return await self._read(topic, partition, offset, log, max_records, max_bytes)
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return FetchResult([], offset, offsets.log_end_offset, offsets.log_start_offset)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), remaining)

    async def _read(
        self,
        topic: str,
        partition: int,
        offset: int,
        log: PartitionLog,
        max_records: int,
        max_bytes: int,
    ) -> FetchResult:
        loop = asyncio.get_running_loop()
        try:
            records = await loop.run_in_executor(
                None, log.read_records, offset, max_bytes, max_records
            )
        except (CorruptBatchError, CorruptLogError) as exc:
            raise self._damaged_read(topic, partition, offset, exc) from exc
        except OffsetOutOfRangeError:
            # Retention moved the log start between the check and the read.
            offsets, _ = self._partition(topic, partition)
            check_fetch_offset(topic, partition, offset, offsets)
            raise
        offsets, _ = self._partition(topic, partition)
        records = [r for r in records if r.offset < offsets.log_end_offset]
        next_offset = records[-1].offset + 1 if records else offset
        self._metrics.count_fetched(topic, records)
        return FetchResult(records, next_offset, offsets.log_end_offset, offsets.log_start_offset)

    def lookup_offset(self, topic: str, partition: int, at: str | int) -> OffsetLookup:
        offsets, log = self._partition(topic, partition)
        if at == "earliest":
            return OffsetLookup(partition, offsets.log_start_offset, None)
        if at == "latest":
            return OffsetLookup(partition, offsets.log_end_offset, None)
        if isinstance(at, bool) or not isinstance(at, int) or at < 0:
            raise InvalidOffsetError(
                f"invalid offset lookup {at!r}: use 'earliest', 'latest' or a timestamp in ms >= 0",
                at=at,
            )
        found = log.offset_for_timestamp(at)
        check_local_lookup(topic, partition, found, offsets, log)
        if found is None or found[0] >= offsets.log_end_offset:
            return OffsetLookup(partition, None, None)
        return OffsetLookup(partition, found[0], found[1])

    async def read_batches_for_peer(
        self, topic: str, partition: int, offset: int, max_bytes: int
    ) -> PeerBatches:
        """Return raw batches for another member's back-fill; see kaflow.catchup.serving."""
        state, logs = self._check_ready()
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(
                None, read_batches_for_peer, state, logs, topic, partition, offset, max_bytes
            )
        except (CorruptBatchError, CorruptLogError) as exc:
            raise self._damaged_read(topic, partition, offset, exc) from exc

    def _damaged_read(
        self, topic: str, partition: int, offset: int, exc: StorageError
    ) -> Exception:
        """Report a read that met damaged bytes; return the error to raise (see DamageRepair)."""
        repair = self._replica.repair
        if repair is None:
            return exc
        return repair.read_failed(topic, partition, offset, exc)

    # Consumer group offsets.

    async def commit_offsets(
        self,
        group: str,
        commits: list[OffsetCommit],
        member_id: str | None = None,
        member_epoch: int | None = None,
    ) -> None:
        self._check_ready()
        validate_group_name(group)
        for commit in commits:
            self._partition(commit.topic, commit.partition)
        entries = offset_entries(commits)
        if not entries:
            return

        result = await self._replica.propose(
            encode_command(CommitOffsets(group, entries, _now_ms(), member_id, member_epoch))
        )
        result.raise_for_rejection()

    def committed_offsets(self, group: str) -> list[CommittedOffset]:
        state, _ = self._check_ready()
        validate_group_name(group)
        found = state.group_offsets(group)
        if not found:
            raise UnknownGroupError(
                f"consumer group {group!r} has no committed offsets", group=group
            )
        committed: list[CommittedOffset] = []
        for (topic, partition), entry in sorted(found.items()):
            offsets = state.partition(topic, partition) or PartitionState(0, 0)
            committed.append(
                CommittedOffset(
                    topic=topic,
                    partition=partition,
                    offset=entry.offset,
                    metadata=entry.metadata,
                    commit_timestamp=entry.commit_timestamp,
                    high_watermark=offsets.log_end_offset,
                    log_start_offset=offsets.log_start_offset,
                )
            )
        return committed

    def list_groups(self) -> list[str]:
        state, _ = self._check_ready()
        return state.groups()

    def group_summaries(self) -> list[GroupSummary]:
        state, _ = self._check_ready()
        return group_summaries(state)

    async def heartbeat(self, group: str, request: HeartbeatRequest) -> HeartbeatResponse:
        self._check_ready()
        validate_group_name(group)
        return await self.coordinator.heartbeat(group, request)

    def require_group_coordinator(self) -> None:
        self._check_ready()
        self.coordinator.require_active()

    def describe_group(self, group: str) -> GroupDescription:
        state, _ = self._check_ready()
        validate_group_name(group)
        return describe_group(state, group, self.coordinator.last_heartbeat_ms_ago)

    async def delete_group(self, group: str) -> None:
        self._check_ready()
        validate_group_name(group)
        self.coordinator.require_leader()
        self.describe_group(group)
        result = await self._replica.propose(encode_command(GroupDelete(group)))
        result.raise_for_rejection()

    async def reset_group_offsets(
        self,
        group: str,
        topic: str,
        partitions: list[int] | None,
        to: str,
        value: int | None,
        execute: bool,
    ) -> list[OffsetReset]:
        state, _ = self._check_ready()
        validate_group_name(group)
        if execute:
            self.coordinator.require_leader()
        plan = plan_offset_reset(
            state, group, topic, partitions, to, value, self._offset_for_timestamp
        )
        if execute and plan:
            entries = offset_entries(
                [OffsetCommit(reset.topic, reset.partition, reset.new_offset) for reset in plan]
            )
            result = await self._replica.propose(
                encode_command(ResetOffsets(group, entries, _now_ms()))
            )
            result.raise_for_rejection()
        return plan

    def _offset_for_timestamp(self, topic: str, partition: int, timestamp: int) -> int | None:
        return self.lookup_offset(topic, partition, timestamp).offset

    # Cluster.

    def cluster_status(self) -> ClusterStatus:
        """Return this node's view of the Raft group; works while the node is not ready."""
        return build_cluster_status(
            self._config,
            self._replica.raft_status(),
            self.is_ready(),
            self.failure,
            self.membership.registry(),
        )


if TYPE_CHECKING:

    def _node_implements_broker(node: Node) -> Broker:
        # mypy checks here that Node matches the Broker protocol method by method.
        return node
