"""Fetch raw batches from a peer's internal endpoint.

``GET {peer}/internal/v1/partitions/{topic}/{partition}/batches?from=N&max_bytes=M``
responds with 200 with ``application/octet-stream`` whole batches and the
offsets of :class:`~kaflow.catchup.serving.PeerBatches` in response headers,
or with the usual JSON error body. Errors come back as the same Kaflow
error classes; a peer that cannot be reached becomes ReplicaNotAvailableError.
"""

from __future__ import annotations

import json
from urllib.parse import quote

import aiohttp

from kaflow.catchup.serving import (
    BATCHES_PATH,
    HEADER_HIGH_WATERMARK,
    HEADER_LOG_END_OFFSET,
    HEADER_LOG_START_OFFSET,
    HEADER_TOPIC_ID,
    PeerBatches,
)
from kaflow.errors import KaflowError, ReplicaNotAvailableError, error_from_payload

__all__ = ["PeerClient"]


class PeerClient:
    """An HTTP client for the back-fill endpoint of other members."""

    def __init__(self, timeout_s: float) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def fetch_batches(
        self, base_url: str, topic: str, partition: int, offset: int, max_bytes: int
    ) -> PeerBatches:
        """Fetch batches from ``offset``; raise the peer's error or ReplicaNotAvailableError."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        path = BATCHES_PATH.format(topic=quote(topic, safe=""), partition=partition)
        url = f"{base_url.rstrip('/')}{path}"
        params = {"from": str(offset), "max_bytes": str(max_bytes)}
        try:
            async with self._session.get(url, params=params) as response:
                body = await response.read()
                if response.status != 200:
                    raise _error_from_body(response.status, body)
                return PeerBatches(
                    data=body,
                    log_start_offset=_int_header(response, HEADER_LOG_START_OFFSET),
                    log_end_offset=_int_header(response, HEADER_LOG_END_OFFSET),
                    high_watermark=_int_header(response, HEADER_HIGH_WATERMARK),
                    topic_id=_int_header(response, HEADER_TOPIC_ID),
                )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ReplicaNotAvailableError(
                f"peer {base_url} failed to respond to a back-fill request: "
                f"{exc or type(exc).__name__}",
                peer=base_url,
            ) from exc

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()


def _int_header(response: aiohttp.ClientResponse, name: str) -> int:
    raw = response.headers.get(name, "")
    try:
        return int(raw)
    except ValueError:
        raise ReplicaNotAvailableError(
            f"peer response lacks a valid {name} header (got {raw!r}); is the peer a Kaflow "
            "node of this version?",
            header=name,
        ) from None


def _error_from_body(status: int, body: bytes) -> KaflowError:
    try:
        payload = json.loads(body)
    except ValueError:
        return ReplicaNotAvailableError(
            f"peer responded with HTTP {status} and a body that is not JSON: {body[:200]!r}",
            status=status,
        )
    return error_from_payload(payload)
