"""Producer endpoint: allocate an idempotent producer id or bump its epoch."""

from __future__ import annotations

from aiohttp import web

from kaflow.server.context import BROKER_KEY
from kaflow.server.fields import Fields, expect_object
from kaflow.server.media import JSON_ONLY, json_response, read_body
from kaflow.server.params import Query
from kaflow.server.producer_fields import parse_producer_id

__all__ = ["init_producer"]


async def init_producer(request: web.Request) -> web.Response:
    """Handle ``POST /v1/producers`` with no body, ``{}`` or ``{"producer_id": n}``."""
    Query(request.query, ())
    producer_id: int | None = None
    if request.body_exists:
        body, _ = await read_body(request, JSON_ONLY)
        producer_id = parse_producer_id(Fields(expect_object(body, "body"), "body"))

    producer = await request.app[BROKER_KEY].init_producer(producer_id)
    return json_response(
        {"producer_id": producer.producer_id, "producer_epoch": producer.producer_epoch}
    )
