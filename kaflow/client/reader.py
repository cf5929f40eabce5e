"""Positions, offset lookups and fetching: the partition reading shared by every consumer.

:class:`PartitionReader` stores one position per partition the consumer
reads: the offset of the next record to return, or None until it is
resolved from the group's committed offset or ``auto_offset_reset``.
:class:`kaflow.client.consumer.AsyncConsumer` adds assignment, group
membership and commits on top.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from kaflow.client.errors import (
    ClientClosedError,
    NodeUnreachableError,
    NoOffsetForPartitionError,
)
from kaflow.client.records import ConsumerRecord, OffsetAndTimestamp, TopicPartition, decode_record
from kaflow.client.transport import Transport, quote
from kaflow.errors import KaflowError, OffsetOutOfRangeError, UnknownGroupError

__all__ = ["MAX_WAIT_MS", "RESET_POLICIES", "PartitionReader"]

logger = logging.getLogger(__name__)

RESET_POLICIES = ("earliest", "latest", "error")
# The node caps one long poll at 30000 ms.
MAX_WAIT_MS = 30_000


class PartitionReader:
    """Positions of the partitions a consumer reads, and the requests that read them."""

    def __init__(
        self,
        transport: Transport,
        group_id: str | None,
        auto_offset_reset: str,
        max_partition_fetch_bytes: int,
    ) -> None:
        self._transport = transport
        self.group_id = group_id
        self.auto_offset_reset = auto_offset_reset
        self.max_partition_fetch_bytes = max_partition_fetch_bytes
        self._positions: dict[TopicPartition, int | None] = {}
        self._paused: set[TopicPartition] = set()
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise ClientClosedError("the consumer is closed: create a new one to read records")

    def _check_assigned(self, tp: TopicPartition) -> None:
        if tp not in self._positions:
            raise ValueError(
                f"partition {tp.topic}-{tp.partition} is not assigned: assign it first"
            )

    def pause(self, *partitions: tuple[str, int]) -> None:
        """Stop returning records of these partitions from poll until resumed."""
        for partition in partitions:
            tp = TopicPartition(*partition)
            self._check_assigned(tp)
            self._paused.add(tp)

    def resume(self, *partitions: tuple[str, int]) -> None:
        """Return records of these paused partitions from poll again."""
        for partition in partitions:
            self._paused.discard(TopicPartition(*partition))

    def paused(self) -> set[TopicPartition]:
        """Return the paused partitions."""
        return set(self._paused)

    # Positions.

    def seek(self, partition: tuple[str, int], offset: int) -> None:
        """Set the offset the next poll reads from in ``partition``."""
        tp = TopicPartition(*partition)
        self._check_assigned(tp)
        if offset < 0:
            raise ValueError(f"invalid offset {offset}: offsets are 0 or greater")
        self._positions[tp] = offset

    async def seek_to_beginning(self, *partitions: tuple[str, int]) -> None:
        """Move to the log start offset of these partitions (all assigned ones when none given)."""
        for tp in self._targets(partitions):
            self._positions[tp] = await self._list_offset(tp, "earliest")

    async def seek_to_end(self, *partitions: tuple[str, int]) -> None:
        """Move to the high watermark of these partitions (all assigned ones when none given)."""
        for tp in self._targets(partitions):
            self._positions[tp] = await self._list_offset(tp, "latest")

    def _targets(self, partitions: Sequence[tuple[str, int]]) -> list[TopicPartition]:
        self._check_open()
        targets = [TopicPartition(*p) for p in partitions] or list(self._positions)
        for tp in targets:
            self._check_assigned(tp)
        return targets

    async def position(self, partition: tuple[str, int]) -> int:
        """Return the offset of the next record poll returns from ``partition``."""
        tp = TopicPartition(*partition)
        self._check_open()
        self._check_assigned(tp)
        return await self._resolve_position(tp)

    async def _resolve_position(self, tp: TopicPartition) -> int:
        position = self._positions.get(tp)
        if position is not None:
            return position
        committed = await self.committed(tp) if self.group_id is not None else None
        position = committed if committed is not None else await self._reset_position(tp)
        self._positions[tp] = position
        return position

    async def _reset_position(self, tp: TopicPartition) -> int:
        if self.auto_offset_reset == "error":
            raise NoOffsetForPartitionError(
                f"no position for {tp.topic}-{tp.partition} and auto_offset_reset='error': "
                "seek, commit an offset, or use 'earliest' or 'latest'",
                tp.topic,
                tp.partition,
            )
        offset = await self._list_offset(tp, self.auto_offset_reset)
        logger.info(
            "reset position topic=%s partition=%d policy=%s offset=%d",
            tp.topic,
            tp.partition,
            self.auto_offset_reset,
            offset,
        )
        return offset

    async def _list_offset(self, tp: TopicPartition, at: str | int) -> int:
        body = await self._offsets_request(tp, at)
        return int(body["offset"])

    async def _offsets_request(self, tp: TopicPartition, at: str | int) -> Any:
        path = f"/v1/topics/{quote(tp.topic)}/partitions/{tp.partition}/offsets"
        return await self._transport.request("GET", path, params={"at": at})

    async def offsets_for_times(
        self, timestamps: Mapping[tuple[str, int], int]
    ) -> dict[TopicPartition, OffsetAndTimestamp | None]:
        """Find, per partition, the first offset whose timestamp is at or after the given ms.

        A partition without such a record maps to None.
        """
        self._check_open()
        found: dict[TopicPartition, OffsetAndTimestamp | None] = {}
        for partition, timestamp in timestamps.items():
            tp = TopicPartition(*partition)
            body = await self._offsets_request(tp, timestamp)
            if body["offset"] is None:
                found[tp] = None
            else:
                found[tp] = OffsetAndTimestamp(int(body["offset"]), int(body["timestamp"]))
        return found

    async def _fetch_all(
        self, active: list[TopicPartition], wait_ms: int, max_records: int
    ) -> list[ConsumerRecord]:
        records: list[ConsumerRecord] = []
        for tp in active:
            if len(records) >= max_records:
                break
            records.extend(await self._fetch(tp, wait_ms, max_records - len(records)))
        return records

    async def _long_poll(
        self,
        active: list[TopicPartition],
        wait_ms: int,
        max_records: int,
        wake: asyncio.Event | None,
    ) -> list[ConsumerRecord]:
        # One long poll per partition; the first to return records, or
        # ``wake``, ends the wait. Cancelled fetches lose nothing because
        # positions move only when a result is returned.
        tasks = [asyncio.ensure_future(self._fetch_data(tp, wait_ms, max_records)) for tp in active]
        waiter = asyncio.ensure_future(wake.wait()) if wake is not None else None
        try:
            pending: set[asyncio.Future[Any]] = set(tasks)
            if waiter is not None:
                pending.add(waiter)
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                if waiter is not None and waiter in done:
                    break
                results = [task.result() for task in done]
                if any(result[1] for result in results):
                    break
                if pending == {waiter}:
                    break
        finally:
            for future in [*tasks, waiter]:
                if future is not None:
                    future.cancel()
            await asyncio.gather(*tasks, *([waiter] if waiter else []), return_exceptions=True)
        records: list[ConsumerRecord] = []
        for task in tasks:
            if task.cancelled() or task.exception() is not None:
                continue
            tp, page = task.result()
            records.extend(self._take(tp, page, max_records - len(records)))
        return records

    async def _fetch(
        self, tp: TopicPartition, wait_ms: int, max_records: int
    ) -> list[ConsumerRecord]:
        _, page = await self._fetch_data(tp, wait_ms, max_records)
        return self._take(tp, page, max_records)

    async def _fetch_data(
        self, tp: TopicPartition, wait_ms: int, max_records: int
    ) -> tuple[TopicPartition, list[dict[str, Any]]]:
        position = await self._resolve_position(tp)
        path = f"/v1/topics/{quote(tp.topic)}/partitions/{tp.partition}/records"
        params: dict[str, str | int] = {
            "offset": position,
            "max_records": max(1, min(max_records, 10_000)),
            "max_bytes": self.max_partition_fetch_bytes,
            "max_wait_ms": wait_ms,
            "encoding": "base64",
        }
        try:
            body = await self._transport.request("GET", path, params=params)
        except OffsetOutOfRangeError as error:
            if not await self._out_of_range(tp, position, error):
                # Another node has records at the position, so this node is behind.
                self._transport.rotate()
                return tp, []
            if self.auto_offset_reset == "error":
                raise
            logger.warning(
                "offset out of range topic=%s partition=%d offset=%d policy=%s",
                tp.topic,
                tp.partition,
                position,
                self.auto_offset_reset,
            )
            self._positions[tp] = await self._reset_position(tp)
            return tp, []
        records: list[dict[str, Any]] = body["records"]
        return tp, records

    async def _out_of_range(
        self, tp: TopicPartition, position: int, error: OffsetOutOfRangeError
    ) -> bool:
        """Tell whether ``position`` is really out of range, before a reset moves it.

        Below the log start offset it is: no node brings deleted records back.
        Above the high watermark the responding node may only be behind (it
        restarted and is still applying, or it is cut off from the leader), so
        the position counts as out of range only when a majority of the nodes
        answer and none of them has the partition's end at or beyond it.
        """
        log_start = error.details.get("log_start_offset")
        if isinstance(log_start, int) and position < log_start:
            return True
        path = f"/v1/topics/{quote(tp.topic)}/partitions/{tp.partition}/offsets"
        urls = self._transport.urls
        answered = 0
        for url in urls:
            try:
                body = await self._transport.request_once(url, "GET", path, params={"at": "latest"})
            except (KaflowError, NodeUnreachableError):
                continue
            answered += 1
            if int(body["offset"]) >= position:
                logger.info(
                    "offset out of range on a node that is behind topic=%s partition=%d "
                    "offset=%d end_offset_elsewhere=%d url=%s",
                    tp.topic,
                    tp.partition,
                    position,
                    int(body["offset"]),
                    url,
                )
                return False
        return answered > len(urls) // 2

    def _take(
        self, tp: TopicPartition, page: list[dict[str, Any]], limit: int
    ) -> list[ConsumerRecord]:
        # The position may have moved (seek) while the fetch ran; drop stale pages.
        position = self._positions.get(tp)
        returned = [
            decode_record(tp.topic, tp.partition, raw)
            for raw in page
            if position is not None and int(raw["offset"]) >= position
        ][: max(limit, 0)]
        if returned:
            self._positions[tp] = returned[-1].offset + 1
        return returned

    def _require_group(self) -> str:
        if self.group_id is None:
            raise ValueError("this consumer has no group_id: pass group_id= to commit offsets")
        return self.group_id

    async def committed(self, partition: tuple[str, int]) -> int | None:
        """Return the group's committed offset for ``partition``, or None without one."""
        self._check_open()
        group = self._require_group()
        tp = TopicPartition(*partition)
        try:
            body = await self._transport.request("GET", f"/v1/groups/{quote(group)}/offsets")
        except UnknownGroupError:
            return None
        for entry in body["offsets"]:
            if entry["topic"] == tp.topic and entry["partition"] == tp.partition:
                return int(entry["offset"])
        return None
