"""The asynchronous admin client: topics, consumer groups and cluster status."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

from kaflow.client.transport import Transport, quote
from kaflow.errors import UnknownGroupError

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

    async def list_groups(self) -> list[str]:
        """Return the names of the groups that have committed offsets."""
        listed = await self._transport.request("GET", "/v1/groups")
        groups: list[str] = listed["groups"]
        return groups

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
