"""A run's timeline PNG and its one-screen text summary.

The PNG has two panels over run time: acknowledged records per second and
produce latency (p50 and max per second), with every fault window shaded and
labelled. matplotlib is an optional dependency (the ``chaos`` extra); without
it the run still writes ``result.json`` and prints the summary.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chaos.runner import RunOutcome

__all__ = ["plot_timeline", "summary"]

logger = logging.getLogger(__name__)


def _per_second(
    acks: list[dict[str, Any]],
) -> tuple[list[int], list[int], list[float], list[float]]:
    counts: dict[int, int] = defaultdict(int)
    latencies: dict[int, list[float]] = defaultdict(list)
    for ack in acks:
        if ack.get("status") != "ack":
            continue
        second = int(ack["t_ack"])
        counts[second] += 1
        latencies[second].append((ack["t_ack"] - ack["t_send"]) * 1000)
    if not counts:
        return [], [], [], []
    seconds = list(range(min(counts), max(counts) + 1))
    # A second without acks has no latency; NaN leaves a gap in the line.
    nan = float("nan")
    p50 = [sorted(latencies[s])[len(latencies[s]) // 2] if latencies[s] else nan for s in seconds]
    peak = [max(latencies[s], default=nan) for s in seconds]
    return seconds, [counts[s] for s in seconds], p50, peak


def plot_timeline(
    acks: list[dict[str, Any]],
    windows: list[tuple[str, float, float | None]],
    end_s: float,
    title: str,
    path: Path,
) -> bool:
    """Write the timeline PNG to ``path``; return False when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib is not installed; no timeline PNG (pip install 'kaflow[chaos]')")
        return False

    seconds, counts, p50, peak = _per_second(acks)
    figure, (throughput, latency) = plt.subplots(2, 1, sharex=True, figsize=(11, 6))
    throughput.plot(seconds, counts, drawstyle="steps-post", color="tab:blue")
    throughput.set_ylabel("acks / s")
    latency.plot(seconds, p50, color="tab:green", label="p50")
    latency.plot(seconds, peak, color="tab:red", label="max")
    latency.set_ylabel("produce latency (ms)")
    latency.set_yscale("symlog", linthresh=10)
    latency.set_xlabel("run time (s)")
    latency.legend(loc="upper right")
    for name, start, stop in windows:
        for axes in (throughput, latency):
            axes.axvspan(start, stop if stop is not None else end_s, color="orange", alpha=0.25)
        throughput.annotate(
            name, (start, 1.0), xycoords=("data", "axes fraction"), fontsize=7, va="top",
            rotation=90,
        )  # fmt: skip
    throughput.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True


def summary(outcome: RunOutcome, out_dir: Path) -> str:
    """Return the text printed at the end of a run."""
    config = outcome.config
    lines = [
        f"scenario {config.scenario}  seed {config.seed}  duration {config.duration_s:g} s  "
        f"runner {config.runner}",
        f"result: {outcome.status.upper()}",
    ]
    if outcome.check is not None:
        stats = outcome.check.stats
        latency = stats["latency"]
        bound = stats["max_unavailability_s"]
        lines += [
            f"acked {stats['acked']}  send errors {stats['send_errors']}  "
            f"consumed {stats['consumed']}  commits {stats['commits']}",
            f"records per node: {stats['records_per_node']}",
            f"produce latency p50 {latency['p50_ms']} ms  p99 {latency['p99_ms']} ms  "
            f"max {latency['max_ms']} ms",
            f"longest produce unavailability {stats['longest_unavailability_s']} s at "
            f"t={stats['longest_unavailability_start_s']} s (bound: "
            f"{'none' if bound is None else f'{bound:g} s'})",
        ]
        for violation in outcome.check.violations:
            lines.append(
                f"VIOLATION {violation.kind.value} x{violation.count}: {violation.message}"
            )
            lines += [f"    e.g. {example}" for example in violation.examples[:3]]
    lines += [f"ERROR {error}" for error in outcome.errors]
    lines.append(f"output: {out_dir}")
    if not outcome.passed:
        lines.append(f"reproduce with: {config.repro_command()} --out {out_dir}-repro")
    return "\n".join(lines)
