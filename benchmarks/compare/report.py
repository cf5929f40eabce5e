"""Medians, ratios and the Markdown section written into docs/benchmarks.md.

A ratio is computed within each repetition (Kaflow and the peer measured in
the same repetition, minutes apart) and the table shows the median of those
per-repetition ratios. The section sits between two HTML comment markers,
so a new run replaces it and leaves the rest of the page alone.
"""

from __future__ import annotations

import os
import platform
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["END_MARKER", "START_MARKER", "machine_facts", "render", "write_section"]

START_MARKER = "<!-- compare:start (written by python -m benchmarks.compare) -->"
END_MARKER = "<!-- compare:end -->"

Outcome = dict[str, Any]
Getter = Callable[[Outcome], float | None]


def machine_facts() -> dict[str, str]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        memory_kib = int(Path("/proc/meminfo").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        memory_kib = 0
    return {
        "cpu": f"{os.cpu_count()} x {model}",
        "memory": f"{memory_kib / 2**20:.1f} GiB",
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def _workload(key: str, path: Sequence[str]) -> Getter:
    def get(outcome: Outcome) -> float | None:
        value: Any = outcome["workloads"].get(key)
        for part in path:
            if not isinstance(value, dict):
                return None
            value = value.get(part)
        return float(value) if isinstance(value, int | float) else None

    return get


def _max_rss(field: str) -> Getter:
    def get(outcome: Outcome) -> float | None:
        values = outcome.get(field) or {}
        return max(values.values()) if values else None

    return get


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _format(value: float | None, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return f"{text}{unit}"


def _rows(sizes: Sequence[int], rate: int) -> list[tuple[str, Getter, bool, str | None]]:
    """(label, getter, higher is better, Kaflow target) per table row."""
    rows: list[tuple[str, Getter, bool, str | None]] = []
    for size in sizes:
        small = size == 100
        rows += [
            (
                f"produce, records/s, 1,000 in flight, {size} B",
                _workload(f"produce/{size}", ["records_per_s"]),
                True,
                ">= 2.0x NATS" if small else None,
            ),
            (
                f"produce, client CPU us per record, {size} B",
                _workload(f"produce/{size}", ["cpu_us_per_record"]),
                False,
                None,
            ),
            (
                f"produce, server CPU us per record (all nodes), {size} B",
                _workload(f"produce/{size}", ["server_cpu_us_per_record"]),
                False,
                None,
            ),
            (
                f"produce latency p50 ms, 1 in flight, {size} B",
                _workload(f"latency/{size}", ["latency_ms", "p50"]),
                False,
                "<= 2 ms" if small else None,
            ),
            (
                f"produce latency p99 ms, 1 in flight, {size} B",
                _workload(f"latency/{size}", ["latency_ms", "p99"]),
                False,
                "<= 6 ms" if small else None,
            ),
            (
                f"consume, records/s, one group consumer, {size} B",
                _workload(f"consume/{size}", ["records_per_s"]),
                True,
                ">= 1.0x Redis" if small else None,
            ),
            (
                f"e2e latency p50 ms at {rate:,} rec/s, {size} B",
                _workload(f"e2e/{size}", ["latency_ms", "p50"]),
                False,
                "<= 5 ms" if small else None,
            ),
            (
                f"e2e latency p99 ms at {rate:,} rec/s, {size} B",
                _workload(f"e2e/{size}", ["latency_ms", "p99"]),
                False,
                "<= 20 ms" if small else None,
            ),
        ]
    rows += [
        ("server RSS MiB per process, idle (largest)", _max_rss("rss_idle_mib"), False, "<= 60"),
        (
            "server RSS MiB per process, after the run (largest)",
            _max_rss("rss_after_mib"),
            False,
            None,
        ),
    ]
    return rows


def _ratio(
    outcomes: Sequence[Outcome], getter: Getter, peer: str, reps: Sequence[int]
) -> float | None:
    ratios: list[float | None] = []
    for rep in reps:
        mine = [getter(o) for o in outcomes if o["system"] == "kaflow" and o["rep"] == rep]
        theirs = [getter(o) for o in outcomes if o["system"] == peer and o["rep"] == rep]
        if mine and theirs and mine[0] is not None and theirs[0]:
            ratios.append(mine[0] / theirs[0])
    return _median(ratios)


def _comparison_table(
    outcomes: Sequence[Outcome], systems: Sequence[str], sizes: Sequence[int], rate: int
) -> list[str]:
    reps = sorted({o["rep"] for o in outcomes})
    peers = [s for s in systems if s != "kaflow"]
    header = ["figure (median of runs)", *systems]
    if "kaflow" in systems:
        header += [f"kaflow / {peer}" for peer in peers] + ["Kaflow target"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for label, getter, _higher, target in _rows(sizes, rate):
        cells = [label]
        for system in systems:
            cells.append(_format(_median([getter(o) for o in outcomes if o["system"] == system])))
        if "kaflow" in systems:
            for peer in peers:
                cells.append(_format(_ratio(outcomes, getter, peer, reps), "x"))
            cells.append(target or "")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _kaflow_only_table(scenarios: dict[str, list[dict[str, Any]]]) -> list[str]:
    lines = ["| figure | runs | median | target |", "| --- | --- | --- | --- |"]
    failover = [r["recovered_s"] for r in scenarios.get("failover", [])]
    if failover:
        lines.append(
            f"| failover: first acknowledged produce after SIGKILL of the leader, s | "
            f"{', '.join(_format(v) for v in failover)} | {_format(_median(failover))} | <= 2 s |"
        )
    catchup = scenarios.get("catchup", [])
    if catchup:
        rates = [r["mb_per_s"] for r in catchup]
        size = catchup[0]["megabytes"]
        lines.append(
            f"| follower catch-up of {size:g} MB of 1 KiB records, MB/s | "
            f"{', '.join(_format(v) for v in rates)} | {_format(_median(rates))} | >= 50 MB/s |"
        )
        rss = [max(r["rss_after_mib"].values()) for r in catchup if r["rss_after_mib"]]
        lines.append(
            f"| server RSS MiB per node after {size:g} MB written and read (largest) | "
            f"{', '.join(_format(v) for v in rss)} | {_format(_median(rss))} | "
            "<= 120 MiB after 1 GiB |"
        )
    restart = scenarios.get("restart", [])
    if restart:
        seconds = [s for r in restart for s in r["seconds"]]
        data = restart[0]["data_gib"]
        lines.append(
            f"| restart to ready, one node with {data:g} GiB of data, s | "
            f"{', '.join(_format(v) for v in seconds)} | {_format(_median(seconds))} | "
            "<= 2 s with 10 GiB |"
        )
    return lines


def render(
    outcomes: Sequence[Outcome],
    scenarios: dict[str, list[dict[str, Any]]],
    meta: dict[str, Any],
) -> str:
    systems: list[str] = meta["systems"]
    lines = [
        START_MARKER,
        "## 3-node comparison: Kaflow, NATS JetStream R3, Redis Streams",
        "",
        f"Command (from the repository root): `{meta['command']}`",
        "",
        f"Measured {meta['started']} to {meta['finished']} UTC, {meta['reps']} repetitions; "
        f"load average {meta['load_before']} before and {meta['load_after']} after. "
        f"Machine: {meta['machine']['cpu']}, {meta['machine']['memory']}, "
        f"Linux {meta['machine']['kernel']}, Python {meta['machine']['python']}. "
        "Servers and clients share the machine and talk over 127.0.0.1.",
        "",
        "| system | version | setup |",
        "| --- | --- | --- |",
    ]
    for system in systems:
        version = next(
            (o["version"] for o in outcomes if o["system"] == system and "version" in o), "n/a"
        )
        lines.append(f"| {system} | {version} | {meta['setups'][system]} |")
    for system, reason in meta["skipped"].items():
        lines.append(f"| {system} | not run | {reason} |")
    lines += ["", *_comparison_table(outcomes, systems, meta["sizes"], meta["e2e_rate"]), ""]
    if scenarios:
        lines += ["Kaflow only:", "", *_kaflow_only_table(scenarios), ""]
    errors = [f"- rep {o['rep']} {o['system']}: {e}" for o in outcomes for e in o["errors"]]
    errors += [f"- {name}: {e}" for name, e in meta.get("scenario_errors", {}).items()]
    if errors:
        lines += ["Failures in this run:", "", *errors, ""]
    lines += [f"Raw figures: `{meta['raw_path']}`.", END_MARKER]
    return "\n".join(lines) + "\n"


def write_section(page: Path, section: str) -> None:
    """Replace the marked section of ``page``, or append it when the page has none."""
    text = page.read_text() if page.exists() else "# Benchmarks\n"
    start = text.find(START_MARKER)
    end = text.find(END_MARKER)
    if start != -1 and end != -1 and end > start:
        text = text[:start] + section + text[end + len(END_MARKER) + 1 :]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    page.write_text(text)
