"""``python -m chaos``: list scenarios, run one, or run the smoke set.

Exit status: 0 when every run passed, 1 when the checker found a violation,
2 when a run broke before it could be checked or the command line is invalid.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import secrets
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from chaos.api import (
    CLUSTER_FACTORIES,
    ChaosError,
    RunConfig,
    Timeline,
    find_scenario,
    scenarios,
)
from chaos.logs import read_jsonl
from chaos.report import plot_timeline, summary
from chaos.runner import RunOutcome, run

__all__ = ["main"]

EXIT_PASSED = 0
EXIT_FAILED = 1
EXIT_ERROR = 2
DEFAULT_OUT = Path("chaos-runs")
# The smoke set's load lasts this long per scenario, in seconds. With start-up,
# settle and the read-back, the four process-fault smoke scenarios took 172 s
# together on a shared 2-core machine, about 43 s each.
SMOKE_DURATION_S = 25.0


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None
    if not 5.0 <= value <= 86_400.0:
        raise argparse.ArgumentTypeError(f"invalid duration {value:g} s: use 5 to 86400 seconds")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid seed {text!r}: use an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"invalid seed {value}: use 0 or more")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m chaos",
        description="Run a real Kaflow cluster under load, inject faults, check the result.",
    )
    parser.add_argument(
        "--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="minimum level of the runner's log lines on stderr (default WARNING)",
    )  # fmt: skip
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("list", help="list the scenarios")

    run_parser = commands.add_parser("run", help="run one scenario")
    run_parser.add_argument("--scenario", required=True, help="scenario name (see `list`)")
    run_parser.add_argument(
        "--duration", type=_positive_float, default=None,
        help="seconds of load while faults run (default: the scenario's own)",
    )  # fmt: skip
    run_parser.add_argument(
        "--seed", type=_seed, default=None,
        help="seed of the fault choices (default: random, printed)",
    )  # fmt: skip
    run_parser.add_argument(
        "--runner", default="process", choices=sorted(CLUSTER_FACTORIES),
        help="cluster runner: local processes, or the compose cluster's containers "
        "(default process)",
    )  # fmt: skip
    run_parser.add_argument(
        "--out", type=Path, default=None,
        help=f"output directory of the run (default: {DEFAULT_OUT}/<scenario>-<seed>-<time>)",
    )  # fmt: skip
    run_parser.add_argument(
        "--kaflow-source", type=Path, default=None,
        help="directory containing a kaflow package for the nodes to run instead of the "
        "installed one",
    )  # fmt: skip

    smoke = commands.add_parser("smoke", help="run every smoke scenario, as CI does")
    smoke.add_argument(
        "--duration", type=_positive_float, default=SMOKE_DURATION_S,
        help=f"seconds of load per scenario (default {SMOKE_DURATION_S:g})",
    )  # fmt: skip
    smoke.add_argument("--seed", type=_seed, default=None, help="seed of every run")
    smoke.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"directory that receives one output directory per run (default {DEFAULT_OUT})",
    )
    return parser


def _list() -> int:
    for name, scenario in sorted(scenarios().items()):
        tags = ["smoke"] if scenario.smoke else []
        tags.append("runners=" + ",".join(sorted(scenario.runners)))
        print(f"{name:18} {scenario.description} [{' '.join(tags)}]")
    return EXIT_PASSED


def _report(outcome: RunOutcome, out_dir: Path) -> None:
    windows = Timeline(events=outcome.timeline).fault_windows()
    end = max((event["t"] for event in outcome.timeline), default=0.0)
    title = f"{outcome.config.scenario} seed {outcome.config.seed}: {outcome.status}"
    plot_timeline(read_jsonl(out_dir / "acks.jsonl"), windows, end, title, out_dir / "timeline.png")
    print(summary(outcome, out_dir))


async def _run_one(config: RunConfig) -> int:
    print(
        f"running {config.scenario} seed {config.seed} for {config.duration_s:g} s -> "
        f"{config.out_dir}",
        flush=True,
    )
    # SIGINT and SIGTERM cancel the run, so its finally blocks stop the nodes
    # and remove the network rules before the runner exits.
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    try:
        outcome = await run(config)
    except asyncio.CancelledError:
        print(
            f"interrupted: the cluster is stopped and its network rules are removed; "
            f"partial output in {config.out_dir}",
            file=sys.stderr,
        )
        return EXIT_ERROR
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    _report(outcome, config.out_dir)
    if outcome.passed:
        return EXIT_PASSED
    return EXIT_FAILED if outcome.status == "failed" else EXIT_ERROR


def _config(
    name: str,
    duration: float | None,
    seed: int | None,
    out: Path | None,
    runner: str = "process",
    kaflow_source: Path | None = None,
    parent: Path | None = None,
) -> RunConfig:
    scenario = find_scenario(name)
    if scenario is None:
        raise ChaosError(f"unknown scenario {name!r}; `python -m chaos list` shows them")
    chosen_seed = seed if seed is not None else secrets.randbelow(2**31)
    out_dir = (
        out or (parent or DEFAULT_OUT) / f"{name}-{chosen_seed}-{time.strftime('%Y%m%dT%H%M%S')}"
    )
    return RunConfig(
        scenario=name,
        duration_s=duration if duration is not None else scenario.default_duration_s,
        seed=chosen_seed,
        out_dir=out_dir.resolve(),
        runner=runner,
        kaflow_source=kaflow_source.resolve() if kaflow_source is not None else None,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level, stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )  # fmt: skip
    try:
        if args.command == "list":
            return _list()
        if args.command == "run":
            scenario = find_scenario(args.scenario)
            if scenario is None:
                print(
                    f"unknown scenario {args.scenario!r}; `python -m chaos list` shows them, "
                    "and names joined with '+' combine them",
                    file=sys.stderr,
                )
                return EXIT_ERROR
            if args.runner not in scenario.runners:
                print(
                    f"scenario {scenario.name} does not run on runner {args.runner!r}; it runs "
                    f"on {', '.join(sorted(scenario.runners))}",
                    file=sys.stderr,
                )
                return EXIT_ERROR
            config = _config(
                args.scenario, args.duration, args.seed, args.out, args.runner, args.kaflow_source
            )
            return asyncio.run(_run_one(config))
        worst = EXIT_PASSED
        for name, scenario in sorted(scenarios().items()):
            if scenario.smoke and "process" in scenario.runners:
                config = _config(name, args.duration, args.seed, None, parent=args.out)
                worst = max(worst, asyncio.run(_run_one(config)))
        return worst
    except ChaosError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
