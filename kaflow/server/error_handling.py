"""The error middleware: every failure becomes a JSON error body.

Handlers raise :class:`kaflow.errors.KaflowError` subclasses; aiohttp raises
its own HTTP exceptions for unknown routes (404), wrong methods (405) and
bodies over ``client_max_size`` (413). The middleware turns both into
``{"error": {"code", "message", "retriable", "details"}}`` with the error's
HTTP status. Anything else is a bug: it is logged with its traceback, and
the client gets a 500 ``internal_error`` whose body carries an
``error_id`` that appears in the log line, never the traceback.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from kaflow.errors import (
    InternalError,
    InvalidRequestError,
    KaflowError,
    MethodNotAllowedError,
    NotFoundError,
    RequestTooLargeError,
    UnsupportedMediaTypeError,
)
from kaflow.server.media import json_response

__all__ = ["FailureEpisodes", "error_middleware", "error_response", "translate_http_error"]

logger = logging.getLogger(__name__)

# Statuses of aiohttp's HTTP exceptions that have a Kaflow error class of their own.
_HTTP_ERROR_CLASSES: Final[dict[int, type[KaflowError]]] = {
    404: NotFoundError,
    405: MethodNotAllowedError,
    413: RequestTooLargeError,
    415: UnsupportedMediaTypeError,
}


def error_response(error: KaflowError, headers: dict[str, str] | None = None) -> web.Response:
    """Render ``error`` as its JSON body with its HTTP status.

    A detail value that JSON cannot carry (bytes from a msgpack body, NaN)
    is replaced by its repr, so rendering an error never fails itself.
    """
    payload = error.to_payload()
    try:
        return json_response(payload, status=error.http_status, headers=headers)
    except (TypeError, ValueError):
        payload["error"]["details"] = {
            key: value if _is_plain_json(value) else repr(value)
            for key, value in error.details.items()
        }
        return json_response(payload, status=error.http_status, headers=headers)


def _is_plain_json(value: object) -> bool:
    if isinstance(value, float):
        return value == value and value not in (float("inf"), float("-inf"))
    return value is None or isinstance(value, str | int | bool)


def translate_http_error(exc: web.HTTPException, request: web.Request) -> KaflowError:
    """Map one of aiohttp's HTTP exceptions to the Kaflow error for its status."""
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = sorted(exc.allowed_methods)
        return MethodNotAllowedError(
            f"method {request.method} is not allowed on {request.path}; "
            f"allowed methods: {', '.join(allowed)}",
            method=request.method,
            allowed=allowed,
        )
    if exc.status == 404:
        return NotFoundError(
            f"no endpoint at {request.method} {request.path}; GET /v1 lists the endpoints",
            path=request.path,
        )
    if exc.status == 413:
        limit = request.client_max_size
        return RequestTooLargeError(
            f"request body exceeds the limit of {limit} bytes; "
            "split the request or raise --max-request-bytes on the node",
            limit=limit,
        )

    error_class = _HTTP_ERROR_CLASSES.get(exc.status)
    if error_class is None:
        error_class = InvalidRequestError if exc.status < 500 else InternalError
    return error_class(f"{exc.reason}: {exc.text}", status=exc.status)


class FailureEpisodes:
    """Logs server-side failures (5xx) once per episode instead of once per request.

    An episode is a run of failures with one error code on one route. The
    first failure logs a WARNING; later ones only count until a request on
    that route succeeds, which logs the count at INFO and ends the episode.
    """

    def __init__(self) -> None:
        self._failures: dict[tuple[str, str], int] = {}

    def failed(self, route: str, error: KaflowError) -> None:
        key = (route, error.code)
        count = self._failures.get(key, 0)
        if count == 0:
            logger.warning(
                "request failed route=%r code=%s status=%d message=%r "
                "(further failures like it are counted, not logged)",
                route,
                error.code,
                error.http_status,
                error.message,
            )
        self._failures[key] = count + 1

    def succeeded(self, route: str) -> None:
        for key in [key for key in self._failures if key[0] == route]:
            logger.info(
                "requests succeed again route=%r code=%s failures=%d",
                route,
                key[1],
                self._failures.pop(key),
            )

    def open_episodes(self) -> dict[tuple[str, str], int]:
        """Return the failure count of every open episode, keyed by (route, code)."""
        return dict(self._failures)


def _route_name(request: web.Request) -> str:
    resource = request.match_info.route.resource
    path = resource.canonical if resource is not None else request.path
    return f"{request.method} {path}"


def error_middleware(episodes: FailureEpisodes) -> Middleware:
    """Build the middleware that renders every error as a JSON error body."""

    @web.middleware
    async def render_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await _render_errors(request, handler, episodes)
        _close_after_body_error(request, response)
        return response

    return render_errors


def _close_after_body_error(request: web.Request, response: web.StreamResponse) -> None:
    """End the connection after a request body that failed to decode.

    After bad Content-Encoding data aiohttp's parser cannot find where the
    next request starts, and its payload stream holds the error. aiohttp
    drains an unread body after the response and would re-raise that error
    there, logging "Unhandled exception" with a traceback for a request that
    already got its 400. Marking the stream finished skips the drain.
    """
    if request.content.exception() is None:
        return
    logger.debug(
        "closing the connection after a request body that failed to decode method=%s path=%s",
        request.method,
        request.path,
    )
    request.content.feed_eof()
    response.force_close()


async def _render_errors(
    request: web.Request, handler: Handler, episodes: FailureEpisodes
) -> web.StreamResponse:
    route = _route_name(request)
    already_logged = False
    try:
        response = await handler(request)
    except KaflowError as exc:
        error: KaflowError = exc
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        error = translate_http_error(exc, request)
    except asyncio.CancelledError:
        # The client went away or the server is stopping; aiohttp handles it.
        raise
    except Exception:
        error_id = uuid.uuid4().hex[:12]
        logger.exception(
            "unhandled error error_id=%s method=%s path=%s",
            error_id,
            request.method,
            request.path,
        )
        already_logged = True
        error = InternalError(
            f"internal error while handling {request.method} {request.path}; "
            f"the node's log has the details under error_id={error_id}",
            error_id=error_id,
        )
    else:
        if response.status < 400:
            episodes.succeeded(route)
        return response

    if error.http_status >= 500 and not already_logged:
        episodes.failed(route, error)
    elif error.http_status < 500:
        logger.debug(
            "request rejected route=%r code=%s message=%r", route, error.code, error.message
        )

    headers = None
    if isinstance(error, MethodNotAllowedError):
        headers = {"Allow": ", ".join(error.details.get("allowed", []))}
    return error_response(error, headers)
