"""One chaos run: cluster, load, faults on their schedule, heal, settle, check, report.

A run has three outcomes. ``passed``: the checker found no violation.
``failed``: the checker found one or more. ``error``: the run itself broke
(the cluster did not start, a fault could not be injected or healed), so the
checker's verdict is not trustworthy and is not the outcome.

On success, failure or an exception, the run heals every fault it injected,
stops the cluster, removes its network rules and calls the data directory
provider's ``cleanup()`` (in ``finally`` blocks). A runner killed with
SIGKILL does none of this; the next run on the same address block removes
the leftover network rules.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import random
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaos.api import (
    CLUSTER_FACTORIES,
    ChaosCluster,
    ChaosError,
    DataDirProvider,
    FaultSpec,
    RunConfig,
    RunContext,
    Scenario,
    Timeline,
    TimelineEvent,
    find_scenario,
    scenarios,
)
from chaos.checker import check
from chaos.load import TOPIC, Load, LoadOptions
from chaos.logs import read_run_logs
from chaos.snapshot import read_nodes
from chaos.verdict import CheckResult
from kaflow.errors import KaflowError

__all__ = ["RunOutcome", "make_cluster", "restore_cluster", "run"]

logger = logging.getLogger(__name__)

READY_TIMEOUT_S = 90.0


@dataclass
class RunOutcome:
    """The result of one run, as written to ``result.json``."""

    config: RunConfig
    status: str
    check: CheckResult | None
    errors: list[str] = field(default_factory=list)
    timeline: list[dict[str, Any]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.config.scenario,
            "seed": self.config.seed,
            "duration_s": self.config.duration_s,
            "runner": self.config.runner,
            "status": self.status,
            "repro": self.config.repro_command(),
            "errors": self.errors,
            "check": None if self.check is None else self.check.to_json(),
            "timeline": self.timeline,
        }


def make_cluster(
    runner: str, out_dir: Path, data_dirs: DataDirProvider, kaflow_source: Path | None
) -> ChaosCluster:
    """Build the cluster of ``runner`` from :data:`chaos.api.CLUSTER_FACTORIES`."""
    target = CLUSTER_FACTORIES.get(runner)
    if target is None:
        raise ChaosError(
            f"unknown runner {runner!r}: use one of {', '.join(sorted(CLUSTER_FACTORIES))}",
            runner=runner,
        )
    module_name, function_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ChaosError(
            f"runner {runner!r} is not available: module {module_name} is missing ({exc})",
            runner=runner,
        ) from exc
    cluster: ChaosCluster = getattr(module, function_name)(out_dir, data_dirs, kaflow_source)
    return cluster


async def restore_cluster(ctx: RunContext) -> None:
    """Resume paused nodes, start stopped ones, heal the network, wait for a leader."""
    await ctx.cluster.network.heal()
    for node in ctx.cluster.nodes:
        if node.paused:
            await node.resume()
        if not node.running:
            await node.start()
    await ctx.cluster.wait_ready(READY_TIMEOUT_S)


async def _sleep_until(timeline: Timeline, t: float) -> None:
    delay = t - timeline.now()
    if delay > 0:
        await asyncio.sleep(delay)


async def _run_fault(
    ctx: RunContext,
    spec: FaultSpec,
    fault_id: int,
    origin: float,
    load_duration_s: float,
    errors: list[str],
) -> None:
    """Inject one fault at its start, keep it for its duration, heal it.

    The duration counts from the moment ``inject()`` returns, because a fault
    may first wait for a leader; the timeline window is the real one.
    """
    start, duration = spec.window(load_duration_s)
    await _sleep_until(ctx.timeline, origin + start)
    fault = spec.factory()
    try:
        async with ctx.inject_lock:
            await fault.inject(ctx)
        ctx.timeline.record(
            TimelineEvent.FAULT_INJECT, fault=fault.name, fault_id=fault_id, **fault.describe()
        )
        await asyncio.sleep(duration)
    except (KaflowError, ChaosError) as exc:
        errors.append(f"fault {fault.name} (id {fault_id}) failed to inject: {exc}")
        logger.warning("fault inject failed fault=%s error=%s", fault.name, exc)
        ctx.timeline.record(TimelineEvent.NOTE, fault=fault.name, error=str(exc))
    finally:
        try:
            await fault.heal(ctx)
        except (KaflowError, ChaosError) as exc:
            errors.append(f"fault {fault.name} (id {fault_id}) failed to heal: {exc}")
            logger.warning("fault heal failed fault=%s error=%s", fault.name, exc)
        ctx.timeline.record(TimelineEvent.FAULT_HEAL, fault=fault.name, fault_id=fault_id)


async def _drive(
    ctx: RunContext, scenario: Scenario, config: RunConfig, load: Load, errors: list[str]
) -> tuple[float, float]:
    """Run the load and the faults; return the load window (start, stop) in run seconds."""
    await load.start()
    origin = ctx.timeline.now()
    tasks = [
        asyncio.create_task(
            _run_fault(ctx, spec, fault_id, origin, config.duration_s, errors),
            name=f"fault-{fault_id}",
        )
        for fault_id, spec in enumerate(scenario.faults)
    ]
    try:
        await _sleep_until(ctx.timeline, origin + config.duration_s)
        # A fault that runs past the load duration (a slow restart) ends first.
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    await restore_cluster(ctx)
    await load.stop()
    stop = ctx.timeline.now()
    ctx.timeline.record(TimelineEvent.LOAD_STOP)
    return origin, stop


async def run(config: RunConfig) -> RunOutcome:
    """Run ``config.scenario`` once and write ``result.json`` into ``config.out_dir``."""
    scenario = find_scenario(config.scenario)
    if scenario is None:
        raise ChaosError(
            f"unknown scenario {config.scenario!r}: `python -m chaos list` shows "
            f"{len(scenarios())} scenarios; join names with '+' to combine them",
            scenario=config.scenario,
        )
    if config.runner not in scenario.runners:
        raise ChaosError(
            f"scenario {scenario.name} does not run on runner {config.runner!r}; it runs on "
            f"{', '.join(sorted(scenario.runners))}",
            scenario=scenario.name,
        )
    config.out_dir.mkdir(parents=True, exist_ok=True)
    timeline = Timeline()
    errors: list[str] = []
    result: CheckResult | None = None
    data_dirs = scenario.data_dirs(config.out_dir / "data")
    cluster: ChaosCluster | None = None
    load: Load | None = None
    try:
        cluster = make_cluster(config.runner, config.out_dir, data_dirs, config.kaflow_source)
        timeline.record(TimelineEvent.RUN_START, scenario=scenario.name, seed=config.seed)
        await cluster.start()
        options = LoadOptions(
            producers=config.producers,
            consumers=scenario.consumers,
            partitions=config.partitions,
        )
        load = Load(cluster, config.out_dir, timeline, options)
        ctx = RunContext(
            cluster=cluster,
            rng=random.Random(config.seed),
            timeline=timeline,
            out_dir=config.out_dir,
            data_dirs=data_dirs,
            load=load,
            log=logger,
        )
        window = await _drive(ctx, scenario, config, load, errors)
        await asyncio.sleep(scenario.settle_s)
        await cluster.wait_ready(READY_TIMEOUT_S)
        timeline.record(TimelineEvent.SETTLE_END)
        nodes, node_errors = await read_nodes(cluster, TOPIC, config.partitions)
        logs = read_run_logs(config.out_dir, nodes, node_errors, window)
        result = check(logs, scenario.max_unavailability_s)
    except (KaflowError, ChaosError, OSError) as exc:
        errors.append(f"run failed: {exc}")
        logger.warning("run failed scenario=%s error=%s", scenario.name, exc)
        (config.out_dir / "runner-error.txt").write_text(traceback.format_exc())
    finally:
        if load is not None and not load.stopped:
            await load.stop(timeout_s=10.0)
        try:
            if cluster is not None:
                await cluster.stop()
        finally:
            data_dirs.cleanup()

    if errors or result is None:
        status = "error"
    elif result.passed:
        status = "passed"
    else:
        status = "failed"
    outcome = RunOutcome(config, status, result, errors, list(timeline.events))
    (config.out_dir / "result.json").write_text(json.dumps(outcome.to_json(), indent=2) + "\n")
    return outcome
