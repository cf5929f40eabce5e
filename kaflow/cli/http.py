"""A small synchronous HTTP client for the node's JSON API (docs/http-api.md).

Each call opens one connection with :mod:`urllib.request`. Error bodies
become the matching :class:`kaflow.errors.KaflowError` subclass through
:func:`kaflow.errors.error_from_payload`; transport failures become
:class:`NodeUnreachableError`. These two translations happen only here.
"""

from __future__ import annotations

import http.client
import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

from kaflow.cli.exit_codes import NodeUnreachableError, UsageError
from kaflow.errors import KaflowError, error_from_payload

__all__ = ["NodeClient", "validate_bootstrap_url"]

logger = logging.getLogger(__name__)

JsonObject = dict[str, Any]
QueryValue = str | int


def validate_bootstrap_url(url: str) -> str:
    """Return ``url`` without a trailing slash; raise UsageError unless it is http(s)://HOST[:PORT].

    The client appends the API paths (``/v1/...``) itself, so a URL with a
    path such as ``/v1`` would address ``/v1/v1/...`` and is rejected.
    """
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise UsageError(
            f"invalid bootstrap URL {url!r}: expected http://HOST:PORT, "
            "for example http://127.0.0.1:8092"
        )
    try:
        # Reading the port raises ValueError unless it is a number in 0..65535.
        _ = parsed.port
    except ValueError:
        raise UsageError(
            f"invalid bootstrap URL {url!r}: the port must be a number in 0..65535"
        ) from None
    if parsed.query or parsed.fragment:
        raise UsageError(f"invalid bootstrap URL {url!r}: remove the query string or fragment")
    if parsed.path not in ("", "/"):
        raise UsageError(
            f"invalid bootstrap URL {url!r}: remove the path {parsed.path!r}; "
            "give only http://HOST:PORT, the client adds /v1/... itself"
        )
    return url.removesuffix("/")


def _quote(segment: str | int) -> str:
    return urllib.parse.quote(str(segment), safe="")


def _list_field(response: JsonObject, name: str) -> list[JsonObject]:
    value = response.get(name)
    if not isinstance(value, list):
        raise KaflowError(f"response field {name!r} is {value!r} where a list was expected")
    return value


class NodeClient:
    """Send JSON requests to one node.

    ``timeout_s`` bounds connecting and each socket read. Proxy variables
    such as ``http_proxy`` are ignored: the CLI always talks to the node
    directly.
    """

    def __init__(self, base_url: str, timeout_s: float) -> None:
        self.base_url = validate_bootstrap_url(base_url)
        self.timeout_s = timeout_s
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    # Topics.

    def list_topics(self) -> list[JsonObject]:
        return _list_field(self.request_object("GET", "/v1/topics"), "topics")

    def describe_topic(self, topic: str) -> JsonObject:
        return self.request_object("GET", f"/v1/topics/{_quote(topic)}")

    def create_topic(self, topic: str, partitions: int, config: Mapping[str, Any]) -> JsonObject:
        body = {"name": topic, "partitions": partitions, "config": dict(config)}
        return self.request_object("POST", "/v1/topics", body=body)

    def alter_topic(
        self, topic: str, partitions: int | None, config: Mapping[str, Any]
    ) -> JsonObject:
        body: JsonObject = {}
        if partitions is not None:
            body["partitions"] = partitions
        if config:
            body["config"] = dict(config)
        return self.request_object("PATCH", f"/v1/topics/{_quote(topic)}", body=body)

    def delete_topic(self, topic: str) -> None:
        self.request("DELETE", f"/v1/topics/{_quote(topic)}")

    # Records.

    def produce_encoded(self, topic: str, body: bytes) -> list[JsonObject]:
        """Send an already encoded ``{"records": [...]}`` body and return the record metadata."""
        path = f"/v1/topics/{_quote(topic)}/records"
        return _list_field(self.request_object("POST", path, raw_body=body), "records")

    def fetch(
        self, topic: str, partition: int, offset: int, max_records: int, max_wait_ms: int
    ) -> JsonObject:
        path = f"/v1/topics/{_quote(topic)}/partitions/{partition}/records"
        query: dict[str, QueryValue] = {
            "offset": offset,
            "max_records": max_records,
            "max_wait_ms": max_wait_ms,
        }
        # The node keeps a long poll open for up to max_wait_ms before it responds.
        timeout_s = self.timeout_s + max_wait_ms / 1000
        return self.request_object("GET", path, query=query, timeout_s=timeout_s)

    def lookup_offset(self, topic: str, partition: int, at: str | int) -> JsonObject:
        path = f"/v1/topics/{_quote(topic)}/partitions/{partition}/offsets"
        return self.request_object("GET", path, query={"at": at})

    # Consumer group offsets.

    def commit_offsets(self, group: str, offsets: list[JsonObject]) -> None:
        self.request("POST", f"/v1/groups/{_quote(group)}/offsets", body={"offsets": offsets})

    def committed_offsets(self, group: str) -> list[JsonObject]:
        response = self.request_object("GET", f"/v1/groups/{_quote(group)}/offsets")
        return _list_field(response, "offsets")

    # Transport.

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, QueryValue] | None = None,
        body: Any = None,
        raw_body: bytes | None = None,
        timeout_s: float | None = None,
    ) -> Any:
        """Send one request and return the decoded JSON body (None for an empty body).

        Raises the KaflowError subclass named by an error response, and
        NodeUnreachableError when no response arrives.
        """
        url = self.base_url + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = raw_body
        if body is not None:
            data = json.dumps(body).encode()

        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")

        logger.debug(
            "sending request method=%s url=%s body_bytes=%d", method, url, len(data or b"")
        )
        raw = self._send(request, timeout_s if timeout_s is not None else self.timeout_s)
        return self._decode_success(raw, method, url)

    def request_object(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, QueryValue] | None = None,
        body: Any = None,
        raw_body: bytes | None = None,
        timeout_s: float | None = None,
    ) -> JsonObject:
        """Send one request whose response must be a JSON object, and return it."""
        response = self.request(
            method, path, query=query, body=body, raw_body=raw_body, timeout_s=timeout_s
        )
        if not isinstance(response, dict):
            raise KaflowError(
                f"{method} {path} returned {response!r} where a JSON object was expected",
                path=path,
            )
        return response

    def _send(self, request: urllib.request.Request, timeout_s: float) -> bytes:
        try:
            with self._opener.open(request, timeout=timeout_s) as response:
                raw: bytes = response.read()
                return raw
        except urllib.error.HTTPError as exc:
            raise self._error_from_response(exc) from None
        except urllib.error.URLError as exc:
            raise NodeUnreachableError(
                f"cannot connect to the node at {self.base_url}: {exc.reason}; "
                "check that it is running and that --bootstrap points at its HTTP address",
                self.base_url,
            ) from exc
        except TimeoutError as exc:
            raise NodeUnreachableError(
                f"no response from the node at {self.base_url} within {timeout_s:g} s; "
                "raise --timeout or check the node's log",
                self.base_url,
            ) from exc
        except (ConnectionError, http.client.HTTPException) as exc:
            raise NodeUnreachableError(
                f"connection to the node at {self.base_url} failed: {exc!r}", self.base_url
            ) from exc

    def _error_from_response(self, exc: urllib.error.HTTPError) -> KaflowError:
        try:
            raw = exc.read()
        except (OSError, http.client.HTTPException):
            raw = b""
        try:
            payload: Any = json.loads(raw)
        except ValueError:
            payload = raw.decode(errors="replace")
        error = error_from_payload(payload)
        error.details.setdefault("http_status", exc.code)
        return error

    def _decode_success(self, raw: bytes, method: str, url: str) -> Any:
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            preview = raw[:200].decode(errors="replace")
            raise KaflowError(
                f"{method} {url} returned a body that is not JSON: {preview!r}", url=url
            ) from None
