"""Reading every node's copy of the run's topic after the run, for the checker.

Each node is read on its own URL, with byte fields in base64 so that the
checker compares exact bytes. Before reading, :func:`wait_converged` waits
until every node has applied the leader's commit index.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import aiohttp

from chaos.api import ChaosCluster, ChaosNode
from chaos.http import NodeHttpError, request_json, wait_for
from chaos.verdict import NodeLog

__all__ = ["read_node", "read_nodes", "wait_converged"]

logger = logging.getLogger(__name__)

FETCH_MAX_RECORDS = 10_000
READ_TIMEOUT_S = 60.0


async def wait_converged(
    session: aiohttp.ClientSession, cluster: ChaosCluster, timeout_s: float
) -> bool:
    """Wait until every running node's applied index reaches the leader's commit index."""
    leader = await cluster.leader()
    if leader is None:
        return False
    try:
        status = await request_json(session, "GET", leader.http_url + "/v1/cluster")
    except NodeHttpError:
        return False
    target = int(status["commit_index"])

    async def converged() -> bool:
        for node in cluster.nodes:
            try:
                body = await request_json(session, "GET", node.http_url + "/v1/cluster")
            except NodeHttpError:
                return False
            if int(body.get("applied_index") or 0) < target:
                return False
        return True

    return await wait_for(converged, timeout_s, interval_s=0.25)


async def _fetch(
    session: aiohttp.ClientSession, node: ChaosNode, topic: str, partition: int, offset: int
) -> dict[str, Any]:
    url = (
        f"{node.http_url}/v1/topics/{topic}/partitions/{partition}/records"
        f"?offset={offset}&max_records={FETCH_MAX_RECORDS}&encoding=base64"
    )
    deadline = time.monotonic() + READ_TIMEOUT_S
    while True:
        try:
            body: dict[str, Any] = await request_json(session, "GET", url, timeout_s=10.0)
            return body
        except NodeHttpError as exc:
            retriable = exc.status is None or exc.status >= 500
            if not retriable or time.monotonic() >= deadline:
                raise
            await asyncio.sleep(0.5)


async def read_node(
    session: aiohttp.ClientSession, node: ChaosNode, topic: str, partitions: int
) -> dict[int, NodeLog]:
    """Return every record of every partition of ``topic`` as ``node`` stores it."""
    logs: dict[int, NodeLog] = {}
    for partition in range(partitions):
        try:
            body = await _fetch(session, node, topic, partition, 0)
        except NodeHttpError as exc:
            # 416 offset_out_of_range: offset 0 is below the log start offset.
            if exc.status != 416 or not isinstance(exc.body, dict):
                raise
            start = int(exc.body["error"]["details"]["log_start_offset"])
            body = await _fetch(session, node, topic, partition, start)
        log = NodeLog(
            int(body["log_start_offset"]), int(body["high_watermark"]), list(body["records"])
        )
        offset = int(body["next_offset"])
        while offset < log.high_watermark:
            body = await _fetch(session, node, topic, partition, offset)
            if not body["records"]:
                break
            log.records += body["records"]
            offset = int(body["next_offset"])
        logs[partition] = log
    return logs


async def read_nodes(
    cluster: ChaosCluster, topic: str, partitions: int
) -> tuple[dict[str, dict[int, NodeLog]], dict[str, str]]:
    """Read every node; return the logs of those read and the error of each one that failed."""
    logs: dict[str, dict[int, NodeLog]] = {}
    errors: dict[str, str] = {}
    async with aiohttp.ClientSession() as session:
        if not await wait_converged(session, cluster, READ_TIMEOUT_S):
            logger.warning("nodes did not converge before the read timeout_s=%s", READ_TIMEOUT_S)
        for node in cluster.nodes:
            try:
                logs[node.name] = await read_node(session, node, topic, partitions)
            except NodeHttpError as exc:
                errors[node.name] = str(exc)
    return logs, errors
