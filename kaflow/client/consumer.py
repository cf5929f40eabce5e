"""The asynchronous consumer of assigned partitions, without group membership.

The consumer reads the partitions given to :meth:`AsyncConsumer.assign`.
Its position in each partition is the offset of the next record to return.
A position is set by ``seek*``, by the group's committed offset, or by
``auto_offset_reset`` when neither exists or the offset left the log.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any

from kaflow.client.errors import ClientClosedError, NoOffsetForPartitionError
from kaflow.client.records import ConsumerRecord, OffsetAndTimestamp, TopicPartition, decode_record
from kaflow.client.transport import Transport, quote
from kaflow.errors import OffsetOutOfRangeError, UnknownGroupError

__all__ = ["AsyncConsumer"]

logger = logging.getLogger(__name__)

_RESET_POLICIES = ("earliest", "latest", "error")
# The node caps one long poll at 30000 ms.
_MAX_WAIT_MS = 30_000


class AsyncConsumer:
    """Read records from assigned partitions and commit positions to ``group_id``."""

    def __init__(
        self,
        bootstrap: Sequence[str] | str,
        *,
        group_id: str | None = None,
        auto_offset_reset: str = "latest",
        max_partition_fetch_bytes: int = 1_048_576,
        request_timeout_ms: int = 40_000,
        retry_timeout_ms: int = 30_000,
        retry_backoff_ms: int = 100,
    ) -> None:
        if auto_offset_reset not in _RESET_POLICIES:
            raise ValueError(
                f"invalid auto_offset_reset {auto_offset_reset!r}: use one of "
                + ", ".join(_RESET_POLICIES)
            )
        if request_timeout_ms <= _MAX_WAIT_MS:
            raise ValueError(
                f"request_timeout_ms={request_timeout_ms} must exceed the longest fetch "
                f"wait of {_MAX_WAIT_MS} ms, or long polls time out"
            )
        self._transport = Transport(
            [bootstrap] if isinstance(bootstrap, str) else bootstrap,
            request_timeout_ms=request_timeout_ms,
            retry_timeout_ms=retry_timeout_ms,
            retry_backoff_ms=retry_backoff_ms,
        )
        self.group_id = group_id
        self.auto_offset_reset = auto_offset_reset
        self.max_partition_fetch_bytes = max_partition_fetch_bytes
        self._positions: dict[TopicPartition, int | None] = {}
        self._paused: set[TopicPartition] = set()
        self._closed = False

    async def __aenter__(self) -> AsyncConsumer:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Release the connections. Committing is up to the caller."""
        self._closed = True
        await self._transport.close()

    def _check_open(self) -> None:
        if self._closed:
            raise ClientClosedError("the consumer is closed: create a new one to read records")

    def _check_assigned(self, tp: TopicPartition) -> None:
        if tp not in self._positions:
            raise ValueError(
                f"partition {tp.topic}-{tp.partition} is not assigned: assign it first"
            )

    # Assignment and flow control.

    def assign(self, partitions: Iterable[tuple[str, int]]) -> None:
        """Replace the assigned partitions; positions of partitions that stay are kept."""
        self._check_open()
        requested = [TopicPartition(topic, partition) for topic, partition in partitions]
        self._positions = {tp: self._positions.get(tp) for tp in requested}
        self._paused &= set(requested)

    def assignment(self) -> set[TopicPartition]:
        """Return the assigned partitions."""
        return set(self._positions)

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

    # Reading.

    async def poll(self, timeout_ms: int = 0, max_records: int = 500) -> list[ConsumerRecord]:
        """Return up to ``max_records`` records from the unpaused partitions.

        Returns at once when records are available; otherwise waits up to
        ``timeout_ms`` for the first one and may return an empty list.
        """
        self._check_open()
        active = [tp for tp in self._positions if tp not in self._paused]
        if not active:
            return []
        for tp in active:
            await self._resolve_position(tp)

        records = await self._fetch_all(active, 0, max_records)
        deadline = time.monotonic() + timeout_ms / 1000
        while not records:
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            if remaining_ms <= 0:
                return []
            records = await self._long_poll(active, min(remaining_ms, _MAX_WAIT_MS), max_records)
        return records[:max_records]

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
        self, active: list[TopicPartition], wait_ms: int, max_records: int
    ) -> list[ConsumerRecord]:
        # One long poll per partition; the first to return records ends the
        # wait. Cancelled fetches lose nothing because positions move only
        # when a result is returned.
        tasks = [asyncio.ensure_future(self._fetch_data(tp, wait_ms, max_records)) for tp in active]
        try:
            pending: set[asyncio.Future[Any]] = set(tasks)
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                results = [task.result() for task in done]
                if any(result[1] for result in results):
                    break
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
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
        except OffsetOutOfRangeError:
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

    async def __aiter__(self) -> AsyncIterator[ConsumerRecord]:
        """Yield records forever, long-polling between batches."""
        while True:
            for record in await self.poll(timeout_ms=_MAX_WAIT_MS):
                yield record

    # Offsets of the group.

    def _require_group(self) -> str:
        if self.group_id is None:
            raise ValueError("this consumer has no group_id: pass group_id= to commit offsets")
        return self.group_id

    async def commit(self, offsets: Mapping[tuple[str, int], int] | None = None) -> None:
        """Commit offsets (the NEXT offset to read) for ``group_id``.

        Without ``offsets``, commits the current position of each assigned
        partition that has one.
        """
        self._check_open()
        group = self._require_group()
        if offsets is None:
            chosen = {tp: pos for tp, pos in self._positions.items() if pos is not None}
        else:
            chosen = {TopicPartition(*p): offset for p, offset in offsets.items()}
        if not chosen:
            return
        entries = [
            {"topic": tp.topic, "partition": tp.partition, "offset": offset}
            for tp, offset in chosen.items()
        ]
        await self._transport.request(
            "POST", f"/v1/groups/{quote(group)}/offsets", body={"offsets": entries}
        )

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
