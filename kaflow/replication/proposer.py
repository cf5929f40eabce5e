"""Group commit: coalesce concurrent produce requests into few Raft commands.

Each Raft command costs a commit round however small it is: a PySyncObj
tick on one node, a network round trip in a cluster. The proposer keeps at
most one append command in flight. A request that arrives while nothing is
in flight is proposed at once, so an idle node adds no latency. Requests
that arrive while a command is in flight wait and go out together in the
next command. Throughput therefore rises with load, because the busier the
node, the more requests share one commit.

A command contains whole requests and stops growing at ``max_command_bytes``
of batches. A single request larger than that goes alone. Every request gets
back the outcome of its own items, in the order it sent them.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from kaflow.replication.commands import Append, AppendItem, encode_command
from kaflow.replication.results import AppendedBatch, CommandResult, Rejection

__all__ = ["DEFAULT_MAX_COMMAND_BYTES", "GroupCommitProposer", "ProposerStats"]

logger = logging.getLogger(__name__)

DEFAULT_MAX_COMMAND_BYTES = 1024 * 1024

ProposeFunction = Callable[[bytes], Awaitable[CommandResult]]


@dataclass(slots=True)
class ProposerStats:
    """Counters for tests and status pages."""

    requests: int = 0
    commands: int = 0
    largest_command_requests: int = 0


@dataclass(slots=True)
class _Request:
    items: list[AppendItem]
    size: int
    future: asyncio.Future[list[AppendedBatch | Rejection]]


class GroupCommitProposer:
    """Batches append requests from one event loop into Raft commands."""

    def __init__(
        self, propose: ProposeFunction, max_command_bytes: int = DEFAULT_MAX_COMMAND_BYTES
    ) -> None:
        if max_command_bytes < 1:
            raise ValueError(f"max_command_bytes must be at least 1, got {max_command_bytes}")
        self._propose = propose
        self._max_command_bytes = max_command_bytes
        self._pending: deque[_Request] = deque()
        self._in_flight: asyncio.Task[None] | None = None
        self._closed = False
        self.stats = ProposerStats()

    async def append(self, items: list[AppendItem]) -> list[AppendedBatch | Rejection]:
        """Commit ``items`` through Raft and return one outcome per item, in order.

        Raises whatever the propose function raised for the command that
        carried these items (a timeout, a lost leader, an unknown outcome).
        """
        if self._closed:
            raise RuntimeError("the proposer is closed")
        if not items:
            return []
        loop = asyncio.get_running_loop()
        request = _Request(items, sum(len(item.batch) for item in items), loop.create_future())
        self._pending.append(request)
        self.stats.requests += 1
        if self._in_flight is None:
            self._start_next()
        return await request.future

    def close(self, error: BaseException) -> None:
        """Fail every request that has not been proposed yet with ``error``."""
        self._closed = True
        while self._pending:
            request = self._pending.popleft()
            if not request.future.done():
                request.future.set_exception(error)

    def _take_command(self) -> list[_Request]:
        taken: list[_Request] = []
        size = 0
        while self._pending:
            request = self._pending[0]
            if request.future.done():
                # The caller gave up (cancelled) before its request was proposed.
                self._pending.popleft()
                continue
            if taken and size + request.size > self._max_command_bytes:
                break
            taken.append(self._pending.popleft())
            size += request.size
        return taken

    def _start_next(self) -> None:
        requests = self._take_command()
        if not requests:
            self._in_flight = None
            return
        self.stats.commands += 1
        self.stats.largest_command_requests = max(
            self.stats.largest_command_requests, len(requests)
        )
        self._in_flight = asyncio.get_running_loop().create_task(self._run(requests))

    async def _run(self, requests: list[_Request]) -> None:
        items = [item for request in requests for item in request.items]
        try:
            result = await self._propose(encode_command(Append(items)))
        except BaseException as exc:
            for request in requests:
                if not request.future.done():
                    request.future.set_exception(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
        else:
            self._deliver(requests, result)
        finally:
            self._start_next()

    def _deliver(self, requests: list[_Request], result: CommandResult) -> None:
        if result.rejection is not None:
            error = result.rejection.to_error()
            for request in requests:
                if not request.future.done():
                    request.future.set_exception(error)
            return

        position = 0
        for request in requests:
            outcomes = list(result.appended[position : position + len(request.items)])
            position += len(request.items)
            if not request.future.done():
                request.future.set_result(outcomes)
