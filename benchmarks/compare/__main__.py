"""``python -m benchmarks.compare``: run the comparison and write docs/benchmarks.md's table.

Run from the repository root with a Python that has Kaflow and the bench
clients of benchmarks/requirements.txt installed. A peer whose server is not
installed is skipped, and the table lists it as not run. Exit status 2 for invalid
options, 1 when any workload or scenario failed (the table is still
written), 0 otherwise.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import shlex
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

from benchmarks.compare.processes import HarnessError
from benchmarks.compare.report import machine_facts, render, write_section
from benchmarks.compare.runner import REPO, Plan, run_system
from benchmarks.compare.servers import check_installed
from kaflow.client import ClientError
from kaflow.errors import KaflowError

logger = logging.getLogger("benchmarks.compare")

_SYSTEMS = ("kaflow", "nats", "redis")
_SCENARIOS = ("failover", "catchup", "restart")
_SETUPS = {
    "kaflow": "3 nodes, `--fsync always`, one topic with 1 partition; acknowledged after a "
    "Raft majority stored and fsynced the entry",
    "nats": "3 nodes, JetStream file stream with 3 replicas; acknowledged after a majority "
    "stored it, without fsync",
    "redis": "1 server, `appendonly yes`, `appendfsync always`; acknowledged after the "
    "append-only file is fsynced",
}


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid integer {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value} must be 1 or more")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} must be above 0")
    return value


def _choices(allowed: tuple[str, ...]) -> Any:
    def parse(text: str) -> list[str]:
        chosen = [part.strip() for part in text.split(",") if part.strip()]
        if chosen == ["none"]:
            return []
        unknown = [part for part in chosen if part not in allowed]
        if unknown or not chosen:
            raise argparse.ArgumentTypeError(
                f"invalid list {text!r}: use a comma-separated subset of {','.join(allowed)}"
            )
        return chosen

    return parse


def _sizes(text: str) -> list[int]:
    sizes = [_positive_int(part) for part in text.split(",") if part.strip()]
    if not sizes or min(sizes) < 16 or max(sizes) > 65536:
        raise argparse.ArgumentTypeError(
            f"invalid record sizes {text!r}: give bytes from 16 (the timing header) to 65536"
        )
    return sizes


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.compare",
        description="Compare a 3-node Kaflow cluster with NATS JetStream R3 and Redis Streams "
        "on 127.0.0.1 and write the medians to docs/benchmarks.md.",
    )
    parser.add_argument(
        "--reps",
        type=_positive_int,
        default=3,
        help="repetitions; each starts every system fresh (default: 3)",
    )
    parser.add_argument(
        "--systems",
        type=_choices(_SYSTEMS),
        default=list(_SYSTEMS),
        help="comma-separated systems to run (default: kaflow,nats,redis)",
    )
    parser.add_argument(
        "--sizes",
        type=_sizes,
        default=[100, 1024],
        help="record value sizes in bytes (default: 100,1024)",
    )
    parser.add_argument(
        "--records",
        type=_positive_int,
        default=200_000,
        help="records per produce and consume run (default: 200000)",
    )
    parser.add_argument(
        "--latency-records",
        type=_positive_int,
        default=2000,
        help="timed single-record produces, after 200 unmeasured (default: 2000)",
    )
    parser.add_argument(
        "--e2e-rate",
        type=_positive_int,
        default=2000,
        help="records per second of the end-to-end run (default: 2000)",
    )
    parser.add_argument(
        "--e2e-duration",
        type=_positive_float,
        default=10.0,
        help="seconds the end-to-end producer sends (default: 10)",
    )
    parser.add_argument(
        "--scenarios",
        type=_choices(_SCENARIOS),
        default=list(_SCENARIOS),
        help="Kaflow-only scenarios, comma-separated, or none (default: failover,catchup,restart)",
    )
    parser.add_argument(
        "--catchup-mb",
        type=_positive_float,
        default=1024.0,
        help="MB (10^6 bytes) written while a follower is down (default: 1024)",
    )
    parser.add_argument(
        "--restart-gib",
        type=_positive_float,
        default=10.0,
        help="GiB written to the node of the restart scenario (default: 10)",
    )
    parser.add_argument(
        "--restarts", type=_positive_int, default=3, help="restarts timed on that data (default: 3)"
    )
    parser.add_argument(
        "--timeout",
        type=_positive_float,
        default=300.0,
        help="seconds one workload may take before it fails (default: 300)",
    )
    parser.add_argument(
        "--run-dir",
        type=Path,
        default=None,
        help="directory for servers' data, logs, pidfiles and raw results "
        "(default: a new /tmp/kaflow-bench-STAMP)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=REPO / "docs" / "benchmarks.md",
        help="page whose marked section gets the table (default: docs/benchmarks.md)",
    )
    parser.add_argument(
        "--no-write", action="store_true", help="print the table without changing the page"
    )
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 1 repetition, 20000 records, 300 latency samples, "
                        "3 s end-to-end, 50 MB catch-up, 0.2 GiB restart")  # fmt: skip
    if "--quick" in argv:
        # Smaller defaults; options given explicitly still win.
        parser.set_defaults(
            reps=1,
            records=20_000,
            latency_records=300,
            e2e_duration=3.0,
            catchup_mb=50.0,
            restart_gib=0.2,
            restarts=1,
        )
    return parser.parse_args(argv)


def _load() -> str:
    return "/".join(f"{value:.2f}" for value in os.getloadavg())


def _stop_on_signal(signum: int, _frame: FrameType | None) -> None:
    # Unwinding runs the finally blocks that stop the servers this run started.
    raise SystemExit(128 + signum)


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args = parse_args(argv)
    # A shell starts background jobs with SIGINT ignored; both signals stop the run cleanly.
    signal.signal(signal.SIGINT, _stop_on_signal)
    signal.signal(signal.SIGTERM, _stop_on_signal)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S")
    run_dir: Path = args.run_dir or Path(f"/tmp/kaflow-bench-{stamp}")
    run_dir.mkdir(parents=True, exist_ok=True)

    skipped = {s: why for s in args.systems if (why := check_installed(s)) is not None}
    systems = [s for s in args.systems if s not in skipped]
    for system, reason in skipped.items():
        logger.warning("system skipped system=%s reason=%s", system, reason)
    plan = Plan(
        sizes=tuple(args.sizes),
        records=args.records,
        latency_records=args.latency_records,
        e2e_rate=args.e2e_rate,
        e2e_duration_s=args.e2e_duration,
        timeout_s=args.timeout,
    )
    meta: dict[str, Any] = {
        "command": shlex.join(["python", "-m", "benchmarks.compare", *argv]),
        "started": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "load_before": _load(),
        "machine": machine_facts(),
        "systems": systems,
        "skipped": skipped,
        "setups": _SETUPS,
        "sizes": list(args.sizes),
        "e2e_rate": args.e2e_rate,
        "reps": args.reps,
    }

    outcomes: list[dict[str, Any]] = []
    scenarios: dict[str, list[dict[str, Any]]] = {}
    scenario_errors: dict[str, str] = {}
    for rep in range(1, args.reps + 1):
        # Rotating the order spreads slow drifts of a shared machine over all systems.
        shift = (rep - 1) % max(1, len(systems))
        for system in systems[shift:] + systems[:shift]:
            logger.info("system starting system=%s rep=%d", system, rep)
            outcomes.append(run_system(system, run_dir / f"rep-{rep}", plan, rep))
        _run_scenarios(args, run_dir / f"rep-{rep}", rep, scenarios, scenario_errors)

    meta["finished"] = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    meta["load_after"] = _load()
    meta["scenario_errors"] = scenario_errors
    raw_path = run_dir / "results.json"
    meta["raw_path"] = str(raw_path)
    raw = {"meta": meta, "outcomes": outcomes, "scenarios": scenarios}
    raw_path.write_text(json.dumps(raw, indent=1))
    section = render(outcomes, scenarios, meta)
    print(section)
    if not args.no_write:
        write_section(args.output, section)
        logger.info("table written page=%s raw=%s", args.output, raw_path)
    failed = scenario_errors or any(o["errors"] for o in outcomes)
    return 1 if failed else 0


def _run_scenarios(
    args: argparse.Namespace,
    rep_dir: Path,
    rep: int,
    scenarios: dict[str, list[dict[str, Any]]],
    errors: dict[str, str],
) -> None:
    from benchmarks.compare import kaflow_only

    if "kaflow" not in args.systems:
        return
    for name in args.scenarios:
        # Filling the restart node takes long, so it runs once, with its own repetitions.
        if name == "restart" and rep != 1:
            continue
        logger.info("scenario starting scenario=%s rep=%d", name, rep)
        try:
            if name == "failover":
                result = kaflow_only.run_failover(rep_dir)
            elif name == "catchup":
                result = kaflow_only.run_catchup(rep_dir, args.catchup_mb)
            else:
                result = kaflow_only.run_restart(rep_dir, args.restart_gib, args.restarts)
        except (HarnessError, OSError, KaflowError, ClientError) as exc:
            logger.warning("scenario failed scenario=%s rep=%d error=%s", name, rep, exc)
            errors[f"{name} rep {rep}"] = str(exc)
            continue
        finally:
            os.sync()
        scenarios.setdefault(name, []).append(result)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
