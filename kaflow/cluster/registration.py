"""Keep this node's member registry entry current.

Once the node is ready, :class:`MemberRegistration` proposes a
``register_member`` command whenever the replicated registry lacks this
node's entry or contains a different node id or HTTP URL for its Raft address:
at first start, after the advertised URL changed, and after the node was
removed and added again. It checks again every second, so an entry lost in
any other way also comes back. A proposal that fails is retried; the first
failure of a run logs one WARNING and the success after it one INFO line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from kaflow.cluster.registry import MemberInfo
from kaflow.config import NodeConfig
from kaflow.errors import KaflowError
from kaflow.replication.commands import RegisterMember, encode_command
from kaflow.replication.replica import Replica

__all__ = ["MemberRegistration"]

logger = logging.getLogger(__name__)

# Seconds between two checks of the registry entry.
_CHECK_INTERVAL_S = 1.0
# Seconds between retries after a failed proposal.
_RETRY_INTERVAL_S = 0.5


class MemberRegistration:
    """A background task that registers this node in the replicated member registry."""

    def __init__(self, config: NodeConfig, replica: Replica) -> None:
        self._config = config
        self._replica = replica
        self._task: asyncio.Task[None] | None = None
        self.registered = asyncio.Event()

    @property
    def entry(self) -> MemberInfo:
        """The entry this node wants in the registry."""
        config = self._config
        return MemberInfo(config.raft_address, config.node_id, config.advertised_http_url)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="member-registration")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        try:
            await self._replica.wait_ready()
        except KaflowError:
            return  # the node stopped before it became ready
        failing = False
        while True:
            try:
                registered = await self._register_if_missing()
            except KaflowError as exc:
                if not failing:
                    failing = True
                    logger.warning(
                        "member registration failed, retrying node_id=%s error=%s: %s",
                        self._config.node_id,
                        exc.code,
                        exc.message,
                    )
                await asyncio.sleep(_RETRY_INTERVAL_S)
                continue
            if failing:
                failing = False
                logger.info("member registration succeeded node_id=%s", self._config.node_id)
            if registered:
                self.registered.set()
            await asyncio.sleep(_CHECK_INTERVAL_S)

    async def _register_if_missing(self) -> bool:
        """Propose this node's entry if the registry lacks it; return True once it is there."""
        state, _ = self._replica.check_ready()
        entry = self.entry
        if state.members().get(entry.raft_address) == entry:
            return True
        result = await self._replica.propose(
            encode_command(RegisterMember(entry.node_id, entry.raft_address, entry.http_url))
        )
        result.raise_for_rejection()
        return state.members().get(entry.raft_address) == entry
