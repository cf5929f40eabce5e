"""The process and network scenarios; each registers itself on import.

Fault times are fractions of the load duration (``relative=True``), so one
scenario fits any ``--duration``. A duration of 30 s or more leaves every
fault window above the election timeout.
"""

from __future__ import annotations

from chaos.api import FaultSpec, Scenario, register_scenario
from chaos.faults.network import IsolateFollower, IsolateLeader, OneWayCut
from chaos.faults.process import (
    AddRemoveNode,
    CrashConsumer,
    KillAll,
    KillLeader,
    KillRandomNode,
    PauseFollower,
    PauseLeader,
    RollingRestart,
    StallConsumer,
)

__all__: list[str] = []

# Maximum gap without a successful produce while a majority stays up, in
# seconds: an election (up to 1.4 s), the client's retry backoff (up to 1 s)
# and a restarted node's catch-up, with margin. The margin is an estimate.
MAJORITY_BOUND_S = 10.0
# Scenarios made of node signals and consumer faults only; the container
# runner implements those through the same ChaosNode interface.
ANY_RUNNER = frozenset({"process", "container"})

register_scenario(
    Scenario(
        name="leader-kill",
        description="SIGKILL the leader five times in a row; each is restarted on its data "
        "after 8% of the load duration",
        faults=tuple(FaultSpec(0.1 + 0.16 * i, 0.08, KillLeader, relative=True) for i in range(5)),
        smoke=True,
        max_unavailability_s=MAJORITY_BOUND_S,
        default_duration_s=40.0,
        runners=ANY_RUNNER,
    )
)

register_scenario(
    Scenario(
        name="random-kill",
        description="SIGKILL a random node three times; each is restarted after 15% of the "
        "load duration",
        faults=tuple(
            FaultSpec(0.1 + 0.3 * i, 0.15, KillRandomNode, relative=True) for i in range(3)
        ),
        max_unavailability_s=MAJORITY_BOUND_S,
        runners=ANY_RUNNER,
    )
)

register_scenario(
    Scenario(
        name="rolling-restart",
        description="SIGTERM and restart each node in turn, waiting for a leader in between",
        faults=(FaultSpec(0.2, 0.5, RollingRestart, relative=True),),
        max_unavailability_s=MAJORITY_BOUND_S,
        runners=ANY_RUNNER,
    )
)

register_scenario(
    Scenario(
        name="pause",
        description="SIGSTOP the leader, then a follower, each for a fifth of the run "
        "(past the election timeout), then SIGCONT",
        faults=(
            FaultSpec(0.15, 0.2, PauseLeader, relative=True),
            FaultSpec(0.55, 0.2, PauseFollower, relative=True),
        ),
        smoke=True,
        max_unavailability_s=MAJORITY_BOUND_S,
        default_duration_s=40.0,
        runners=ANY_RUNNER,
    )
)

register_scenario(
    Scenario(
        name="kill-all",
        description="SIGKILL all three nodes at once and restart them on their data",
        faults=(FaultSpec(0.3, 0.15, KillAll, relative=True),),
        smoke=True,
        # No majority while the nodes are down; availability is reported only.
        max_unavailability_s=None,
        default_duration_s=30.0,
        runners=ANY_RUNNER,
    )
)

register_scenario(
    Scenario(
        name="partition",
        description="isolate the leader, then a follower, then cut the leader's traffic "
        "to one follower in one direction; every rule is removed afterwards",
        faults=(
            FaultSpec(0.1, 0.2, IsolateLeader, relative=True),
            FaultSpec(0.4, 0.2, IsolateFollower, relative=True),
            FaultSpec(0.7, 0.2, OneWayCut, relative=True),
        ),
        smoke=True,
        max_unavailability_s=MAJORITY_BOUND_S,
        default_duration_s=45.0,
    )
)

register_scenario(
    Scenario(
        name="isolate",
        description="isolate the leader, then a follower, from the other nodes in both "
        "directions (iptables on processes; network disconnect on containers), then heal",
        faults=(
            FaultSpec(0.15, 0.25, IsolateLeader, relative=True),
            FaultSpec(0.55, 0.25, IsolateFollower, relative=True),
        ),
        max_unavailability_s=MAJORITY_BOUND_S,
        default_duration_s=40.0,
        runners=ANY_RUNNER,
    )
)

register_scenario(
    Scenario(
        name="membership",
        description="add a fourth node under load, then remove a random original member",
        faults=(FaultSpec(0.2, 0.4, AddRemoveNode, relative=True),),
        max_unavailability_s=MAJORITY_BOUND_S,
    )
)

register_scenario(
    Scenario(
        name="consumer-faults",
        description="SIGKILL a consumer between processing and commit, then SIGSTOP "
        "another for a third of the run, past max.poll.interval.ms",
        faults=(
            FaultSpec(0.2, 0.1, CrashConsumer, relative=True),
            FaultSpec(0.45, 0.35, StallConsumer, relative=True),
        ),
        max_unavailability_s=MAJORITY_BOUND_S,
        runners=ANY_RUNNER,
    )
)
