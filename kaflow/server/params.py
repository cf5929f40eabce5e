"""Query string and path parameters with their defaults and limits.

Integers in query strings are plain ASCII decimal (``-?[0-9]+``); Python's
``int()`` alone would also take ``+5``, ``1_000``, spaces and non-ASCII
digits. A digit string longer than 20 characters is out of range without
being converted, because every limit fits in 64 bits. Every endpoint
rejects unknown and repeated query parameters, so a misspelled
``max_record=5`` fails instead of being ignored.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from multidict import MultiMapping

from kaflow.errors import InvalidOffsetError, InvalidRequestError
from kaflow.server.fields import INT32_MAX, INT64_MAX, shorten
from kaflow.server.record_codec import JsonBytesEncoding

__all__ = [
    "FETCH_MAX_BYTES_LIMIT",
    "FETCH_MAX_RECORDS_LIMIT",
    "FETCH_MAX_WAIT_MS_LIMIT",
    "FetchParams",
    "Query",
    "parse_lookup_at",
    "parse_partition",
]

_INTEGER = re.compile(r"-?[0-9]+")
# len(str(-2**63)): no longer digit string fits in a signed 64-bit integer.
_MAX_INTEGER_LENGTH: Final = 20
_INT64_MIN: Final = -(2**63)

FETCH_MAX_RECORDS_DEFAULT: Final = 500
FETCH_MAX_RECORDS_LIMIT: Final = 10_000
FETCH_MAX_BYTES_DEFAULT: Final = 1024 * 1024
FETCH_MAX_BYTES_LIMIT: Final = 64 * 1024 * 1024
FETCH_MAX_WAIT_MS_DEFAULT: Final = 0
# A long poll keeps its connection open for the whole wait.
FETCH_MAX_WAIT_MS_LIMIT: Final = 30_000


class Query:
    """The query string of one request, read parameter by parameter."""

    def __init__(self, query: MultiMapping[str], allowed: Iterable[str]) -> None:
        self.query = query
        allowed_set = set(allowed)
        for name in query:
            if name not in allowed_set:
                valid = ", ".join(sorted(allowed_set)) or "none"
                raise InvalidRequestError(
                    f"unknown query parameter {shorten(name)!r}; valid parameters: {valid}",
                    parameter=shorten(name),
                    valid=sorted(allowed_set),
                )
            if len(query.getall(name)) > 1:
                raise InvalidRequestError(
                    f"query parameter {name!r} is given {len(query.getall(name))} times; "
                    "give it once",
                    parameter=name,
                )

    def get(self, name: str) -> str | None:
        return self.query.get(name)

    def integer(
        self,
        name: str,
        default: int | None,
        minimum: int,
        maximum: int,
        error: type[InvalidRequestError] = InvalidRequestError,
    ) -> int:
        """Return the integer parameter ``name`` within minimum..maximum.

        ``default`` None makes the parameter required.
        """
        raw = self.query.get(name)
        if raw is None:
            if default is None:
                raise error(
                    f"query parameter {name!r} is missing; "
                    f"it must be an integer in {minimum}..{maximum}",
                    parameter=name,
                    min=minimum,
                    max=maximum,
                )
            return default
        return parse_integer(raw, f"query parameter {name!r}", name, minimum, maximum, error)


def parse_integer(
    raw: str,
    label: str,
    name: str,
    minimum: int,
    maximum: int,
    error: type[InvalidRequestError] = InvalidRequestError,
) -> int:
    """Parse ``raw`` as a decimal integer in minimum..maximum or raise ``error``."""
    if not _INTEGER.fullmatch(raw):
        problem = "is not an integer"
    elif len(raw) > _MAX_INTEGER_LENGTH or not _INT64_MIN <= int(raw) <= INT64_MAX:
        problem = "is outside the 64-bit integer range"
    elif not minimum <= int(raw) <= maximum:
        problem = "is out of range"
    else:
        return int(raw)
    raise error(
        f"{label} {problem}: {shorten(raw, 40)!r}; it must be an integer in {minimum}..{maximum}",
        parameter=name,
        value=raw,
        min=minimum,
        max=maximum,
    )


def parse_partition(raw: str) -> int:
    """Parse the ``{partition}`` path segment; the broker checks it exists."""
    return parse_integer(raw, "partition in the path", "partition", 0, INT32_MAX)


@dataclass(frozen=True, slots=True)
class FetchParams:
    """The query parameters of a fetch."""

    offset: int
    max_records: int
    max_bytes: int
    max_wait_ms: int
    encoding: JsonBytesEncoding

    @classmethod
    def from_query(cls, query: MultiMapping[str]) -> FetchParams:
        params = Query(query, {"offset", "max_records", "max_bytes", "max_wait_ms", "encoding"})
        return cls(
            offset=params.integer("offset", None, 0, INT64_MAX, InvalidOffsetError),
            max_records=params.integer(
                "max_records", FETCH_MAX_RECORDS_DEFAULT, 1, FETCH_MAX_RECORDS_LIMIT
            ),
            max_bytes=params.integer(
                "max_bytes", FETCH_MAX_BYTES_DEFAULT, 1, FETCH_MAX_BYTES_LIMIT
            ),
            max_wait_ms=params.integer(
                "max_wait_ms", FETCH_MAX_WAIT_MS_DEFAULT, 0, FETCH_MAX_WAIT_MS_LIMIT
            ),
            encoding=_parse_encoding(params.get("encoding")),
        )


def _parse_encoding(raw: str | None) -> JsonBytesEncoding:
    if raw is None:
        return JsonBytesEncoding.AUTO
    try:
        return JsonBytesEncoding(raw)
    except ValueError:
        valid = [encoding.value for encoding in JsonBytesEncoding]
        raise InvalidRequestError(
            f"query parameter 'encoding' is {shorten(raw, 40)!r}; valid values: {', '.join(valid)}",
            parameter="encoding",
            value=raw,
            valid=valid,
        ) from None


def parse_lookup_at(query: MultiMapping[str]) -> str | int:
    """Parse ``at`` of an offset lookup: ``earliest``, ``latest`` or a timestamp in ms."""
    params = Query(query, {"at"})
    raw = params.get("at")
    if raw is None:
        raise InvalidRequestError(
            "query parameter 'at' is missing; use earliest, latest or a timestamp in ms",
            parameter="at",
        )
    if raw in ("earliest", "latest"):
        return raw
    if not _INTEGER.fullmatch(raw):
        raise InvalidRequestError(
            f"query parameter 'at' is {shorten(raw, 40)!r}; use earliest, latest or a "
            f"timestamp in ms (an integer in 0..{INT64_MAX})",
            parameter="at",
            value=raw,
        )
    return parse_integer(raw, "query parameter 'at'", "at", 0, INT64_MAX)
