"""Record endpoints: produce, fetch (with long poll) and offset lookup."""

from __future__ import annotations

import asyncio

from aiohttp import web

from kaflow.broker import Broker, FetchResult
from kaflow.server.context import BROKER_KEY, LONG_POLL_KEY, SHUTDOWN_KEY
from kaflow.server.fields import Fields
from kaflow.server.media import (
    ALL_FORMATS,
    encode_response,
    json_response,
    negotiate_response_format,
    read_body,
)
from kaflow.server.params import FetchParams, Query, parse_lookup_at, parse_partition
from kaflow.server.producer_fields import parse_producer_sequences
from kaflow.server.record_codec import parse_produce_body, render_fetch, render_produce_result
from kaflow.server.views import render_lookup

__all__ = ["fetch_records", "lookup_offset", "produce_records"]


async def produce_records(request: web.Request) -> web.Response:
    Query(request.query, ())
    topic = request.match_info["topic"]
    response_format = negotiate_response_format(request, ALL_FORMATS)
    body, body_format = await read_body(request, ALL_FORMATS)
    records = parse_produce_body(body, body_format)
    producer = parse_producer_sequences(Fields(body, "body"))

    # One broker call for the whole request: the broker commits every
    # record or none of them.
    metadata = await request.app[BROKER_KEY].produce(topic, records, producer=producer)
    return encode_response(render_produce_result(metadata), response_format)


async def fetch_records(request: web.Request) -> web.Response:
    topic = request.match_info["topic"]
    partition = parse_partition(request.match_info["partition"])
    params = FetchParams.from_query(request.query)
    response_format = negotiate_response_format(request, ALL_FORMATS)

    result = await _fetch_until_shutdown(request, topic, partition, params)
    body = render_fetch(topic, partition, result, response_format, params.encoding)
    return encode_response(body, response_format)


async def _fetch_until_shutdown(
    request: web.Request, topic: str, partition: int, params: FetchParams
) -> FetchResult:
    """Fetch, letting the broker long-poll, but end the wait when the app shuts down.

    On shutdown the waiting fetch is cancelled and the partition is read once
    more without waiting, so the client gets a normal (usually empty)
    response instead of a dropped connection.
    """
    broker: Broker = request.app[BROKER_KEY]
    shutdown = request.app[SHUTDOWN_KEY]
    if params.max_wait_ms == 0 or shutdown.is_set():
        return await _fetch(broker, topic, partition, params, max_wait_ms=0)

    statistics = request.app[LONG_POLL_KEY]
    fetch_task = asyncio.ensure_future(
        _fetch(broker, topic, partition, params, max_wait_ms=params.max_wait_ms)
    )
    shutdown_task = asyncio.ensure_future(shutdown.wait())
    statistics.waiting += 1
    try:
        await asyncio.wait({fetch_task, shutdown_task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        statistics.waiting -= 1
        statistics.completed += 1
        shutdown_task.cancel()
        # A no-op when the fetch is done; otherwise shutdown began first.
        fetch_task.cancel()

    await asyncio.wait({fetch_task})
    if not fetch_task.cancelled():
        return fetch_task.result()
    return await _fetch(broker, topic, partition, params, max_wait_ms=0)


async def _fetch(
    broker: Broker, topic: str, partition: int, params: FetchParams, max_wait_ms: int
) -> FetchResult:
    return await broker.fetch(
        topic,
        partition,
        params.offset,
        max_records=params.max_records,
        max_bytes=params.max_bytes,
        max_wait_ms=max_wait_ms,
    )


async def lookup_offset(request: web.Request) -> web.Response:
    topic = request.match_info["topic"]
    partition = parse_partition(request.match_info["partition"])
    at = parse_lookup_at(request.query)

    lookup = request.app[BROKER_KEY].lookup_offset(topic, partition, at)
    return json_response(render_lookup(topic, lookup))
