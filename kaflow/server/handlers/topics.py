"""Topic endpoints: list, create, describe, alter, delete."""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import quote

from aiohttp import web

from kaflow.errors import (
    InvalidConfigError,
    InvalidPartitionsError,
    InvalidRequestError,
    MalformedBodyError,
)
from kaflow.server.context import BROKER_KEY, CONFIG_KEY
from kaflow.server.fields import Fields, describe_value, expect_object, shorten
from kaflow.server.media import JSON_ONLY, json_response, read_body
from kaflow.server.params import Query
from kaflow.server.views import render_topic

__all__ = ["alter_topic", "create_topic", "delete_topic", "describe_topic", "list_topics"]

_CREATE_FIELDS: Final = frozenset({"name", "partitions", "config"})
_ALTER_FIELDS: Final = frozenset({"partitions", "config"})
_CONFIG_VALUE: Final = "an integer or a decimal string"


async def list_topics(request: web.Request) -> web.Response:
    Query(request.query, ())
    topics = request.app[BROKER_KEY].list_topics()
    return json_response({"topics": [render_topic(topic) for topic in topics]})


async def create_topic(request: web.Request) -> web.Response:
    Query(request.query, ())
    body, _ = await read_body(request, JSON_ONLY)
    fields = Fields(expect_object(body, "body"), "body")
    fields.reject_unknown(_CREATE_FIELDS)
    name = fields.required_str("name")
    if fields.has("partitions") and fields.obj["partitions"] is None:
        # Only PATCH gives null a meaning (unchanged); on create it would hide a client bug.
        raise MalformedBodyError(
            "partitions must be an integer, got null; omit the field for the default of "
            "1 partition",
            field="partitions",
            expected="an integer",
            got="null",
        )
    requested_partitions = _read_partitions(fields, request)
    partitions = 1 if requested_partitions is None else requested_partitions
    config = _read_config(fields, allow_reset=False)

    topic = await request.app[BROKER_KEY].create_topic(name, partitions, config)
    location = f"/v1/topics/{quote(topic.name, safe='')}"
    return json_response(render_topic(topic), status=201, headers={"Location": location})


async def describe_topic(request: web.Request) -> web.Response:
    Query(request.query, ())
    topic = request.app[BROKER_KEY].describe_topic(request.match_info["topic"])
    return json_response(render_topic(topic))


async def alter_topic(request: web.Request) -> web.Response:
    Query(request.query, ())
    name = request.match_info["topic"]
    body, _ = await read_body(request, JSON_ONLY)
    fields = Fields(expect_object(body, "body"), "body")
    fields.reject_unknown(_ALTER_FIELDS)
    partitions = _read_partitions(fields, request)
    config = _read_config(fields, allow_reset=True)
    if partitions is None and not config:
        raise InvalidRequestError(
            "the body changes nothing; set partitions, config or both",
            valid=sorted(_ALTER_FIELDS),
        )

    topic = await request.app[BROKER_KEY].alter_topic(name, partitions, config)
    return json_response(render_topic(topic))


async def delete_topic(request: web.Request) -> web.Response:
    Query(request.query, ())
    await request.app[BROKER_KEY].delete_topic(request.match_info["topic"])
    return web.Response(status=204)


def _read_partitions(fields: Fields, request: web.Request) -> int | None:
    """Read ``partitions``; None when absent or null.

    The broker checks the count against the topic's current one; this check
    keeps values that are no valid partition count away from it.
    """
    max_partitions = request.app[CONFIG_KEY].max_partitions
    return fields.optional_int("partitions", None, 1, max_partitions, InvalidPartitionsError)


def _read_config(fields: Fields, *, allow_reset: bool) -> dict[str, Any]:
    """Read the ``config`` object: dotted names to integers or decimal strings.

    The broker checks names and ranges. With ``allow_reset`` a null value
    resets that entry to its default.
    """
    config = fields.optional_object("config")
    for key, value in config.items():
        if value is None and allow_reset:
            continue
        if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
            continue
        expected = "an integer, a decimal string or null" if allow_reset else _CONFIG_VALUE
        hint = "; omit the key to use the default" if value is None else ""
        raise InvalidConfigError(
            f"config {shorten(key)!r} must be {expected}, got {describe_value(value)}{hint}",
            key=shorten(key),
            expected=expected,
        )
    return config
