"""Request body decoding and response encoding for JSON and msgpack.

Every endpoint takes and returns ``application/json``. The record endpoints
(produce and fetch) also take ``application/msgpack`` bodies and return
msgpack when the ``Accept`` header prefers it. ``application/x-msgpack`` is
accepted as an alias of ``application/msgpack`` in both directions.

Error bodies are always JSON, whatever the request asked for.
"""

from __future__ import annotations

import enum
import json
from typing import Any, Final

import msgpack
from aiohttp import hdrs, web

from kaflow.errors import MalformedBodyError, RequestTooLargeError, UnsupportedMediaTypeError
from kaflow.server.fields import describe_value, shorten

__all__ = [
    "ALL_FORMATS",
    "JSON_ONLY",
    "BodyFormat",
    "encode_response",
    "json_response",
    "negotiate_response_format",
    "read_body",
]


class BodyFormat(enum.Enum):
    """A body encoding the API speaks, named by its media type."""

    JSON = "application/json"
    MSGPACK = "application/msgpack"


JSON_ONLY: Final = (BodyFormat.JSON,)
ALL_FORMATS: Final = (BodyFormat.JSON, BodyFormat.MSGPACK)

_MEDIA_TYPES: Final = {
    "application/json": BodyFormat.JSON,
    "application/msgpack": BodyFormat.MSGPACK,
    "application/x-msgpack": BodyFormat.MSGPACK,
}

# RFC 8259 makes UTF-8 the only encoding for JSON exchanged between systems.
_JSON_CHARSETS: Final = frozenset({"utf-8", "utf8"})


async def read_body(
    request: web.Request, formats: tuple[BodyFormat, ...]
) -> tuple[Any, BodyFormat]:
    """Read and decode the request body; return the decoded value and its format.

    Raises UnsupportedMediaTypeError for a missing or unlisted Content-Type,
    RequestTooLargeError past the app's client_max_size, and
    MalformedBodyError for an empty body or one that does not decode.
    """
    body_format = _request_format(request, formats)
    raw = await _read_limited(request)
    if not raw:
        raise MalformedBodyError(
            f"request body is empty; send an {body_format.value} object",
            content_type=body_format.value,
        )

    if body_format is BodyFormat.JSON:
        return _decode_json(raw), body_format
    return _decode_msgpack(raw), body_format


def _request_format(request: web.Request, formats: tuple[BodyFormat, ...]) -> BodyFormat:
    supported = [body_format.value for body_format in formats]
    if request.headers.get(hdrs.CONTENT_TYPE) is None:
        raise UnsupportedMediaTypeError(
            f"missing Content-Type header; send one of: {', '.join(supported)}",
            content_type=None,
            supported=supported,
        )

    body_format = _MEDIA_TYPES.get(request.content_type)
    if body_format is None or body_format not in formats:
        raise UnsupportedMediaTypeError(
            f"Content-Type {shorten(request.content_type)!r} is not supported by "
            f"{request.method} {request.path}; send one of: {', '.join(supported)}",
            content_type=request.content_type,
            supported=supported,
        )

    charset = request.charset
    json_charset_ok = charset is None or charset.lower() in _JSON_CHARSETS
    if body_format is BodyFormat.JSON and not json_charset_ok:
        raise UnsupportedMediaTypeError(
            f"charset {shorten(charset or '')!r} is not supported for JSON; "
            "send UTF-8 (charset=utf-8)",
            charset=charset,
            supported=["utf-8"],
        )
    return body_format


async def _read_limited(request: web.Request) -> bytes:
    limit = request.client_max_size
    declared = request.content_length
    # Reject a declared oversize body before reading any of it. A compressed
    # body is checked only after decompression, where the limit applies.
    compressed = hdrs.CONTENT_ENCODING in request.headers
    if declared is not None and declared > limit and not compressed:
        raise RequestTooLargeError(
            f"request body of {declared} bytes exceeds the limit of {limit} bytes; "
            "split the request or raise --max-request-bytes on the node",
            size=declared,
            limit=limit,
        )

    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise RequestTooLargeError(
            f"request body exceeds the limit of {limit} bytes; "
            "split the request or raise --max-request-bytes on the node",
            size=None,
            limit=limit,
        ) from exc
    except web.RequestPayloadError as exc:
        # aiohttp raises this for a body it cannot decode, such as invalid
        # gzip or deflate data under Content-Encoding.
        encoding = request.headers.get("Content-Encoding")
        raise MalformedBodyError(
            f"request body could not be decoded with Content-Encoding {encoding!r}; "
            "send valid data for that encoding, or no Content-Encoding header",
            content_encoding=encoding,
        ) from exc
    except ConnectionResetError as exc:
        # The client closed the connection before sending the whole body, so
        # it will probably not receive this response.
        raise MalformedBodyError(
            f"the connection closed before the request body was complete "
            f"(Content-Length {declared})",
            content_length=declared,
        ) from exc


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


class _DuplicateKeyError(ValueError):
    def __init__(self, key: Any) -> None:
        super().__init__(key)
        self.key = key


def _object_without_duplicates(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    # json.loads and msgpack.unpackb keep the last of repeated keys by
    # default, which would silently drop a field the client sent.
    obj: dict[Any, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise _DuplicateKeyError(key)
        obj[key] = value
    return obj


def _duplicate_key_error(exc: _DuplicateKeyError) -> MalformedBodyError:
    # msgpack map keys may be bin, which has no JSON form for details.
    key = exc.key if isinstance(exc.key, str) else None
    shown = repr(shorten(exc.key)) if isinstance(exc.key, str) else describe_value(exc.key)
    return MalformedBodyError(
        f"request body is not valid: key {shown} appears more than once in one object; "
        "send each key once",
        key=key,
    )


def _decode_json(raw: bytes) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedBodyError(
            f"request body is not valid UTF-8 at byte {exc.start}; JSON must be UTF-8",
            position=exc.start,
        ) from exc

    try:
        return json.loads(
            text, parse_constant=_reject_constant, object_pairs_hook=_object_without_duplicates
        )
    except _DuplicateKeyError as exc:
        raise _duplicate_key_error(exc) from None
    except json.JSONDecodeError as exc:
        raise MalformedBodyError(
            f"request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            line=exc.lineno,
            column=exc.colno,
        ) from exc
    except ValueError as exc:
        # parse_constant rejects NaN and Infinity, which JSON does not define.
        raise MalformedBodyError(f"request body is not valid JSON: {exc}") from exc


def _decode_msgpack(raw: bytes) -> Any:
    try:
        return msgpack.unpackb(
            raw, raw=False, strict_map_key=True, object_pairs_hook=_object_without_duplicates
        )
    except _DuplicateKeyError as exc:
        raise _duplicate_key_error(exc) from None
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        # ValueError covers truncated data, trailing bytes, invalid UTF-8 in
        # str fields and unknown ext types; TypeError covers unhashable map keys.
        raise MalformedBodyError(
            f"request body is not valid msgpack: {exc}", reason=type(exc).__name__
        ) from exc


def negotiate_response_format(request: web.Request, formats: tuple[BodyFormat, ...]) -> BodyFormat:
    """Pick the response format from the Accept header; JSON unless msgpack is preferred.

    Each format gets the q-value of the most specific media range that matches
    it (RFC 9110 section 12.5.1). Ties and an Accept header that matches
    nothing fall back to JSON rather than 406, so plain clients always get a
    readable response.
    """
    accept = request.headers.get(hdrs.ACCEPT)
    if not accept or len(formats) == 1:
        return formats[0]

    ranges = _parse_accept(accept)
    best = formats[0]
    best_quality = _quality(ranges, best)
    for body_format in formats[1:]:
        quality = _quality(ranges, body_format)
        if quality > best_quality:
            best, best_quality = body_format, quality
    return best


def _parse_accept(accept: str) -> list[tuple[str, float]]:
    ranges: list[tuple[str, float]] = []
    for item in accept.split(","):
        media_range, *params = (part.strip() for part in item.split(";"))
        if not media_range:
            continue
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = min(1.0, max(0.0, float(value)))
                except ValueError:
                    quality = 0.0
        ranges.append((media_range.lower(), quality))
    return ranges


def _quality(ranges: list[tuple[str, float]], body_format: BodyFormat) -> float:
    names = {name for name, known in _MEDIA_TYPES.items() if known is body_format}
    main_type = body_format.value.split("/")[0]
    # Specificity: 2 for an exact type, 1 for "type/*", 0 for "*/*".
    best_specificity = -1
    quality = 0.0
    for media_range, range_quality in ranges:
        if media_range in names:
            specificity = 2
        elif media_range == f"{main_type}/*":
            specificity = 1
        elif media_range == "*/*":
            specificity = 0
        else:
            continue
        if specificity > best_specificity:
            best_specificity, quality = specificity, range_quality
    return quality


def encode_response(data: Any, body_format: BodyFormat, status: int = 200) -> web.Response:
    """Encode ``data`` as a response body in ``body_format``."""
    if body_format is BodyFormat.MSGPACK:
        body = msgpack.packb(data, use_bin_type=True)
        return web.Response(body=body, status=status, content_type=BodyFormat.MSGPACK.value)
    return json_response(data, status)


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """Encode ``data`` as a JSON response; NaN and Infinity are rejected as JSON does."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    try:
        body = text.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate (for example from a percent-encoded path) has no
        # UTF-8 form; \u escapes keep the body valid JSON.
        body = json.dumps(data, separators=(",", ":"), allow_nan=False).encode("ascii")
    return web.Response(
        body=body,
        status=status,
        headers=headers,
        content_type=BodyFormat.JSON.value,
    )
