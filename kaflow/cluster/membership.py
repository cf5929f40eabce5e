"""Runtime membership changes: add a member, remove a member, transfer leadership.

PySyncObj 0.3.17 applies a membership change when its log entry is
appended, and its guard against a second change before the first one is
committed never fires. :class:`MembershipManager` therefore runs one change
at a time (an asyncio lock) and returns only after the change's callback
reported it applied. Every change runs on the leader; the HTTP layer sends a
request that reaches a follower on to the leader (kaflow.cluster.forward).

A leader cannot remove itself, so removing the leader first hands
leadership to another member and then raises NotLeaderError. The HTTP layer
then forwards the request to the new leader.

PySyncObj denies ``transferLeadership`` while the target's match index is
below the leader's last log index, which under write load is most of the
time; the manager retries until the target catches up or the deadline
passes.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from dataclasses import dataclass

from kaflow.broker import RaftRole
from kaflow.cluster.registry import MemberInfo
from kaflow.config import NodeConfig
from kaflow.errors import (
    InvalidRequestError,
    KaflowError,
    LeaderNotAvailableError,
    MemberAlreadyExistsError,
    NotLeaderError,
    RequestTimedOutError,
    RetriableError,
    UnknownNodeError,
)
from kaflow.replication.commands import UnregisterMember, encode_command
from kaflow.replication.raft_types import RaftStatus
from kaflow.replication.replica import Replica

__all__ = ["DEFAULT_CHANGE_TIMEOUT_S", "MemberChange", "MembershipManager", "parse_raft_address"]

logger = logging.getLogger(__name__)

# How long one membership change or leadership transfer may take, retries included.
DEFAULT_CHANGE_TIMEOUT_S = 15.0
# Pause between retries of a denied change, in seconds.
_RETRY_INTERVAL_S = 0.05
# Maximum time in seconds a transfer waits for the target to win its election.
_ELECTION_WAIT_S = 3.0


@dataclass(frozen=True, slots=True)
class MemberChange:
    """The outcome of a membership change, as the HTTP API returns it."""

    action: str
    raft_address: str
    node_id: str | None
    # Raft addresses of every member after the change, this node included.
    members: tuple[str, ...]


def parse_raft_address(text: str) -> str:
    """Return ``text`` as canonical HOST:PORT (lower-case host, port without leading zeros).

    Raises InvalidRequestError unless ``text`` is HOST:PORT with a port in
    1..65535. The canonical form keeps "127.0.0.1:08093" from passing as a
    member other than "127.0.0.1:8093".
    """
    host, separator, port_text = text.rpartition(":")
    if not separator or not host or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise InvalidRequestError(
            f"invalid Raft address {text!r}: expected HOST:PORT with a port in 1..65535, "
            "for example 127.0.0.1:8099",
            raft_address=text,
        )
    return f"{host.lower()}:{int(port_text)}"


async def _endpoints(address: str) -> set[tuple[str, int]]:
    """Return the (ip, port) pairs ``address`` resolves to, or the address itself if it does not."""
    host, _, port_text = address.rpartition(":")
    port = int(port_text)
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(2.0):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, TimeoutError):
        return {(host, port)}
    return {(str(info[4][0]), port) for info in infos}


async def find_alias(candidate: str, members: list[str]) -> str | None:
    """Return the member that ``candidate`` names under another spelling, if any.

    Two addresses that resolve to the same IP and port reach the same Raft
    member, so adding such an alias would count one process twice toward the
    majority.
    """
    candidate_endpoints = await _endpoints(candidate)
    for member in members:
        if candidate_endpoints & await _endpoints(member):
            return member
    return None


class MembershipManager:
    """Serializes membership changes and leadership transfers of one node's Raft group."""

    def __init__(self, config: NodeConfig, replica: Replica) -> None:
        self._config = config
        self._replica = replica
        self._lock = asyncio.Lock()

    # Views.

    def status(self) -> RaftStatus:
        status = self._replica.raft_status()
        if status is None:
            raise LeaderNotAvailableError("Raft has not started; retry once the node is ready")
        return status

    def registry(self) -> dict[str, MemberInfo]:
        """Return the member registry, or an empty one while the node is not ready."""
        try:
            state, _ = self._replica.check_ready()
        except KaflowError:
            return {}
        return state.members()

    def member_addresses(self) -> tuple[str, ...]:
        """Return the Raft address of every current member, this node first."""
        return (self._config.raft_address, *sorted(self.status().peers_connected))

    def leader_url(self) -> str | None:
        """Return the leader's advertised HTTP URL, or None when it is unknown or unregistered."""
        leader = self.status().leader
        if leader is None:
            return None
        if leader == self._config.raft_address:
            return self._config.advertised_http_url
        info = self.registry().get(leader)
        return info.http_url if info is not None else None

    def resolve(self, member: str) -> str:
        """Return the Raft address of the member named by node id or Raft address."""
        addresses = self.member_addresses()
        if member in addresses:
            return member
        if member == self._config.node_id:
            return self._config.raft_address
        for address, info in self.registry().items():
            if info.node_id == member and address in addresses:
                return address
        raise UnknownNodeError(
            f"no cluster member has node id or Raft address {member!r}; current members: "
            f"{', '.join(self._describe(address) for address in addresses)}",
            member=member,
        )

    # Changes.

    async def add_member(
        self, raft_address: str, timeout_s: float = DEFAULT_CHANGE_TIMEOUT_S
    ) -> MemberChange:
        """Add the member at ``raft_address``; start its process with the other members as peers."""
        address = parse_raft_address(raft_address)
        async with self._lock:
            self._require_leader()
            if address in self.member_addresses():
                raise MemberAlreadyExistsError(
                    f"{address} is already a cluster member; remove it first to re-add it",
                    raft_address=address,
                )
            alias_of = await find_alias(address, list(self.member_addresses()))
            if alias_of is not None:
                raise MemberAlreadyExistsError(
                    f"{address} reaches the existing member {alias_of}; "
                    "a member cannot be added twice under another address",
                    raft_address=address,
                    member=alias_of,
                )
            await self._change("add", address, timeout_s)
        # The status snapshot may predate the change by up to one refresh interval.
        members = tuple(dict.fromkeys((*self.member_addresses(), address)))
        logger.info("member added raft=%s members=%d", address, len(members))
        return MemberChange("add", address, None, members)

    async def remove_member(
        self, member: str, timeout_s: float = DEFAULT_CHANGE_TIMEOUT_S
    ) -> MemberChange:
        """Remove the member named by node id or Raft address, and its registry entry.

        Raises NotLeaderError after moving leadership away when ``member``
        is this leader; the request must then go to the new leader.
        """
        async with self._lock:
            self._require_leader()
            address = self.resolve(member)
            info = self.registry().get(address)
            if address == self._config.raft_address:
                if len(self.member_addresses()) == 1:
                    raise InvalidRequestError(
                        f"{member!r} is the only member of the cluster and cannot be removed",
                        member=member,
                    )
                await self._transfer(None, timeout_s)
                raise NotLeaderError(
                    f"this node ({address}) handed leadership to another member before it can "
                    "be removed; send the request to the new leader",
                    member=member,
                )
            await self._change("remove", address, timeout_s)
            result = await self._replica.propose(encode_command(UnregisterMember(address)))
            result.raise_for_rejection()
        node_id = info.node_id if info is not None else None
        members = tuple(other for other in self.member_addresses() if other != address)
        logger.info("member removed node_id=%s raft=%s members=%d", node_id, address, len(members))
        return MemberChange("remove", address, node_id, members)

    async def transfer_leadership(
        self, target: str | None, timeout_s: float = DEFAULT_CHANGE_TIMEOUT_S
    ) -> str:
        """Hand leadership to ``target`` (node id or Raft address), or to the most caught-up member.

        Returns the new leader's Raft address once this node has seen it elected.
        """
        async with self._lock:
            self._require_leader()
            address = None if target is None else self.resolve(target)
            if address == self._config.raft_address:
                return address
            return await self._transfer(address, timeout_s)

    # Steps.

    def _require_leader(self) -> None:
        status = self.status()
        if status.role is RaftRole.LEADER:
            return
        if status.leader is None:
            raise LeaderNotAvailableError(
                "no Raft leader is known, so the cluster cannot change its membership now; "
                "retry after the election"
            )
        raise NotLeaderError(
            f"membership changes run on the leader {self._describe(status.leader)}; send the "
            "request there",
            leader=status.leader,
        )

    async def _change(self, action: str, address: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        warned = False
        while True:
            try:
                await self._replica.raft.admin.change_membership(action, address)
                return
            except RetriableError as exc:
                # Denied right after an election, until the leader commits its first entry.
                if exc.details.get("reason") != "request_denied" or time.monotonic() >= deadline:
                    raise
                if not warned:
                    warned = True
                    logger.warning(
                        "membership change denied, retrying action=%s member=%s", action, address
                    )
            await asyncio.sleep(_RETRY_INTERVAL_S)
            self._require_leader()

    async def _transfer(self, address: str | None, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        warned = False
        target_text = address or "the most caught-up member"
        while time.monotonic() < deadline:
            self._require_leader()
            try:
                await self._replica.raft.admin.transfer_leadership(address)
            except RetriableError as exc:
                if exc.details.get("reason") != "request_denied":
                    raise
                if not warned:
                    warned = True
                    logger.warning(
                        "leadership transfer denied while the target catches up, retrying "
                        "target=%s",
                        target_text,
                    )
                await asyncio.sleep(_RETRY_INTERVAL_S)
                continue

            new_leader = await self._wait_for_new_leader(
                min(deadline, time.monotonic() + _ELECTION_WAIT_S)
            )
            if new_leader is not None and (address is None or new_leader == address):
                logger.info(
                    "leadership transferred from=%s to=%s",
                    self._config.raft_address,
                    self._describe(new_leader),
                )
                return new_leader
        raise RequestTimedOutError(
            f"leadership did not move to {target_text} within {timeout_s:g} s: the target's "
            "match index stayed behind the leader's log; pause writes or raise the timeout",
            timeout_ms=round(timeout_s * 1000),
            target=address,
        )

    async def _wait_for_new_leader(self, deadline: float) -> str | None:
        """Wait until another member leads; return None if none does by ``deadline``."""
        while time.monotonic() < deadline:
            status = self.status()
            if status.leader is not None and status.leader != self._config.raft_address:
                return status.leader
            await asyncio.sleep(_RETRY_INTERVAL_S)
        return None

    def _describe(self, address: str) -> str:
        if address == self._config.raft_address:
            return f"{self._config.node_id} ({address})"
        info = self.registry().get(address)
        return f"{info.node_id} ({address})" if info is not None else address
