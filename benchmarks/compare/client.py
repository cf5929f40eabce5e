"""Client process: run one workload against one system and print its figures as one JSON line.

Usage: ``python -m benchmarks.compare.client SYSTEM WORKLOAD SETTINGS_JSON`` where
SYSTEM is kaflow, nats or redis, WORKLOAD is produce, latency, consume or
e2e, and SETTINGS_JSON contains the fields of measure.Settings. The harness
starts one such process per workload, so each run has a fresh event loop
and its own CPU account. Exit status 1 and a message on stderr on failure.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
from collections.abc import Awaitable, Callable
from typing import cast

from benchmarks.compare.measure import Result, Settings

__all__ = ["SYSTEMS", "WORKLOADS", "main"]

SYSTEMS = ("kaflow", "nats", "redis")
WORKLOADS = ("produce", "latency", "consume", "e2e")


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] not in SYSTEMS or argv[1] not in WORKLOADS:
        print(
            "usage: python -m benchmarks.compare.client {kaflow|nats|redis} "
            "{produce|latency|consume|e2e} SETTINGS_JSON",
            file=sys.stderr,
        )
        return 2
    system, workload, raw = argv
    settings = Settings(**json.loads(raw))
    module = importlib.import_module(f"benchmarks.compare.load_{system}")
    run = cast(Callable[[Settings], Awaitable[Result]], getattr(module, workload))
    try:
        result = asyncio.run(asyncio.wait_for(run(settings), settings.timeout_s))
    except TimeoutError:
        print(
            f"{system} {workload} did not finish within {settings.timeout_s:g} s", file=sys.stderr
        )
        return 1
    print(json.dumps(result.to_json(settings.size)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
