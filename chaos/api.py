"""Interfaces shared by the chaos runner, its clusters, data directories and faults.

A run starts a :class:`ChaosCluster` whose nodes keep their data in
directories from a :class:`DataDirProvider`, and starts a load of producers
and consumers. It injects each :class:`Fault` of a :class:`Scenario` on its
schedule and heals it. After ``settle_s`` it checks the ack logs against what
every node stores.

Node and cluster operations are coroutines, so a container runner may run
blocking SDK calls in a thread. Data directory operations are plain calls
because they run while the node that uses the directory is stopped.

Scenario modules register themselves with :func:`register_scenario` when
imported. :func:`load_scenarios` imports every module listed in
``SCENARIO_MODULES`` that exists, so a module that another part of the suite
has not written yet is skipped.
"""

from __future__ import annotations

import abc
import asyncio
import enum
import importlib
import json
import logging
import random
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

__all__ = [
    "CLUSTER_FACTORIES",
    "COMBINE_SEPARATOR",
    "SCENARIO_MODULES",
    "ChaosCluster",
    "ChaosError",
    "ChaosNode",
    "ChaosSetupError",
    "ChaosUnsupportedError",
    "DataDirProvider",
    "Fault",
    "FaultSpec",
    "NetworkController",
    "PlainDataDirs",
    "RunConfig",
    "RunContext",
    "Scenario",
    "Timeline",
    "TimelineEvent",
    "Workload",
    "combine_scenarios",
    "find_scenario",
    "load_scenarios",
    "register_scenario",
    "scenarios",
]

logger = logging.getLogger(__name__)

# The cluster runners by name: "module:function", where the function is
# create_cluster(out_dir: Path, data_dirs: DataDirProvider,
# kaflow_source: Path | None) -> ChaosCluster.
CLUSTER_FACTORIES: dict[str, str] = {
    "process": "chaos.process_cluster:create_cluster",
    "container": "chaos.container_cluster:create_cluster",
}

# Modules that register scenarios on import. A module missing from the
# installed tree is skipped by load_scenarios().
SCENARIO_MODULES: tuple[str, ...] = (
    "chaos.scenarios",
    "chaos.fs.scenarios",
    "chaos.faults.corruption",
)


class ChaosError(Exception):
    """Base class of the errors the chaos tool raises about itself.

    Kept apart from KaflowError: these are the tool's own failures, not codes a
    Kaflow node sends, so they stay out of the node's error registry.
    """

    code: ClassVar[str] = "chaos_error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class ChaosSetupError(ChaosError):
    """A cluster, data directory or network rule could not be set up or torn down."""

    code: ClassVar[str] = "chaos_setup_error"


class ChaosUnsupportedError(ChaosError):
    """The selected runner or data directory provider cannot perform this fault."""

    code: ClassVar[str] = "chaos_unsupported"


class ChaosNode(abc.ABC):
    """One Kaflow node that a fault can kill, stop, pause and restart.

    ``start()`` after ``kill()`` or ``terminate()`` restarts the node on the
    same data directory, addresses and ports.
    """

    name: str
    host: str
    http_url: str
    raft_address: str
    data_dir: Path
    log_path: Path

    @property
    @abc.abstractmethod
    def running(self) -> bool:
        """True while the node's process exists, paused or not."""

    @property
    @abc.abstractmethod
    def paused(self) -> bool:
        """True between ``pause()`` and ``resume()``."""

    @property
    @abc.abstractmethod
    def pid(self) -> int | None:
        """Process id of the running node, or None when it is stopped."""

    @abc.abstractmethod
    async def start(self) -> None:
        """Start the node process; returns once it runs, before it is ready."""

    @abc.abstractmethod
    async def kill(self, sig: signal.Signals = signal.SIGKILL) -> None:
        """Send ``sig`` to the node and, for SIGKILL, wait until the process is gone."""

    @abc.abstractmethod
    async def terminate(self, timeout_s: float = 15.0) -> None:
        """Stop the node with SIGTERM, and SIGKILL it after ``timeout_s`` seconds."""

    @abc.abstractmethod
    async def pause(self) -> None:
        """Freeze the node (SIGSTOP, or a paused container)."""

    @abc.abstractmethod
    async def resume(self) -> None:
        """Let a paused node run again (SIGCONT)."""


class NetworkController(abc.ABC):
    """Cuts and restores traffic between nodes.

    ``cut(source, target)`` drops what ``source`` sends to ``target``; a cut in
    both directions is two calls. ``heal()`` restores every cut, and
    ``reset()`` removes every rule this controller could have left behind,
    including those of an earlier run that crashed.
    """

    @abc.abstractmethod
    async def cut(self, source: ChaosNode, target: ChaosNode) -> None:
        """Drop the traffic from ``source`` to ``target`` (one direction)."""

    async def isolate(self, node: ChaosNode, peers: Sequence[ChaosNode]) -> None:
        """Cut ``node`` from every peer in both directions."""
        for peer in peers:
            if peer is node:
                continue
            await self.cut(node, peer)
            await self.cut(peer, node)

    @abc.abstractmethod
    async def heal(self) -> None:
        """Restore every cut made since the last heal."""

    @abc.abstractmethod
    async def reset(self) -> None:
        """Remove every rule of this controller, whatever run created it."""


class ChaosCluster(abc.ABC):
    """A Kaflow cluster whose nodes the chaos faults act on."""

    nodes: list[ChaosNode]

    @property
    def urls(self) -> list[str]:
        """HTTP URLs of the current members."""
        return [node.http_url for node in self.nodes]

    @property
    @abc.abstractmethod
    def network(self) -> NetworkController:
        """Return the controller that cuts traffic between this cluster's nodes."""

    @abc.abstractmethod
    async def start(self) -> None:
        """Start every node and wait until the cluster has a leader."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Stop every node (resuming paused ones first) and remove network rules."""

    @abc.abstractmethod
    async def leader(self) -> ChaosNode | None:
        """Return the node that the running nodes agree is the Raft leader, or None."""

    @abc.abstractmethod
    async def wait_ready(self, timeout_s: float) -> ChaosNode:
        """Wait until every running node reports a leader; return the leader.

        Raises ChaosSetupError after ``timeout_s`` seconds without one.
        """

    @abc.abstractmethod
    async def add_node(self) -> ChaosNode:
        """Start one more node and add it to the Raft membership."""

    @abc.abstractmethod
    async def remove_node(self, node: ChaosNode) -> None:
        """Remove ``node`` from the Raft membership and stop it."""


class DataDirProvider(abc.ABC):
    """Data directories of the nodes, and the disk faults that act on them."""

    @abc.abstractmethod
    def prepare(self, node_name: str) -> Path:
        """Create (or reuse after a restart) the data directory of ``node_name``."""

    def power_cut(self, node_name: str) -> None:
        """Discard what ``node_name`` wrote but did not fsync; the node is already killed."""
        raise ChaosUnsupportedError(
            f"{type(self).__name__} cannot simulate power loss on node {node_name}; "
            "run a scenario whose data directories support it, e.g. power-loss",
            node=node_name,
        )

    def set_full(self, node_name: str, full: bool) -> None:
        """Make the disk of ``node_name`` full (reject writes) or give space back."""
        raise ChaosUnsupportedError(
            f"{type(self).__name__} cannot fill the disk of node {node_name}; "
            "run a scenario whose data directories support it, e.g. disk-full",
            node=node_name,
        )

    @abc.abstractmethod
    def cleanup(self) -> None:
        """Release mounts and temporary space; runs after every run, failed or not."""


class PlainDataDirs(DataDirProvider):
    """Plain directories ``<root>/<node name>``; the default provider."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def prepare(self, node_name: str) -> Path:
        path = self.root / node_name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def cleanup(self) -> None:
        # The directories stay in the run's output directory for inspection.
        return None


class Workload(abc.ABC):
    """The load of a run, as the consumer faults use it."""

    @abc.abstractmethod
    def consumer_names(self) -> list[str]:
        """Return the names of the consumers that currently run."""

    @abc.abstractmethod
    async def crash_consumer(self, name: str) -> None:
        """Kill consumer ``name`` after it processed records and before it commits them.

        The consumer then neither commits nor leaves its group.
        """

    @abc.abstractmethod
    async def stall_consumer(self, name: str) -> None:
        """Freeze consumer ``name`` (no poll, no heartbeat) until ``resume_consumer``."""

    @abc.abstractmethod
    async def resume_consumer(self, name: str) -> None:
        """Let a stalled consumer poll again."""

    @abc.abstractmethod
    async def start_consumer(self) -> str:
        """Start one more consumer and return its name."""


class TimelineEvent(enum.Enum):
    """Kinds of events on a run's timeline."""

    RUN_START = "run_start"
    FAULT_INJECT = "fault_inject"
    FAULT_HEAL = "fault_heal"
    LOAD_STOP = "load_stop"
    SETTLE_END = "settle_end"
    NOTE = "note"


@dataclass
class Timeline:
    """Events of one run, in seconds since the run started (monotonic clock)."""

    started: float = field(default_factory=time.monotonic)
    started_wall: float = field(default_factory=time.time)
    events: list[dict[str, Any]] = field(default_factory=list)

    def now(self) -> float:
        """Return seconds since the run started."""
        return time.monotonic() - self.started

    def record(self, kind: TimelineEvent, **fields: Any) -> dict[str, Any]:
        """Append an event of ``kind`` stamped with the current run time and return it."""
        event = {"t": round(self.now(), 3), "kind": kind.value, **fields}
        self.events.append(event)
        logger.info("chaos event kind=%s fields=%s", kind.value, json.dumps(fields, default=str))
        return event

    def fault_windows(self) -> list[tuple[str, float, float | None]]:
        """Return (fault name, inject time, heal time or None) for each injected fault."""
        windows: list[tuple[str, float, float | None]] = []
        open_by_id: dict[int, int] = {}
        for event in self.events:
            if event["kind"] == TimelineEvent.FAULT_INJECT.value:
                open_by_id[event["fault_id"]] = len(windows)
                windows.append((event["fault"], event["t"], None))
            elif event["kind"] == TimelineEvent.FAULT_HEAL.value:
                index = open_by_id.pop(event["fault_id"], None)
                if index is not None:
                    name, start, _ = windows[index]
                    windows[index] = (name, start, event["t"])
        return windows


@dataclass
class RunContext:
    """Everything a fault may act on during one run."""

    cluster: ChaosCluster
    rng: random.Random
    timeline: Timeline
    out_dir: Path
    data_dirs: DataDirProvider
    load: Workload
    log: logging.Logger
    # Free-form state a fault keeps between inject() and heal(), keyed by fault id.
    state: dict[int, Any] = field(default_factory=dict)
    # The runner acquires it around each inject(). Two faults whose start times
    # passed while they waited for a healthy cluster then act one after the other
    # and do not pick the same node.
    inject_lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class Fault(abc.ABC):
    """One disturbance: ``inject`` starts it and ``heal`` ends it.

    The runner records the window [inject, heal] on the timeline and calls
    ``heal`` even when the run fails after ``inject`` returned or raised.
    ``heal`` must therefore tolerate a partly injected fault.
    """

    name: ClassVar[str] = "fault"

    @abc.abstractmethod
    async def inject(self, ctx: RunContext) -> None:
        """Start the fault."""

    @abc.abstractmethod
    async def heal(self, ctx: RunContext) -> None:
        """End the fault and bring every affected node back."""

    def describe(self) -> dict[str, Any]:
        """Return the fields that identify this fault on the timeline and in the report."""
        return {}


@dataclass(frozen=True)
class FaultSpec:
    """When a fault starts and how long it lasts, in seconds from the run start.

    ``start_s`` and ``duration_s`` are fractions of the run's load duration
    when ``relative`` is true (0.25 = a quarter into the run).
    """

    start_s: float
    duration_s: float
    factory: Callable[[], Fault]
    relative: bool = False

    def window(self, load_duration_s: float) -> tuple[float, float]:
        """Return (start, duration) in seconds for a run whose load lasts ``load_duration_s``."""
        if self.relative:
            return self.start_s * load_duration_s, self.duration_s * load_duration_s
        return self.start_s, self.duration_s


def _plain_data_dirs(root: Path) -> DataDirProvider:
    return PlainDataDirs(root)


@dataclass(frozen=True)
class Scenario:
    """A named schedule of faults and the conditions the checker applies to it.

    ``max_unavailability_s`` bounds the longest gap without a successful
    produce; None means no bound (faults that take away the majority).
    ``runners`` lists the cluster runners that can run the scenario.
    """

    name: str
    description: str
    faults: tuple[FaultSpec, ...]
    data_dirs: Callable[[Path], DataDirProvider] = _plain_data_dirs
    smoke: bool = False
    settle_s: float = 5.0
    max_unavailability_s: float | None = 10.0
    default_duration_s: float = 60.0
    runners: frozenset[str] = frozenset({"process"})
    consumers: int = 2


@dataclass(frozen=True)
class RunConfig:
    """Parameters of one run, as the CLI takes them.

    ``kaflow_source`` is a directory that contains a ``kaflow`` package to run
    in the node processes instead of the installed one (the checker self-test
    runs a deliberately broken copy).
    """

    scenario: str
    duration_s: float
    seed: int
    out_dir: Path
    runner: str = "process"
    producers: int = 3
    partitions: int = 3
    kaflow_source: Path | None = None

    def repro_command(self) -> str:
        """Return the shell command that repeats this run."""
        command = (
            f"python -m chaos run --scenario {self.scenario} --duration {self.duration_s:g} "
            f"--seed {self.seed} --runner {self.runner}"
        )
        if self.kaflow_source is not None:
            command += f" --kaflow-source {self.kaflow_source}"
        return command


_REGISTRY: dict[str, Scenario] = {}


def register_scenario(scenario: Scenario) -> Scenario:
    """Add ``scenario`` to the registry; raises ChaosError on a duplicate name."""
    existing = _REGISTRY.get(scenario.name)
    if existing is not None and existing is not scenario:
        raise ChaosError(
            f"scenario {scenario.name!r} is registered twice; give one of them another name",
            scenario=scenario.name,
        )
    _REGISTRY[scenario.name] = scenario
    return scenario


def scenarios() -> dict[str, Scenario]:
    """Return the registered scenarios by name, after loading every scenario module."""
    load_scenarios()
    return dict(_REGISTRY)


# Joins scenario names into one run: "leader-kill+partition".
COMBINE_SEPARATOR = "+"


def find_scenario(name: str) -> Scenario | None:
    """Return the scenario called ``name``, or the combination ``a+b+...``; None if unknown.

    Raises ChaosUnsupportedError for a combination whose parts cannot run
    together (two that need their own filesystems, or no common runner).
    """
    catalog = scenarios()
    if COMBINE_SEPARATOR not in name:
        return catalog.get(name)
    parts = [catalog.get(part) for part in name.split(COMBINE_SEPARATOR)]
    if any(part is None for part in parts):
        return None
    return combine_scenarios(name, [part for part in parts if part is not None])


def combine_scenarios(name: str, parts: Sequence[Scenario]) -> Scenario:
    """Run the faults of ``parts`` one scenario after another, each in its share of the run.

    Part ``i`` of ``n`` keeps its schedule, compressed into the ``i``-th
    ``1/n`` of the load duration, so its faults keep their order and
    overlap none of another part's.
    """
    count = len(parts)
    faults: list[FaultSpec] = []
    for index, part in enumerate(parts):
        for spec in part.faults:
            if not spec.relative:
                raise ChaosUnsupportedError(
                    f"scenario {part.name} has a fault at an absolute time and cannot be "
                    "combined; give its faults relative times",
                    scenario=part.name,
                )
            faults.append(
                FaultSpec(
                    (index + spec.start_s) / count,
                    spec.duration_s / count,
                    spec.factory,
                    relative=True,
                )
            )
    special = {part.data_dirs for part in parts} - {_plain_data_dirs}
    if len(special) > 1:
        raise ChaosUnsupportedError(
            f"scenarios {', '.join(part.name for part in parts)} each need their own data "
            "directory filesystem and cannot be combined; run them one at a time",
            scenario=name,
        )
    runners = frozenset.intersection(*(part.runners for part in parts))
    if not runners:
        raise ChaosUnsupportedError(
            f"scenarios {', '.join(part.name for part in parts)} share no runner; run them "
            "one at a time",
            scenario=name,
        )
    bounds = [part.max_unavailability_s for part in parts]
    return Scenario(
        name=name,
        description=" then ".join(part.description for part in parts),
        faults=tuple(faults),
        data_dirs=special.pop() if special else _plain_data_dirs,
        settle_s=max(part.settle_s for part in parts),
        max_unavailability_s=None if None in bounds else max(b for b in bounds if b is not None),
        default_duration_s=sum(part.default_duration_s for part in parts),
        runners=runners,
        consumers=max(part.consumers for part in parts),
    )


def load_scenarios(modules: Sequence[str] = SCENARIO_MODULES) -> None:
    """Import each scenario module that exists; a module that is absent is skipped."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name is None or not module.startswith(exc.name):
                raise
            logger.debug("scenario module absent module=%s", module)
