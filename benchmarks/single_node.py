"""Single-node produce and fetch benchmark over the HTTP API.

Starts a fresh `kaflow serve` process on 127.0.0.1 (or uses ``--url``), then
measures, for records of ``--record-bytes``:

- produce throughput with ``--concurrency`` requests in flight, each carrying
  ``--batch`` records;
- produce latency of single-record requests with one request in flight
  (p50, p99, max);
- fetch throughput reading everything back with large fetches.

Usage: ``python benchmarks/single_node.py [--duration 10] [--output json]``.
It prints a Markdown table (or JSON) and the command line that produced it.
Tests never run this file: it measures time, which tests must not assert on.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import msgpack


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


async def wait_ready(session: aiohttp.ClientSession, url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            async with session.get(f"{url}/v1/health/ready") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise SystemExit(f"node at {url} was not ready within {timeout} s")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_node(data_dir: Path, fsync: str) -> tuple[subprocess.Popen[bytes], str]:
    ready_file = data_dir.parent / "ready.json"
    command = [
        sys.executable, "-m", "kaflow", "serve",
        "--data-dir", str(data_dir), "--port", "0", "--raft-port", str(free_port()),
        "--ready-file", str(ready_file), "--fsync", fsync, "--log-level", "WARNING",
    ]  # fmt: skip
    process = subprocess.Popen(command)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"kaflow serve exited with {process.returncode}")
        if ready_file.exists():
            try:
                return process, json.loads(ready_file.read_text())["http"]
            except ValueError:
                pass
        time.sleep(0.05)
    process.kill()
    raise SystemExit("kaflow serve did not write its ready file within 60 s")


async def produce_throughput(
    session: aiohttp.ClientSession, url: str, topic: str, args: argparse.Namespace
) -> dict[str, Any]:
    value = "x" * args.record_bytes
    body = json.dumps({"records": [{"value": value}] * args.batch}).encode()
    headers = {"Content-Type": "application/json"}
    deadline = time.monotonic() + args.duration
    produced = 0
    latencies: list[float] = []

    async def worker() -> None:
        nonlocal produced
        while time.monotonic() < deadline:
            started = time.perf_counter()
            async with session.post(
                f"{url}/v1/topics/{topic}/records", data=body, headers=headers
            ) as response:
                await response.read()
                if response.status != 200:
                    raise SystemExit(f"produce failed: HTTP {response.status}")
            latencies.append(time.perf_counter() - started)
            produced += args.batch

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    elapsed = time.perf_counter() - started
    return {
        "records": produced,
        "records_per_s": produced / elapsed,
        "mb_per_s": produced * args.record_bytes / elapsed / 1e6,
        "request_p50_ms": percentile(latencies, 0.5) * 1000,
        "request_p99_ms": percentile(latencies, 0.99) * 1000,
    }


async def produce_latency(
    session: aiohttp.ClientSession, url: str, topic: str, args: argparse.Namespace
) -> dict[str, Any]:
    body = json.dumps({"records": [{"value": "y" * args.record_bytes}]}).encode()
    headers = {"Content-Type": "application/json"}
    latencies: list[float] = []
    for _ in range(args.latency_requests):
        started = time.perf_counter()
        async with session.post(
            f"{url}/v1/topics/{topic}/records", data=body, headers=headers
        ) as response:
            await response.read()
        latencies.append(time.perf_counter() - started)
    return {
        "requests": len(latencies),
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "max_ms": max(latencies) * 1000,
        "mean_ms": statistics.fmean(latencies) * 1000,
    }


async def fetch_throughput(
    session: aiohttp.ClientSession, url: str, topic: str, partitions: int
) -> dict[str, Any]:
    total = 0
    started = time.perf_counter()
    for partition in range(partitions):
        offset = 0
        while True:
            query = f"offset={offset}&max_records=10000&max_bytes=8388608"
            async with session.get(
                f"{url}/v1/topics/{topic}/partitions/{partition}/records?{query}",
                headers={"Accept": "application/msgpack"},
            ) as response:
                raw = await response.read()
                if response.status != 200:
                    raise SystemExit(f"fetch failed: HTTP {response.status}: {raw[:200]!r}")
            page = msgpack.unpackb(raw)
            total += len(page["records"])
            if page["next_offset"] >= page["high_watermark"]:
                break
            offset = page["next_offset"]
    elapsed = time.perf_counter() - started
    return {"records": total, "records_per_s": total / elapsed}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    process = None
    scratch = None
    url = args.url
    if url is None:
        scratch = Path(tempfile.mkdtemp(prefix="kaflow-bench-"))
        process, url = start_node(scratch / "data", args.fsync)
    try:
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=args.concurrency + 4)
        ) as session:
            await wait_ready(session, url, 60)
            topic = f"bench-{int(time.time())}"
            async with session.post(
                f"{url}/v1/topics", json={"name": topic, "partitions": args.partitions}
            ) as response:
                if response.status != 201:
                    raise SystemExit(f"topic create failed: {await response.text()}")
            throughput = await produce_throughput(session, url, topic, args)
            latency = await produce_latency(session, url, topic, args)
            fetch = await fetch_throughput(session, url, topic, args.partitions)
    finally:
        if process is not None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    return {
        "command": " ".join(sys.argv),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "python": platform.python_version(),
        "settings": vars(args),
        "produce": throughput,
        "latency": latency,
        "fetch": fetch,
    }


def print_table(result: dict[str, Any]) -> None:
    produce, latency, fetch = result["produce"], result["latency"], result["fetch"]
    settings = result["settings"]
    print(f"command: {result['command']}")
    print(f"machine: {result['machine']}, Python {result['python']}")
    print()
    print("| figure | value |")
    print("| --- | --- |")
    print(
        f"| produce, {settings['concurrency']} requests x {settings['batch']} records in flight "
        f"| {produce['records_per_s']:,.0f} records/s ({produce['mb_per_s']:.1f} MB/s) |"
    )
    print(f"| produce latency p50, 1 record, 1 in flight | {latency['p50_ms']:.2f} ms |")
    print(f"| produce latency p99, 1 record, 1 in flight | {latency['p99_ms']:.2f} ms |")
    print(
        f"| fetch, msgpack, 10,000 records per request | {fetch['records_per_s']:,.0f} records/s |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="benchmark this node instead of starting one")
    parser.add_argument("--duration", type=float, default=10.0, help="produce phase, seconds")
    parser.add_argument("--record-bytes", type=int, default=100, help="value size, bytes")
    parser.add_argument("--batch", type=int, default=100, help="records per produce request")
    parser.add_argument("--concurrency", type=int, default=16, help="produce requests in flight")
    parser.add_argument("--partitions", type=int, default=3, help="partitions of the topic")
    parser.add_argument("--latency-requests", type=int, default=1000, help="single-record requests")
    parser.add_argument("--fsync", choices=["always", "never"], default="always")
    parser.add_argument("--output", choices=["table", "json"], default="table")
    args = parser.parse_args()

    result = asyncio.run(run(args))
    if args.output == "json":
        print(json.dumps(result, indent=2))
    else:
        print_table(result)


if __name__ == "__main__":
    main()
