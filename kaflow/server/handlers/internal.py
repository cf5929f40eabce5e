"""Internal endpoints that cluster members call on each other.

``GET /internal/v1/partitions/{topic}/{partition}/batches?from=N&max_bytes=M``
returns whole record batches of the partition, byte for byte as this node
stores them, starting with the batch that contains offset ``from``, up to
``max_bytes`` (at least one batch; default 1 MiB, at most 16 MiB). The
body is ``application/octet-stream``; the headers carry this node's view of
the partition:

``Kaflow-Log-Start-Offset``  first offset of the local log
``Kaflow-Log-End-Offset``    end of the local log
``Kaflow-High-Watermark``    replicated end offset; no batch past it is sent
``Kaflow-Topic-Id``          the topic incarnation (Raft index of its creation)

Errors use the JSON error body of the public API; ``offset_out_of_range``
below the local log start has ``log_start_offset`` in its details. The
records are the same ones the public fetch endpoint serves, so this
endpoint needs no other authentication than that one.
"""

from __future__ import annotations

from typing import Final, Protocol, runtime_checkable

from aiohttp import web

from kaflow.catchup.serving import (
    HEADER_HIGH_WATERMARK,
    HEADER_LOG_END_OFFSET,
    HEADER_LOG_START_OFFSET,
    HEADER_TOPIC_ID,
    PeerBatches,
)
from kaflow.errors import InvalidOffsetError, NotFoundError
from kaflow.server.context import BROKER_KEY
from kaflow.server.fields import INT64_MAX
from kaflow.server.params import Query, parse_partition

__all__ = ["BATCHES_MAX_BYTES_DEFAULT", "BATCHES_MAX_BYTES_LIMIT", "BatchSource", "fetch_batches"]

BATCHES_MAX_BYTES_DEFAULT: Final = 1024 * 1024
BATCHES_MAX_BYTES_LIMIT: Final = 16 * 1024 * 1024


@runtime_checkable
class BatchSource(Protocol):
    """A broker that can serve raw batches to its peers (kaflow.node.Node does)."""

    async def read_batches_for_peer(
        self, topic: str, partition: int, offset: int, max_bytes: int
    ) -> PeerBatches: ...


async def fetch_batches(request: web.Request) -> web.Response:
    query = Query(request.query, ("from", "max_bytes"))
    offset = query.integer("from", None, 0, INT64_MAX, InvalidOffsetError)
    max_bytes = query.integer("max_bytes", BATCHES_MAX_BYTES_DEFAULT, 1, BATCHES_MAX_BYTES_LIMIT)
    topic = request.match_info["topic"]
    partition = parse_partition(request.match_info["partition"])

    broker = request.app[BROKER_KEY]
    if not isinstance(broker, BatchSource):
        raise NotFoundError("this node does not serve raw batches to peers")
    batches = await broker.read_batches_for_peer(topic, partition, offset, max_bytes)
    return web.Response(
        body=batches.data,
        content_type="application/octet-stream",
        headers={
            HEADER_LOG_START_OFFSET: str(batches.log_start_offset),
            HEADER_LOG_END_OFFSET: str(batches.log_end_offset),
            HEADER_HIGH_WATERMARK: str(batches.high_watermark),
            HEADER_TOPIC_ID: str(batches.topic_id),
        },
    )
