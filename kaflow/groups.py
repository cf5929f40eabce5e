"""Consumer group name rules.

A group name is 1 to 255 characters from ``[a-zA-Z0-9._-]``, and neither
``.`` nor ``..``. Kafka itself accepts any string as a group id, but Kaflow
puts the name in URL paths (``/v1/groups/{group}/offsets``): a ``/`` or
``%`` would change the route, and HTTP clients resolve the dot segments
``.`` and ``..`` before sending. The character set is the one topic names use.
"""

from __future__ import annotations

import re
from typing import Final

from kaflow.errors import InvalidGroupNameError

__all__ = ["MAX_GROUP_NAME_LENGTH", "validate_group_name"]

MAX_GROUP_NAME_LENGTH: Final = 255
_LEGAL_NAME: Final = re.compile(r"[a-zA-Z0-9._-]+")
# Longer names are cut in messages; details carry the whole value.
_MESSAGE_EXCERPT_LENGTH: Final = 64


def _excerpt(name: str) -> str:
    if len(name) <= _MESSAGE_EXCERPT_LENGTH:
        return repr(name)
    return repr(name[:_MESSAGE_EXCERPT_LENGTH]) + "..."


def validate_group_name(name: object) -> str:
    """Return ``name`` if it is a valid group name; raise InvalidGroupNameError otherwise."""
    if not isinstance(name, str):
        raise InvalidGroupNameError(
            f"consumer group name must be a string, got {type(name).__name__}",
            expected="a string",
        )
    if not name:
        raise InvalidGroupNameError(
            f"consumer group name is empty; use 1 to {MAX_GROUP_NAME_LENGTH} ASCII letters, "
            "digits, '.', '_' or '-'",
            group=name,
            min=1,
            max=MAX_GROUP_NAME_LENGTH,
        )
    if len(name) > MAX_GROUP_NAME_LENGTH:
        raise InvalidGroupNameError(
            f"consumer group name {_excerpt(name)} is {len(name)} characters long, more than "
            f"the maximum of {MAX_GROUP_NAME_LENGTH}; use a shorter name",
            group=name,
            length=len(name),
            max=MAX_GROUP_NAME_LENGTH,
        )
    if name in (".", ".."):
        raise InvalidGroupNameError(
            f"consumer group name {name!r} is reserved, because HTTP clients resolve it as "
            "a path segment; use another name",
            group=name,
        )
    if not _LEGAL_NAME.fullmatch(name):
        illegal = sorted({char for char in name if not _LEGAL_NAME.fullmatch(char)})
        raise InvalidGroupNameError(
            f"consumer group name {_excerpt(name)} contains {''.join(illegal)!r}; only ASCII "
            "letters, digits, '.', '_' and '-' are allowed",
            group=name,
            illegal_characters=illegal,
        )
    return name
