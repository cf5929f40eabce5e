"""Run the shared workloads against each system, one fresh start per system and repetition."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from benchmarks.compare.measure import Settings
from benchmarks.compare.processes import HarnessError, cpu_seconds, rss_bytes
from benchmarks.compare.servers import System, make_system

__all__ = ["Plan", "run_system"]

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
# Seconds a fresh system idles before its memory is sampled.
_IDLE_S = 3.0
# Seconds added to a workload's own time limit before its process is killed.
_KILL_MARGIN_S = 30.0


@dataclass(frozen=True)
class Plan:
    """Workloads and their sizes for one repetition, the same for every system."""

    sizes: tuple[int, ...]
    records: int
    latency_records: int
    e2e_rate: int
    e2e_duration_s: float
    window: int = 1000
    batch: int = 1000
    timeout_s: float = 180.0


def _server_cpu(system: System) -> float:
    return sum(cpu_seconds(pid) for pid in system.server_pids().values())


def _server_rss_mib(system: System) -> dict[str, float]:
    return {label: rss_bytes(pid) / 2**20 for label, pid in system.server_pids().items()}


def run_client(system: str, workload: str, settings: Settings) -> dict[str, Any]:
    """Run one workload in a child process and return its JSON figures."""
    command = [
        sys.executable, "-m", "benchmarks.compare.client",
        system, workload, json.dumps(asdict(settings)),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    try:
        completed = subprocess.run(
            command,
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=settings.timeout_s + _KILL_MARGIN_S,
        )
    except subprocess.TimeoutExpired as exc:
        raise HarnessError(
            f"{system} {workload} client was killed after {exc.timeout:g} s"
        ) from exc
    if completed.returncode != 0:
        tail = "\n".join(completed.stderr.strip().splitlines()[-5:])
        raise HarnessError(f"{system} {workload} client exited {completed.returncode}: {tail}")
    figures: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return figures


def _measured(system: System, name: str, workload: str, settings: Settings) -> dict[str, Any]:
    cpu_before = _server_cpu(system)
    figures = run_client(name, workload, settings)
    figures["server_cpu_s"] = round(_server_cpu(system) - cpu_before, 3)
    records = figures.get("records") or 0
    if records:
        figures["server_cpu_us_per_record"] = round(figures["server_cpu_s"] * 1e6 / records, 2)
    logger.info(
        "workload finished system=%s workload=%s size=%d records_per_s=%s latency_ms=%s",
        name,
        workload,
        settings.size,
        figures.get("records_per_s"),
        figures.get("latency_ms"),
    )
    return figures


def run_system(name: str, run_dir: Path, plan: Plan, rep: int) -> dict[str, Any]:
    """Start ``name`` fresh, run every workload of ``plan`` and stop it.

    Returns ``{"workloads": {f"{workload}/{size}": figures}, "rss_idle_mib": ...,
    "rss_after_mib": ..., "errors": [...]}`` with RSS per server process. A
    failed workload is recorded in ``errors`` and the others still run.
    """
    system = make_system(name, run_dir)
    outcome: dict[str, Any] = {"system": name, "rep": rep, "workloads": {}, "errors": []}
    try:
        system.start()
        outcome["version"] = system.version()
        time.sleep(_IDLE_S)
        outcome["rss_idle_mib"] = _server_rss_mib(system)
        for size in plan.sizes:
            _run_size(system, name, plan, size, rep, outcome)
        outcome["rss_after_mib"] = _server_rss_mib(system)
    except HarnessError as exc:
        logger.warning("system failed system=%s rep=%d error=%s", name, rep, exc)
        outcome["errors"].append(str(exc))
    finally:
        system.stop()
        # Write back this system's dirty pages now, not inside the next one's measurements.
        os.sync()
    if not outcome["errors"]:
        # Logs stay for a failed system; a run with large data would otherwise fill /tmp.
        system.remove_data()
    return outcome


def _run_size(
    system: System, name: str, plan: Plan, size: int, rep: int, outcome: dict[str, Any]
) -> None:
    stream = f"bench-r{rep}-s{size}"
    base = Settings(
        endpoint=system.endpoint(),
        name=stream,
        size=size,
        records=plan.records,
        window=plan.window,
        batch=plan.batch,
        rate=plan.e2e_rate,
        duration_s=plan.e2e_duration_s,
        timeout_s=plan.timeout_s,
    )
    e2e_records = int(plan.e2e_rate * plan.e2e_duration_s)
    steps: Sequence[tuple[str, Settings]] = (
        ("produce", base),
        ("consume", base),
        ("latency", replace(base, name=f"{stream}-latency", records=plan.latency_records)),
        ("e2e", replace(base, name=f"{stream}-e2e", records=e2e_records)),
    )
    produced = True
    for workload, settings in steps:
        key = f"{workload}/{size}"
        if workload == "consume" and not produced:
            outcome["errors"].append(f"{key}: skipped because produce failed")
            continue
        try:
            outcome["workloads"][key] = _measured(system, name, workload, settings)
        except HarnessError as exc:
            logger.warning("workload failed system=%s key=%s error=%s", name, key, exc)
            outcome["errors"].append(f"{key}: {exc}")
            produced = produced and workload != "produce"
        for process in system.processes:
            process.check_running()
