"""The replicated core of a node and its lifecycle.

A :class:`Replica` owns the partition logs, the state machine, the Raft
member, group commit, retention and the long-poll waiters. It starts them in
order, reports readiness, and stops them in reverse order. When the state
machine halts after a storage failure, the replica logs an ERROR and stops
itself: serving a state that may differ from the other members is worse
than serving nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging

from kaflow.catchup.client import PeerClient
from kaflow.catchup.gaps import GapTracker
from kaflow.catchup.repair import DamageRepair
from kaflow.catchup.task import BackfillTask, registry_peer_urls
from kaflow.config import FsyncPolicy, NodeConfig
from kaflow.errors import InvalidConfigError, KaflowError, NotReadyError, StorageError
from kaflow.replication.proposer import DEFAULT_MAX_COMMAND_BYTES, GroupCommitProposer
from kaflow.replication.raft import RaftNode
from kaflow.replication.raft_types import RaftSettings, RaftStatus
from kaflow.replication.results import CommandResult
from kaflow.replication.retention import RetentionTask
from kaflow.replication.state_machine import StateMachine
from kaflow.replication.waiters import PartitionWaiters
from kaflow.storage.manager import LogManager

__all__ = ["RAFT_DIR", "Replica"]

logger = logging.getLogger(__name__)

RAFT_DIR = "raft"
# Room for the msgpack framing around the batches of the largest allowed request.
_COMMAND_FRAMING_BYTES = 1024 * 1024


def check_node_config(config: NodeConfig) -> None:
    """Raise InvalidConfigError for settings a replica cannot run with."""
    if config.peers and not config.cluster_secret:
        raise InvalidConfigError(
            f"a node with peers ({', '.join(config.peers)}) needs a cluster secret: Raft "
            "traffic is pickled Python objects, and without the secret anyone who reaches "
            "the Raft port can run code in this process; set KAFLOW_CLUSTER_SECRET (or "
            "--cluster-secret, or cluster-secret in the --config file) to the same value "
            "on every member",
            peers=list(config.peers),
        )
    if config.cluster_secret and importlib.util.find_spec("cryptography") is None:
        raise InvalidConfigError(
            "cluster_secret needs the 'cryptography' package to encrypt Raft traffic; "
            "install it with pip install cryptography"
        )
    if config.max_request_bytes < 1 or config.request_timeout_ms < 1:
        raise InvalidConfigError(
            "max_request_bytes and request_timeout_ms must be positive",
            max_request_bytes=config.max_request_bytes,
            request_timeout_ms=config.request_timeout_ms,
        )


def raft_settings(config: NodeConfig) -> RaftSettings:
    # A single produce request may exceed the group commit cap and then goes alone.
    largest_request = max(config.max_request_bytes, DEFAULT_MAX_COMMAND_BYTES)
    return RaftSettings(
        self_address=config.raft_address,
        peers=tuple(config.peers),
        raft_dir=config.data_dir / RAFT_DIR,
        password=config.cluster_secret,
        request_timeout_s=config.request_timeout_ms / 1000,
        fsync=config.fsync is FsyncPolicy.ALWAYS,
        max_command_bytes=largest_request + _COMMAND_FRAMING_BYTES,
        compaction_bytes=config.raft_compaction_bytes,
        compaction_entries=config.raft_compaction_entries,
    )


class Replica:
    """Partition logs, state machine, Raft member, group commit and retention of one node."""

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.waiters = PartitionWaiters()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._logs: LogManager | None = None
        self._state: StateMachine | None = None
        self._backfill: BackfillTask | None = None
        self._repair: DamageRepair | None = None
        self._raft: RaftNode | None = None
        self._proposer: GroupCommitProposer | None = None
        self._retention: RetentionTask | None = None
        self._started = False
        self._stopping = False
        self._stopped = asyncio.Event()
        self._stop_task: asyncio.Task[None] | None = None
        self.failure: BaseException | None = None

    # Lifecycle.

    async def start(self) -> None:
        """Open the partition logs and start the Raft member; see Node.start."""
        if self._started:
            raise RuntimeError("a node can be started only once")
        self._started = True
        check_node_config(self.config)
        config = self.config
        loop = asyncio.get_running_loop()
        self._loop = loop

        config.data_dir.mkdir(parents=True, exist_ok=True)
        # A cluster member cuts a log before a damaged segment and copies the rest from a peer.
        logs = LogManager(
            config.data_dir, max_open_files=config.max_open_files, cut_damaged=bool(config.peers)
        )
        self._logs = logs
        await loop.run_in_executor(None, logs.open_existing)

        # Only a cluster has peers to copy missing records from.
        gaps = GapTracker(enabled=bool(config.peers))
        state = StateMachine(logs, gaps)
        backfill = BackfillTask(
            state,
            logs,
            gaps,
            registry_peer_urls(state, config.raft_address),
            PeerClient(timeout_s=config.request_timeout_ms / 1000),
        )
        gaps.on_opened = backfill.wake_threadsafe
        backfill.start()
        self._backfill = backfill
        state.on_partitions_changed = self._on_partitions_changed
        state.on_failure = self._on_state_failure
        self._state = state

        raft = RaftNode(raft_settings(config), state, loop)
        try:
            raft.start()
        except BaseException:
            await backfill.stop()
            await loop.run_in_executor(None, logs.close)
            self._stopped.set()
            raise
        self._raft = raft
        self._repair = DamageRepair(state, logs, gaps, raft.wait_ready)
        self._repair.start()
        self._proposer = GroupCommitProposer(raft.propose, DEFAULT_MAX_COMMAND_BYTES)
        self._retention = RetentionTask(
            state, logs, raft, config.retention_check_interval_ms / 1000
        )
        self._retention.start()
        logger.info(
            "node started node_id=%s http=%s raft=%s peers=%s data_dir=%s fsync=%s",
            config.node_id,
            config.http_address,
            config.raft_address,
            ",".join(config.peers) or "-",
            config.data_dir,
            config.fsync.value,
        )

    async def wait_ready(self) -> None:
        """Wait until Raft has a leader and the log is replayed; see Node.wait_ready."""
        raft = self.raft
        ready = asyncio.ensure_future(raft.wait_ready())
        stopped = asyncio.ensure_future(self._stopped.wait())
        try:
            await asyncio.wait({ready, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
            stopped.cancel()
        if self.failure is not None:
            raise self.failure_error()
        if self._stopped.is_set() or self._stopping:
            raise NotReadyError("the node stopped before it became ready")

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    def is_ready(self) -> bool:
        return (
            self._raft is not None
            and not self._stopping
            and self.failure is None
            and self._raft.is_ready()
        )

    async def stop(self) -> None:
        """Stop retention, group commit and Raft, then flush and close the partition logs."""
        if not self._started or self._stopped.is_set():
            return
        if self._stopping:
            await self._stopped.wait()
            return
        self._stopping = True
        try:
            if self._retention is not None:
                await self._retention.stop()
            if self._repair is not None:
                await self._repair.stop()
            if self._backfill is not None:
                await self._backfill.stop()
            if self._proposer is not None:
                self._proposer.close(NotReadyError("the node is stopping; retry later"))
            self.waiters.wake_all()
            if self._raft is not None:
                await self._raft.stop()
            if self._logs is not None:
                await self._close_logs(self._logs)
        finally:
            self._stopped.set()
            logger.info("node stopped node_id=%s", self.config.node_id)

    async def _close_logs(self, logs: LogManager) -> None:
        loop = asyncio.get_running_loop()
        fsync = self.config.fsync is FsyncPolicy.ALWAYS and self.failure is None
        try:
            await loop.run_in_executor(None, logs.flush_all, fsync)
        except (KaflowError, OSError) as exc:
            logger.error(
                "flushing the partition logs failed while stopping; records written since the "
                "last snapshot are replayed from the Raft log at the next start: %s",
                exc,
            )
        await loop.run_in_executor(None, logs.close)

    # Failure handling.

    def _on_partitions_changed(self, keys: list[tuple[str, int]]) -> None:
        # Runs on the Raft apply thread.
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed
                loop.call_soon_threadsafe(self.waiters.wake, keys)

    def _on_state_failure(self, exc: BaseException) -> None:
        # Runs on the Raft apply thread.
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._fail, exc)

    def _fail(self, exc: BaseException) -> None:
        if self.failure is not None:
            return
        self.failure = exc
        logger.error(
            "node %s is stopping because its data may be inconsistent with the Raft log: %s; "
            "fix the data directory and restart the node",
            self.config.node_id,
            exc,
        )
        self._stop_task = asyncio.get_running_loop().create_task(self.stop())

    def failure_error(self) -> StorageError:
        return StorageError(
            f"node {self.config.node_id} stopped after a storage failure: {self.failure}; "
            "restart it after fixing the data directory"
        )

    # Access for the Broker methods.

    def check_ready(self) -> tuple[StateMachine, LogManager]:
        """Return the state machine and logs; raise NotReadyError or the failure otherwise."""
        if self.failure is not None:
            raise self.failure_error()
        if not self.is_ready() or self._state is None or self._logs is None:
            raise NotReadyError(
                f"node {self.config.node_id} is not ready (starting, replaying its log, "
                "waiting for a Raft leader, or stopping); retry shortly"
            )
        return self._state, self._logs

    @property
    def raft(self) -> RaftNode:
        if self._raft is None:
            raise NotReadyError("the node has not started; retry once it is running")
        return self._raft

    @property
    def proposer(self) -> GroupCommitProposer:
        if self._proposer is None:
            raise NotReadyError("the node has not started; retry once it is running")
        return self._proposer

    @property
    def retention(self) -> RetentionTask | None:
        return self._retention

    @property
    def backfill(self) -> BackfillTask | None:
        """The task that copies records this node missed from its peers."""
        return self._backfill

    @property
    def repair(self) -> DamageRepair | None:
        """The task that verifies partition logs and copies damaged ranges again."""
        return self._repair

    @property
    def logs(self) -> LogManager | None:
        return self._logs

    async def propose(self, command: bytes) -> CommandResult:
        return await self.raft.propose(command)

    def raft_status(self) -> RaftStatus | None:
        return self._raft.status() if self._raft is not None else None
