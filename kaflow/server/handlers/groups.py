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
from kaflow.server.views import render_offset_commit

__all__ = [
    "NAME_MAX_CHARS",
    "commit_offsets",
    "list_groups",
    "optional_name",
]

# Maximum length of member_id, group_instance_id and client_id, in characters.
NAME_MAX_CHARS: Final = 255

# Kafka's default offset.metadata.max.bytes.
OFFSET_METADATA_MAX_BYTES: Final = 4096

_COMMIT_FIELDS: Final = frozenset({"topic", "partition", "offset", "metadata"})


async def commit_offsets(request: web.Request) -> web.Response:
    Query(request.query, ())
    group = validate_group_name(request.match_info["group"])
    body, _ = await read_body(request, JSON_ONLY)
    commits, member_id, member_epoch = _parse_commits(body)

    await request.app[BROKER_KEY].commit_offsets(group, commits, member_id, member_epoch)
    return json_response(
        {"group": group, "offsets": [render_offset_commit(commit) for commit in commits]}
    )


def _parse_commits(body: Any) -> tuple[list[OffsetCommit], str | None, int | None]:
    fields = Fields(expect_object(body, "body"), "body")
    fields.reject_unknown({"offsets", "member_id", "member_epoch"})
    raw_commits = fields.required_list("offsets")
    if not raw_commits:
        raise InvalidRequestError(
            "offsets is an empty array; send at least one offset to commit", field="offsets"
        )
    member_id = optional_name(fields, "member_id")
    member_epoch = fields.optional_int("member_epoch", None, 0, INT32_MAX, InvalidRequestError)
    if (member_id is None) != (member_epoch is None):
        raise InvalidRequestError(
            "member_id and member_epoch go together: send both for a commit from a group "
            "member, or neither for a standalone consumer",
            field="member_id" if member_id is None else "member_epoch",
        )
    commits = [_parse_commit(raw, f"offsets[{index}]") for index, raw in enumerate(raw_commits)]
    return commits, member_id, member_epoch


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


async def list_groups(request: web.Request) -> web.Response:
    Query(request.query, ())
    return json_response(
        {
            "groups": [
                {
                    "group": summary.group,
                    "state": summary.state,
                    "members": summary.members,
                    "group_epoch": summary.group_epoch,
                }
                for summary in request.app[BROKER_KEY].group_summaries()
            ]
        }
    )


def optional_name(fields: Fields, name: str) -> str | None:
    """Return a non-empty string field of at most NAME_MAX_CHARS characters, or None."""
    if fields.obj.get(name) is None:
        return None
    value = fields.required_str(name)
    if not 1 <= len(value) <= NAME_MAX_CHARS:
        raise InvalidRequestError(
            f"{fields.field_path(name)} is {len(value)} characters long; send 1 to "
            f"{NAME_MAX_CHARS} characters or null",
            field=fields.field_path(name),
            length=len(value),
        )
    return value
