"""Consumer group endpoints: commit offsets, read committed offsets, list groups."""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

from kaflow.broker import OffsetCommit
from kaflow.errors import InvalidRequestError
from kaflow.groups import validate_group_name
from kaflow.server.context import BROKER_KEY
from kaflow.server.fields import INT32_MAX, INT64_MAX, Fields, expect_object
from kaflow.server.media import JSON_ONLY, json_response, read_body
from kaflow.server.params import Query
from kaflow.server.views import render_committed, render_offset_commit

__all__ = ["commit_offsets", "committed_offsets", "list_groups"]

# Kafka's default offset.metadata.max.bytes.
OFFSET_METADATA_MAX_BYTES: Final = 4096

_COMMIT_FIELDS: Final = frozenset({"topic", "partition", "offset", "metadata"})


async def commit_offsets(request: web.Request) -> web.Response:
    Query(request.query, ())
    group = validate_group_name(request.match_info["group"])
    body, _ = await read_body(request, JSON_ONLY)
    commits = _parse_commits(body)

    await request.app[BROKER_KEY].commit_offsets(group, commits)
    return json_response(
        {"group": group, "offsets": [render_offset_commit(commit) for commit in commits]}
    )


def _parse_commits(body: Any) -> list[OffsetCommit]:
    fields = Fields(expect_object(body, "body"), "body")
    fields.reject_unknown({"offsets"})
    raw_commits = fields.required_list("offsets")
    if not raw_commits:
        raise InvalidRequestError(
            "offsets is an empty array; send at least one offset to commit", field="offsets"
        )
    return [_parse_commit(raw, f"offsets[{index}]") for index, raw in enumerate(raw_commits)]


def _parse_commit(raw: Any, path: str) -> OffsetCommit:
    fields = Fields(expect_object(raw, path), path)
    fields.reject_unknown(_COMMIT_FIELDS)
    topic = fields.required_str("topic")
    partition = fields.required_int("partition", 0, INT32_MAX)
    offset = fields.required_int("offset", 0, INT64_MAX)
    metadata = fields.optional_str("metadata", "")

    try:
        size = len(metadata.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise InvalidRequestError(
            f"{path}.metadata contains a lone surrogate at character {exc.start}, "
            "which is not valid UTF-8",
            field=f"{path}.metadata",
        ) from exc
    if size > OFFSET_METADATA_MAX_BYTES:
        raise InvalidRequestError(
            f"{path}.metadata is {size} bytes in UTF-8, over the limit of "
            f"{OFFSET_METADATA_MAX_BYTES} bytes; store less in it",
            field=f"{path}.metadata",
            size=size,
            limit=OFFSET_METADATA_MAX_BYTES,
        )
    return OffsetCommit(topic=topic, partition=partition, offset=offset, metadata=metadata)


async def committed_offsets(request: web.Request) -> web.Response:
    Query(request.query, ())
    group = validate_group_name(request.match_info["group"])
    committed = request.app[BROKER_KEY].committed_offsets(group)
    return json_response({"group": group, "offsets": [render_committed(c) for c in committed]})


async def list_groups(request: web.Request) -> web.Response:
    Query(request.query, ())
    return json_response({"groups": request.app[BROKER_KEY].list_groups()})
