"""The HTTP layer shared by the admin client, the producer and the consumer.

:class:`Transport` sends JSON requests to the cluster's nodes. It learns the
members' HTTP URLs from ``GET /v1/cluster`` on any bootstrap node, and on a
retriable error or a connection failure it tries the next node after a
backoff, until a retry timeout runs out. Error bodies become their
:mod:`kaflow.errors` class and aiohttp's failures become
:class:`NodeUnreachableError`, both only here.
"""

from __future__ import annotations

import json
import logging
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_delay,
    wait_exponential,
)

from kaflow.client.errors import ClientClosedError, NodeUnreachableError
from kaflow.errors import KaflowError, error_from_payload

__all__ = ["Transport", "is_retriable", "quote"]

logger = logging.getLogger(__name__)

QueryValue = str | int


def quote(segment: str | int) -> str:
    """Quote one URL path segment, such as a topic or group name."""
    return urllib.parse.quote(str(segment), safe="")


def is_retriable(error: BaseException) -> bool:
    """Return True for errors after which sending the same request again may succeed."""
    if isinstance(error, NodeUnreachableError):
        return True
    return isinstance(error, KaflowError) and error.retriable


def _check_url(url: str) -> str:
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError(f"invalid node URL {url!r}: expected http://HOST:PORT")
    if parsed.path not in ("", "/"):
        raise ValueError(f"invalid node URL {url!r}: remove the path {parsed.path!r}")
    return url.removesuffix("/")


class Transport:
    """Send JSON requests to a Kaflow cluster, with discovery, failover and retries.

    ``request_timeout_ms`` bounds one HTTP exchange; ``retry_timeout_ms``
    bounds all attempts of one call together.
    """

    def __init__(
        self,
        bootstrap: Sequence[str],
        *,
        request_timeout_ms: int = 30_000,
        retry_timeout_ms: int = 30_000,
        retry_backoff_ms: int = 100,
        max_backoff_ms: int = 1_000,
    ) -> None:
        if isinstance(bootstrap, str):
            bootstrap = [bootstrap]
        if not bootstrap:
            raise ValueError("bootstrap is empty: give at least one node URL like http://HOST:PORT")
        self._bootstrap = [_check_url(url) for url in bootstrap]
        self._urls = list(self._bootstrap)
        self._next_index = 0
        self.request_timeout_s = request_timeout_ms / 1000
        self.retry_timeout_s = retry_timeout_ms / 1000
        self._backoff_s = retry_backoff_ms / 1000
        self._max_backoff_s = max_backoff_ms / 1000
        self._session: aiohttp.ClientSession | None = None
        self._discovered = False
        self._closed = False

    @property
    def urls(self) -> list[str]:
        """The node URLs the transport currently rotates through."""
        return list(self._urls)

    async def close(self) -> None:
        """Close the connection pool; later requests raise ClientClosedError."""
        self._closed = True
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, QueryValue] | None = None,
        retry_timeout_s: float | None = None,
        request_timeout_s: float | None = None,
    ) -> Any:
        """Send one request and return the decoded JSON body (None for an empty body).

        Retriable errors and connection failures are retried on the next
        node with exponential backoff. After ``retry_timeout_s`` (default:
        the transport's) the last error is raised.
        """
        if not self._discovered:
            await self.discover()

        timeout_s = self.retry_timeout_s if retry_timeout_s is None else retry_timeout_s
        retrying = AsyncRetrying(
            stop=stop_after_delay(max(timeout_s, 0.0)),
            wait=wait_exponential(multiplier=self._backoff_s, max=self._max_backoff_s),
            retry=retry_if_exception(is_retriable),
            before_sleep=self._log_retry,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                url = self._pick_url()
                try:
                    return await self.request_once(
                        url, method, path, body=body, params=params, timeout_s=request_timeout_s
                    )
                except NodeUnreachableError:
                    self._next_index += 1
                    raise
                except KaflowError as error:
                    if error.retriable:
                        self._next_index += 1
                    raise
        raise AssertionError("unreachable: tenacity either returns or raises")

    def rotate(self) -> None:
        """Send the next request to the next node, for example after this one proved behind."""
        self._next_index += 1

    def _pick_url(self) -> str:
        return self._urls[self._next_index % len(self._urls)]

    def _log_retry(self, state: Any) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        logger.info(
            "retrying request attempt=%d error=%r next_url=%s",
            state.attempt_number,
            error,
            self._pick_url(),
        )

    async def request_once(
        self,
        url: str,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, QueryValue] | None = None,
        timeout_s: float | None = None,
    ) -> Any:
        """Send one request to the node at ``url`` without retrying."""
        session = self._get_session()
        timeout = aiohttp.ClientTimeout(total=timeout_s or self.request_timeout_s)
        try:
            async with session.request(
                method,
                url + path,
                json=None if body is None else dict(body),
                params=None if params is None else {k: str(v) for k, v in params.items()},
                timeout=timeout,
            ) as response:
                raw = await response.read()
                status = response.status
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise NodeUnreachableError(
                f"request {method} {path} to {url} failed: {exc!r}; "
                "check that the node runs and the URL is right",
                [url],
            ) from exc

        decoded = _decode_json(raw, url, status)
        if status >= 400:
            raise error_from_payload(decoded)
        return decoded

    def _get_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise ClientClosedError("the client is closed: create a new one to send requests")
        if self._session is None:
            # Proxy variables are ignored: the client talks to the nodes directly.
            self._session = aiohttp.ClientSession(trust_env=False)
        return self._session

    async def discover(self) -> list[str]:
        """Replace the node list with the members' HTTP URLs from ``GET /v1/cluster``.

        The known and bootstrap URLs are tried in turn. When none responds, the
        node list stays as it is, and the next request's retries report the failure.
        """
        for url in [*self._urls, *self._bootstrap]:
            try:
                cluster = await self.request_once(url, "GET", "/v1/cluster")
            except (KaflowError, NodeUnreachableError) as error:
                logger.debug("cluster discovery failed url=%s error=%r", url, error)
                continue
            members = cluster.get("members") if isinstance(cluster, dict) else None
            found = [
                _check_url(member["http_address"])
                for member in members or []
                if isinstance(member, dict) and isinstance(member.get("http_address"), str)
            ]
            if found:
                if found != self._urls:
                    logger.info("discovered cluster nodes urls=%s", ",".join(found))
                self._urls = found
                self._next_index = 0
            self._discovered = True
            return list(self._urls)
        return list(self._urls)


def _decode_json(raw: bytes, url: str, status: int) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        text = raw[:200].decode(errors="replace")
        raise KaflowError(
            f"{url} sent HTTP {status} with a body that is not JSON: {text!r}"
        ) from None
