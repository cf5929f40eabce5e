"""Membership changes and leadership transfer on PySyncObj 0.3.17, typed for the event loop.

:class:`RaftAdmin` wraps ``addNodeToCluster``, ``removeNodeFromCluster``
and ``transferLeadership``. Each call returns once PySyncObj reported an
outcome through its callback, with FAIL_REASON codes turned into Kaflow
errors. It does not serialize changes: PySyncObj's own guard against a
second change before the first one is committed never fires (its
``__changeClusterIDx`` is never assigned), so kaflow.cluster.membership runs
one change at a time.

``transferLeadership`` reads and writes Raft state without a lock, so it is
queued and run on the tick thread between two ticks (:meth:`run_tick_jobs`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
from collections.abc import Callable
from typing import Any

from pysyncobj import FAIL_REASON

from kaflow.errors import KaflowError, NotReadyError, RequestTimedOutError, RetriableError

__all__ = ["PARTNER_STATUS_PREFIX", "RaftAdmin", "current_peers", "snapshot_members"]

logger = logging.getLogger(__name__)

# getStatus() reports each current member under this prefix followed by its Raft address.
PARTNER_STATUS_PREFIX = "partner_node_status_server_"

TickJob = Callable[[Any], None]


def current_peers(status: dict[str, Any]) -> list[str]:
    """Return the Raft addresses of the other current members from a getStatus() dict.

    Membership changes move this set away from the peers the node was
    started with, and after a restart the snapshot's member list wins.
    """
    return sorted(
        key.removeprefix(PARTNER_STATUS_PREFIX)
        for key in status
        if key.startswith(PARTNER_STATUS_PREFIX)
    )


class RaftAdmin:
    """Membership changes and leadership transfer of one running PySyncObj member."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        member: Callable[[], Any],
        timeout_s: float,
        translate_failure: Callable[[int], KaflowError],
    ) -> None:
        # ``member`` returns the running SyncObj, or None while stopped.
        self._loop = loop
        self._member = member
        self._timeout_s = timeout_s
        self._translate_failure = translate_failure
        self._tick_jobs: queue.SimpleQueue[TickJob] = queue.SimpleQueue()

    async def change_membership(self, action: str, address: str) -> None:
        """Add (``action`` "add") or remove ("remove") the member at Raft ``address``.

        Returns once this member applied the change. Raises NotLeaderError,
        LeaderNotAvailableError or UnknownOutcomeError as a proposal does.
        Raises RetriableError with reason ``request_denied`` when the leader
        denies the change, because it has not committed an entry of its term
        yet or the member is already in (add) or not in (remove) the cluster.
        """
        obj = self._require_member()
        future, callback = self._future_and_callback()
        if action == "add":
            obj.addNodeToCluster(address, callback=callback)
        elif action == "remove":
            obj.removeNodeFromCluster(address, callback=callback)
        else:
            raise ValueError(f"unknown membership action {action!r}")
        await self._outcome(future, f"{action} of member {address}")
        logger.info("raft membership changed action=%s member=%s", action, address)

    async def transfer_leadership(self, address: str | None) -> None:
        """Ask this leader to hand leadership to ``address``, or to the most caught-up member.

        Success means only that the target was sent a request to start an election;
        the caller polls the status for the new leader. PySyncObj denies the
        request (RetriableError, reason ``request_denied``) while the
        target's match index is below the leader's last log index.
        """
        self._require_member()
        future, callback = self._future_and_callback()
        self._tick_jobs.put(lambda obj: obj.transferLeadership(address, callback))
        await self._outcome(future, "leadership transfer")

    def run_tick_jobs(self, obj: Any) -> None:
        """Run the queued jobs; called on the tick thread."""
        while True:
            try:
                job = self._tick_jobs.get_nowait()
            except queue.Empty:
                return
            try:
                job(obj)
            except Exception:  # a raising job must not abort the tick
                logger.exception("raft admin job failed on the tick thread")

    def _require_member(self) -> Any:
        obj = self._member()
        if obj is None:
            raise NotReadyError("the node is not running; retry once it has started")
        return obj

    def _future_and_callback(self) -> tuple[asyncio.Future[int], Callable[[Any, int], None]]:
        loop = self._loop
        future: asyncio.Future[int] = loop.create_future()

        def on_result(_result: Any, reason: int) -> None:
            # Runs on the tick thread; it must not raise.
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                loop.call_soon_threadsafe(_settle, future, reason)

        return future, on_result

    async def _outcome(self, future: asyncio.Future[int], what: str) -> None:
        try:
            # asyncio.timeout, not wait_for, so a cancellation is never swallowed.
            async with asyncio.timeout(self._timeout_s):
                reason = await future
        except TimeoutError:
            raise RequestTimedOutError(
                f"the {what} got no response within {self._timeout_s * 1000:.0f} ms; check "
                "GET /v1/cluster before trying again",
                timeout_ms=round(self._timeout_s * 1000),
            ) from None
        if reason == FAIL_REASON.SUCCESS:
            return
        if reason == FAIL_REASON.REQUEST_DENIED:
            raise RetriableError(
                f"the Raft leader denied the {what}: it has not committed an entry of its "
                "term yet, the membership already has that state, or the target lags "
                "behind; check GET /v1/cluster and retry",
                reason="request_denied",
            )
        raise self._translate_failure(reason)


def _settle(future: asyncio.Future[int], reason: int) -> None:
    if not future.done():
        future.set_result(reason)


def snapshot_members(
    stored: list[str], self_address: str, configured_peers: tuple[str, ...]
) -> list[str]:
    """Return the Raft addresses to restore from a snapshot's member list.

    With dynamic membership PySyncObj restores the members stored in the
    snapshot and ignores the configured peers. A stored list without this
    node's address was written before its Raft address changed. For a
    one-member cluster started without peers, the stored address is this
    node's old one: restoring it would add a second member that never
    responds, so no quorum and no leader. That list becomes this address.
    """
    if self_address in stored:
        return stored
    if len(stored) == 1 and not configured_peers:
        logger.warning(
            "snapshot member %s replaced by this node's new Raft address %s",
            stored[0],
            self_address,
        )
        return [self_address]
    logger.warning(
        "snapshot members %s do not include this node's Raft address %s; remove the old "
        "address with kaflow cluster remove-node",
        ",".join(stored),
        self_address,
    )
    return stored
