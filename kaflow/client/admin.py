"""The asynchronous admin client: topics, consumer groups and cluster status."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

from kaflow.client.group_admin import (
    GroupDescription,
    GroupListing,
    OffsetResetPlan,
    OffsetResetStrategy,
)
from kaflow.client.transport import Transport, quote
from kaflow.errors import KaflowError, UnknownGroupError
from kaflow.groups import validate_group_name

__all__ = ["AsyncAdmin"]

JsonObject = dict[str, Any]


class AsyncAdmin:
    """Manage topics and read group offsets and cluster status over the HTTP API.

    ``bootstrap`` lists node URLs; the client discovers the other members
    and retries retriable errors across nodes for up to ``retry_timeout_ms``.
    """

    def __init__(
        self,
        bootstrap: Sequence[str] | str,
        *,
        request_timeout_ms: int = 30_000,
        retry_timeout_ms: int = 30_000,
        retry_backoff_ms: int = 100,
    ) -> None:
        self._transport = Transport(
            [bootstrap] if isinstance(bootstrap, str) else bootstrap,
            request_timeout_ms=request_timeout_ms,
            retry_timeout_ms=retry_timeout_ms,
            retry_backoff_ms=retry_backoff_ms,
        )

    @property
    def node_urls(self) -> list[str]:
        """The node URLs requests rotate through: the bootstrap list until discovery."""
        return self._transport.urls

    async def __aenter__(self) -> AsyncAdmin:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connections; later calls raise ClientClosedError."""
        await self._transport.close()

    async def create_topic(
        self, name: str, partitions: int = 1, config: Mapping[str, int | str] | None = None
    ) -> JsonObject:
        """Create a topic and return its description."""
        body = {"name": name, "partitions": partitions, "config": dict(config or {})}
        created: JsonObject = await self._transport.request("POST", "/v1/topics", body=body)
        return created

    async def describe_topic(self, name: str) -> JsonObject:
        """Return a topic's partitions (log start offset, high watermark) and configuration."""
        described: JsonObject = await self._transport.request("GET", f"/v1/topics/{quote(name)}")
        return described

    async def list_topics(self) -> list[JsonObject]:
        """Return every topic's description, sorted by name."""
        listed = await self._transport.request("GET", "/v1/topics")
        topics: list[JsonObject] = listed["topics"]
        return topics

    async def alter_topic(
        self,
        name: str,
        *,
        partitions: int | None = None,
        config: Mapping[str, int | str | None] | None = None,
    ) -> JsonObject:
        """Add partitions or change configuration entries; a None config value resets it."""
        body: JsonObject = {}
        if partitions is not None:
            body["partitions"] = partitions
        if config is not None:
            body["config"] = dict(config)
        altered: JsonObject = await self._transport.request(
            "PATCH", f"/v1/topics/{quote(name)}", body=body
        )
        return altered

    async def delete_topic(self, name: str) -> None:
        """Delete a topic and its records."""
        await self._transport.request("DELETE", f"/v1/topics/{quote(name)}")

    async def list_groups(self) -> list[GroupListing]:
        """Return every group that has members or committed offsets, sorted by name."""
        listed = await self._transport.request("GET", "/v1/groups")
        if not isinstance(listed, dict) or not isinstance(listed.get("groups"), list):
            raise KaflowError(
                f"GET /v1/groups returned {listed!r} where {{'groups': [...]}} was expected"
            )
        groups = [GroupListing.from_json(entry) for entry in listed["groups"]]
        return sorted(groups, key=lambda listing: listing.group)

    async def describe_group(self, group: str) -> GroupDescription:
        """Return a group's state, members and per-partition offsets with lag and owner.

        Raises UnknownGroupError when the group has neither members nor
        committed offsets.
        """
        path = f"/v1/groups/{quote(validate_group_name(group))}"
        return GroupDescription.from_json(await self._transport.request("GET", path))

    async def delete_group(self, group: str) -> None:
        """Delete a group's committed offsets.

        Raises GroupNotEmptyError while the group has members, and
        UnknownGroupError when it has nothing to delete.
        """
        path = f"/v1/groups/{quote(validate_group_name(group))}"
        await self._transport.request("DELETE", path)

    async def reset_group_offsets(
        self,
        group: str,
        topic: str,
        to: OffsetResetStrategy | str,
        value: int | None = None,
        partitions: Sequence[int] | None = None,
        execute: bool = False,
    ) -> OffsetResetPlan:
        """Compute, and with ``execute`` commit, new committed offsets for a topic.

        ``to`` selects where each partition moves (see OffsetResetStrategy),
        and ``value`` is the offset, the timestamp in ms or the shift that
        "offset", "timestamp" and "shift" need. ``partitions`` limits the
        reset to those partitions of ``topic`` (default: all). Without
        ``execute`` this is a dry run that works while the group is active;
        with it the node raises GroupNotEmptyError while the group has
        members. Raises ValueError for a strategy without its value and for
        a value the strategy does not take.

        An executed shift is sent once, without retries, because a retry
        after a lost response would shift the offsets a second time. Its
        retriable errors (such as UnknownOutcomeError) reach the caller, who
        can check the offsets with describe_group before trying again.
        """
        strategy = _reset_strategy(to, value)
        retry_timeout_s = 0.0 if execute and strategy is OffsetResetStrategy.SHIFT else None
        body: JsonObject = {
            "topic": topic,
            "partitions": None if partitions is None else list(partitions),
            "to": strategy.value,
            "value": value,
            "execute": execute,
        }
        path = f"/v1/groups/{quote(validate_group_name(group))}/reset-offsets"
        response = await self._transport.request(
            "POST", path, body=body, retry_timeout_s=retry_timeout_s
        )
        return OffsetResetPlan.from_json(response)

    async def committed_offsets(self, group: str) -> list[JsonObject]:
        """Return a group's committed offsets with high watermark and lag; [] for no commits."""
        try:
            body = await self._transport.request("GET", f"/v1/groups/{quote(group)}/offsets")
        except UnknownGroupError:
            return []
        offsets: list[JsonObject] = body["offsets"]
        return offsets

    async def cluster_status(self) -> JsonObject:
        """Return one node's view of the Raft group (role, leader, members)."""
        status: JsonObject = await self._transport.request("GET", "/v1/cluster")
        return status


def _reset_strategy(to: OffsetResetStrategy | str, value: int | None) -> OffsetResetStrategy:
    try:
        strategy = OffsetResetStrategy(to)
    except ValueError:
        choices = ", ".join(repr(choice.value) for choice in OffsetResetStrategy)
        raise ValueError(f"invalid reset strategy {to!r}: expected one of {choices}") from None

    if strategy.takes_value and value is None:
        raise ValueError(f"reset strategy {strategy.value!r} needs a value; pass value=N")
    if not strategy.takes_value and value is not None:
        raise ValueError(
            f"reset strategy {strategy.value!r} takes no value, got value={value!r}; "
            "pass value=None"
        )
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise ValueError(f"invalid reset value {value!r}: expected an int")
    return strategy
