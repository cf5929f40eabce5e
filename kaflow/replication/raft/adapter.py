"""The typed adapter around PySyncObj 0.3.17: :class:`RaftNode`, one Raft member.

Its log carries opaque ``bytes`` commands (see kaflow.replication.commands);
every member applies them to its
:class:`~kaflow.replication.state_machine.StateMachine` on PySyncObj's tick
thread. Callbacks from that thread reach asyncio only through
``loop.call_soon_threadsafe``, and PySyncObj's FAIL_REASON codes become
Kaflow errors here.

Files under the Raft directory:

``journal/``        the Raft log since the last snapshot, term, vote and commit
                    index (kaflow.replication.journal.RaftJournal)
``snapshot``        the last snapshot (kaflow.replication.snapshot), written at log compaction

The log is compacted when it passes ``compaction_entries`` entries,
``compaction_bytes`` of commands, or five minutes since the last compaction,
whichever comes first.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pysyncobj.syncobj
from pysyncobj import FAIL_REASON
from pysyncobj.node import TCPNode

from kaflow.broker import RaftRole
from kaflow.config import FsyncPolicy
from kaflow.errors import (
    InternalError,
    InvalidConfigError,
    KaflowError,
    LeaderNotAvailableError,
    NotLeaderError,
    NotReadyError,
    RequestTimedOutError,
    RequestTooLargeError,
    RetriableError,
    StorageError,
    UnknownOutcomeError,
)
from kaflow.replication.journal import RaftJournal
from kaflow.replication.raft.admin import RaftAdmin, current_peers, snapshot_members
from kaflow.replication.raft.journal_files import JOURNAL_NAME, open_journal
from kaflow.replication.raft.member import MemberSyncObj
from kaflow.replication.raft.patches import install_patches
from kaflow.replication.raft.tuning import RaftTuning, build_conf
from kaflow.replication.raft_types import RaftSettings, RaftStatus
from kaflow.replication.results import CommandResult, Rejection
from kaflow.replication.snapshot_store import Entry, SnapshotStore
from kaflow.replication.state_machine import StateMachine
from kaflow.storage.space import SpaceGuard

__all__ = ["RaftNode"]

logger = logging.getLogger(__name__)

SNAPSHOT_FILE = "snapshot"
_STATUS_INTERVAL_S = 0.1

# Serializes construction, because the journal hook swaps a PySyncObj module global.
_CONSTRUCTION_LOCK = threading.Lock()

_ROLES = {0: RaftRole.FOLLOWER, 1: RaftRole.CANDIDATE, 2: RaftRole.LEADER}


def _translate_failure(reason: int) -> KaflowError:
    if reason == FAIL_REASON.QUEUE_FULL:
        return RetriableError(
            "the Raft command queue is full; retry after a short wait", reason="queue_full"
        )
    if reason == FAIL_REASON.MISSING_LEADER:
        return LeaderNotAvailableError("no Raft leader is known; retry after the election")
    if reason == FAIL_REASON.NOT_LEADER:
        return NotLeaderError("the command reached a member that is no longer the Raft leader")
    if reason in (FAIL_REASON.LEADER_CHANGED, FAIL_REASON.DISCARDED, FAIL_REASON.UNKNOWN_OUTCOME):
        return UnknownOutcomeError(
            "the Raft leader changed while the command was pending, so it may or may not "
            "have been committed; retry only if the write is idempotent",
            reason=reason,
        )
    return InternalError(f"Raft rejected the command with failure reason {reason}", reason=reason)


def _check_settings(settings: RaftSettings) -> None:
    # Raft messages are pickled Python objects: without the password anyone who reaches
    # the Raft port can run code in this process.
    if settings.peers and not settings.password:
        raise InvalidConfigError(
            f"a Raft member with peers ({', '.join(settings.peers)}) needs a cluster secret, "
            "because Raft traffic is pickled Python objects and anyone who reaches the Raft "
            "port could run code in this process; set the same cluster secret on every node",
            peers=list(settings.peers),
        )
    if settings.password and importlib.util.find_spec("cryptography") is None:
        raise InvalidConfigError(
            "the cluster secret needs the 'cryptography' package to encrypt Raft traffic; "
            "install it with pip install cryptography"
        )


class RaftNode:
    """One Raft member: proposes commands and applies committed ones to the state machine."""

    def __init__(
        self,
        settings: RaftSettings,
        state_machine: StateMachine,
        loop: asyncio.AbstractEventLoop,
        tuning: RaftTuning | None = None,
    ) -> None:
        self._settings = settings
        self._tuning = tuning or RaftTuning()
        self._state_machine = state_machine
        self._loop = loop
        self._obj: MemberSyncObj | None = None
        self._journal: RaftJournal | None = None
        # Raft index of the journal's last entry when it was opened; -1 when empty.
        self._start_last_index = -1
        self._snapshots: SnapshotStore | None = None
        self._stopping = False
        self._ready = asyncio.Event()
        self._pending: set[asyncio.Future[tuple[Any, int]]] = set()

        # Tick-thread bookkeeping.
        self._leader_seen: tuple[str | None, int] | None = None
        self._bytes_since_snapshot = 0
        self._compaction_requested = False
        self._snapshot_written = False
        self._status_at = 0.0
        self._status: RaftStatus | None = None
        # Shared by the event loop (compact) and the tick thread (after each snapshot).
        self._snapshot_waiters: list[tuple[int, asyncio.Future[int]]] = []
        self._snapshot_waiters_lock = threading.Lock()
        # Membership changes and leadership transfer (kaflow.cluster.membership uses them).
        self.admin = RaftAdmin(
            loop,
            lambda: None if self._stopping else self._obj,
            settings.request_timeout_s,
            _translate_failure,
        )

    @property
    def journal_path(self) -> Path:
        return self._settings.raft_dir / JOURNAL_NAME

    @property
    def snapshot_path(self) -> Path:
        return self._settings.raft_dir / SNAPSHOT_FILE

    @property
    def journal(self) -> RaftJournal | None:
        """The open Raft journal, for statistics; None before start and after stop."""
        return self._journal

    @property
    def snapshot_index(self) -> int:
        """Raft index of the last snapshot written or loaded; 0 before the first one."""
        return self._snapshots.index if self._snapshots is not None else 0

    @property
    def failure(self) -> BaseException | None:
        """The storage failure that stopped this member, or None."""
        return self._state_machine.failure

    def is_ready(self) -> bool:
        return self._ready.is_set() and self.failure is None and not self._stopping

    # Start and stop.

    def start(self) -> None:
        """Open the journal, reconcile storage when there is no snapshot, and start Raft.

        Must run on the event loop's thread: PySyncObj's tick thread stops
        when the thread that created it ends. Raises InvalidConfigError for
        peers without a cluster secret or an address that cannot be bound,
        StorageError for an unusable Raft directory, and InternalError for a
        PySyncObj release other than 0.3.17.
        """
        install_patches()
        _check_settings(self._settings)
        _create_raft_dir(self._settings.raft_dir, durable=self._settings.fsync)
        policy = FsyncPolicy.ALWAYS if self._settings.fsync else FsyncPolicy.NEVER
        # Entries already in the journal need about their own size again in the
        # partition logs, so the journal stops taking entries one command early.
        space = SpaceGuard(
            self._settings.raft_dir,
            self._settings.max_command_bytes,
            purpose="Raft journal entries",
        )
        journal = open_journal(self._settings.raft_dir, policy, space)
        self._journal = journal
        self._start_last_index = journal[-1][1] if len(journal) else -1
        self._snapshots = SnapshotStore(
            self._state_machine, journal, self.snapshot_path, self._settings.fsync
        )
        try:
            self._snapshots.prepare()
            conf = build_conf(
                self._settings,
                self._tuning,
                self._serialize,
                self._deserialize,
                self.snapshot_path,
            )
            with _CONSTRUCTION_LOCK:
                original = pysyncobj.syncobj.createJournal
                pysyncobj.syncobj.createJournal = lambda _path: journal
                try:
                    self._obj = MemberSyncObj(
                        self._settings.self_address,
                        list(self._settings.peers),
                        conf,
                        journal,
                        self.apply,
                        self._before_tick,
                        self._on_journal_failure,
                    )
                finally:
                    pysyncobj.syncobj.createJournal = original
        except BaseException:
            if self._obj is None:
                journal.close()
                self._journal = None
            raise
        self._obj.addOnTickCallback(self._on_tick)
        if not self._obj.tick_thread_alive():
            # The tick thread exits when binding fails, so it cannot run the clean-up.
            self._obj._doDestroy()
            self._obj = None
            self._journal = None
            raise InvalidConfigError(
                f"cannot bind the Raft address {self._settings.self_address}; choose a free "
                "raft port or stop the process that holds it",
                raft_address=self._settings.self_address,
            )
        logger.info(
            "raft started address=%s peers=%s dir=%s fsync=%s",
            self._settings.self_address,
            ",".join(self._settings.peers) or "-",
            self._settings.raft_dir,
            policy.value,
        )

    async def stop(self) -> None:
        """Stop the tick thread, close the journal and fail commands still pending."""
        self._stopping = True
        self._state_machine.cancel_space_waits()
        obj = self._obj
        if obj is not None:
            obj.removeOnTickCallback(self._on_tick)
            # Destroying the SyncObj closes the journal.
            await self._loop.run_in_executor(None, obj.destroy_synchronous)
            self._obj = None
            self._journal = None
        error = UnknownOutcomeError(
            "the node stopped before the command's outcome was known; retry only if the "
            "write is idempotent"
        )
        for future in list(self._pending):
            if not future.done():
                future.set_exception(error)
        with self._snapshot_waiters_lock:
            waiters, self._snapshot_waiters = self._snapshot_waiters, []
        for _, waiter in waiters:
            if not waiter.done():
                waiter.set_exception(NotReadyError("the node stopped before the snapshot"))
        logger.info("raft stopped address=%s", self._settings.self_address)

    def _caught_up(self, obj: MemberSyncObj) -> bool:
        """True once this member has applied every entry it may have applied before it stopped.

        The journal stores the commit index about once a second, and PySyncObj
        reports ready once that stored index is applied. After a crash that
        would serve reads older than the ones this member served before. An
        applied entry of the current term shows that the current leader's
        committed log, which contains every committed entry, has been applied.
        """
        applied = int(obj.raftLastApplied)
        if applied >= self._start_last_index:
            return True
        journal = self._journal
        if journal is None or not len(journal):
            return False
        position = applied - journal[0][1]
        if not 0 <= position < len(journal):
            return False
        return bool(journal[position][2] == obj.raftCurrentTerm)

    async def wait_ready(self) -> None:
        """Wait until this member has a leader and has applied the log it started with."""
        await self._ready.wait()

    # Proposals, from the event loop.

    async def propose(self, command: bytes) -> CommandResult:
        """Replicate ``command`` and return its result once this member applied it.

        Raises RequestTimedOutError when no outcome arrives within the
        request timeout. That covers a command forwarded to the leader whose
        reply was lost: PySyncObj drops such a callback only on a leader
        change, so without the timeout the caller would wait forever.
        """
        obj = self._obj
        if obj is None or self._stopping:
            raise NotReadyError("the node is not running; retry once it has started")
        if self.failure is not None:
            raise StorageError(f"the node stopped applying commands: {self.failure}")
        if len(command) > self._settings.max_command_bytes:
            raise RequestTooLargeError(
                f"the request encodes to a {len(command)}-byte Raft command, more than the "
                f"limit of {self._settings.max_command_bytes}; split it into smaller requests",
                size=len(command),
                max_size=self._settings.max_command_bytes,
            )

        future: asyncio.Future[tuple[Any, int]] = self._loop.create_future()
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)
        obj.apply_command(command, callback=self._callback_for(future))

        timeout_s = self._settings.request_timeout_s
        try:
            # Not asyncio.wait_for: on Python 3.11 it drops a cancellation that arrives
            # after the future settled, and a cancelled caller would then carry on.
            async with asyncio.timeout(timeout_s):
                result, reason = await future
        except TimeoutError:
            # NOTE: PySyncObj keeps the callback of a forwarded command whose reply was
            # lost until the next leader change; it only settles an abandoned future.
            raise RequestTimedOutError(
                f"the command was not committed within {timeout_s * 1000:.0f} ms; it may "
                "still be applied later, so retry only if the write is idempotent",
                timeout_ms=round(timeout_s * 1000),
            ) from None
        if reason != FAIL_REASON.SUCCESS:
            raise _translate_failure(reason)
        if not isinstance(result, CommandResult):
            raise InternalError(f"apply returned {result!r} instead of a command result")
        return result

    def _callback_for(self, future: asyncio.Future[tuple[Any, int]]) -> Callable[[Any, int], None]:
        loop = self._loop

        def on_result(result: Any, reason: int) -> None:
            # Runs on the tick thread (on the caller's thread for QUEUE_FULL). It must not
            # raise: PySyncObj would then apply the same entry again on the next tick.
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                loop.call_soon_threadsafe(_settle, future, (result, reason))

        return on_result

    # Tick thread.

    def apply(self, obj: MemberSyncObj, command: bytes, index: int) -> CommandResult:
        """Apply one committed command; called by PySyncObj on the tick thread."""
        try:
            result = self._state_machine.apply(command, index)
        except BaseException as exc:  # PySyncObj would retry a raising entry forever
            logger.exception("state machine raised while applying index=%d", index)
            return CommandResult(Rejection.of(InternalError(f"apply failed: {exc}")))

        self._bytes_since_snapshot += len(command)
        over_limit = self._bytes_since_snapshot >= self._settings.compaction_bytes
        if self._snapshots is not None and self._snapshots.compaction_due(index):
            # Drops the placeholder entries an installed snapshot left in the journal.
            obj.forceLogCompaction()
        if over_limit and not self._compaction_requested:
            self._compaction_requested = True
            obj.forceLogCompaction()
        return result

    def _serialize(self, tmp_path: str, data: tuple[Entry, Entry, Any]) -> None:
        last, prev, members = data
        assert self._snapshots is not None
        self._snapshots.write(tmp_path, last, prev, [node.address for node in members])
        self._snapshot_written = True
        self._bytes_since_snapshot = 0
        self._compaction_requested = False

    def _deserialize(self, path: str) -> tuple[Entry, Entry, set[Any]]:
        assert self._snapshots is not None
        last, prev, members = self._snapshots.load(path)
        members = snapshot_members(list(members), self._settings.self_address, self._settings.peers)
        return last, prev, {TCPNode(address) for address in members}

    def _before_tick(self) -> None:
        # Called by MemberSyncObj._onTick after the journal sync.
        if self._snapshot_written and self._snapshots is not None:
            # PySyncObj renamed the new snapshot file into place during the last tick,
            # and compacts the journal in this one. The rename must be durable first,
            # or a power loss could leave the old snapshot with a compacted journal.
            self._snapshot_written = False
            self._snapshots.fsync_directory()

    def _on_tick(self) -> None:
        obj = self._obj
        if obj is None:
            return
        leader_node = obj._getLeader()
        leader = leader_node.address if leader_node is not None else None
        term = obj.raftCurrentTerm
        changed = (leader, term) != self._leader_seen
        if changed:
            known_before = self._leader_seen is not None and self._leader_seen[0] is not None
            self._leader_seen = (leader, term)
            if leader is None:
                if known_before:
                    logger.info("raft leader lost term=%d", term)
            else:
                local = leader == self._settings.self_address
                logger.info("raft leader elected leader=%s term=%d local=%s", leader, term, local)

        becomes_ready = (
            not self._ready.is_set()
            and obj.isReady()
            and leader is not None
            and self._caught_up(obj)
        )
        now = time.monotonic()
        if changed or becomes_ready or now - self._status_at >= _STATUS_INTERVAL_S:
            self._status_at = now
            self._status = self._collect_status(obj)
        if becomes_ready:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._ready.set)
        self._wake_snapshot_waiters()
        self.admin.run_tick_jobs(obj)

    def _on_journal_failure(self, exc: StorageError) -> None:
        # Halting makes the node stop itself instead of lingering as a member that
        # never acknowledges. halt() logs once and ignores later calls.
        self._state_machine.halt(
            StorageError(
                f"the Raft journal failed to write or fsync ({exc.message}); restart the "
                "node, which recovers the journal from its files",
            )
        )

    def _collect_status(self, obj: MemberSyncObj) -> RaftStatus:
        status = obj.getStatus()
        leader = status.get("leader")
        peers = current_peers(status)
        peers_connected = {
            address: status.get(f"partner_node_status_server_{address}") == 2 for address in peers
        }
        match_index = {
            address: int(status[f"match_idx_server_{address}"])
            for address in peers
            if f"match_idx_server_{address}" in status
        }
        return RaftStatus(
            role=_ROLES.get(status["state"], RaftRole.FOLLOWER),
            term=status["raft_term"],
            leader=leader.address if leader is not None else None,
            commit_index=status["commit_idx"],
            applied_index=status["last_applied"],
            ready=self.is_ready(),
            log_entries=status["log_len"],
            snapshot_index=self.snapshot_index,
            peers_connected=peers_connected,
            match_index=match_index,
        )

    # Status and compaction, from the event loop.

    def status(self) -> RaftStatus:
        """Return the latest status snapshot (at most 100 ms old while running)."""
        status = self._status
        if status is None:
            return RaftStatus(RaftRole.FOLLOWER, 0, None, 0, 0, False, 0, self.snapshot_index)
        return status

    @property
    def leader_address(self) -> str | None:
        return self._leader_seen[0] if self._leader_seen else None

    def is_leader(self) -> bool:
        obj = self._obj
        return obj is not None and bool(obj._isLeader())

    async def compact(self) -> int:
        """Take a snapshot now and return its Raft index once it is on disk."""
        obj = self._obj
        if obj is None or self._stopping:
            raise NotReadyError("the node is not running")
        target = obj.raftLastApplied
        if self.snapshot_index >= target:
            return self.snapshot_index
        waiter: asyncio.Future[int] = self._loop.create_future()
        with self._snapshot_waiters_lock:
            self._snapshot_waiters.append((target, waiter))
        obj.forceLogCompaction()
        timeout_s = self._settings.request_timeout_s
        try:
            async with asyncio.timeout(timeout_s):
                return await waiter
        except TimeoutError:
            raise RequestTimedOutError(
                f"no snapshot was written within {timeout_s * 1000:.0f} ms",
                timeout_ms=round(timeout_s * 1000),
            ) from None

    def _wake_snapshot_waiters(self) -> None:
        index = self.snapshot_index
        with self._snapshot_waiters_lock:
            if not self._snapshot_waiters:
                return
            done = [waiter for target, waiter in self._snapshot_waiters if target <= index]
            self._snapshot_waiters = [
                (target, waiter) for target, waiter in self._snapshot_waiters if target > index
            ]
        for waiter in done:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(_settle, waiter, index)


def _settle(future: asyncio.Future[Any], value: Any) -> None:
    # A timeout or a cancelled caller may have cancelled the future.
    if not future.done():
        future.set_result(value)


def _create_raft_dir(raft_dir: Path, *, durable: bool) -> None:
    """Create ``raft_dir`` if missing, and fsync its parent so the new entry survives power loss.

    Without that fsync a power cut can drop the whole directory, journal
    included, although every entry in it was fsynced.
    """
    if raft_dir.is_dir():
        return
    try:
        raft_dir.mkdir(parents=True, exist_ok=True)
        if durable:
            parent_fd = os.open(raft_dir.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.fsync(parent_fd)
            finally:
                os.close(parent_fd)
    except OSError as exc:
        raise StorageError(
            f"failed to create the Raft directory {raft_dir}: {exc}; check the permissions "
            "and free space of the data directory",
            path=str(raft_dir),
        ) from exc
