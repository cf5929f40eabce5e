"""The disk scenarios: ``power-loss`` and ``disk-full``. Registered on import."""

from __future__ import annotations

from chaos.api import FaultSpec, Scenario, register_scenario
from chaos.fs.faults import DiskFullFault, PowerLossFault
from chaos.fs.providers import LossyDataDirs, SmallDiskDataDirs

__all__ = ["DISK_FULL", "POWER_LOSS"]

POWER_LOSS = register_scenario(
    Scenario(
        name="power-loss",
        description=(
            "All three nodes keep their data on lossy FUSE mounts. Under load, every node is "
            "killed with SIGKILL at once and all it did not fsync is dropped; then the nodes "
            "restart on what survived. Every acknowledged record must still be there."
        ),
        faults=(FaultSpec(0.4, 0.1, PowerLossFault, relative=True),),
        data_dirs=LossyDataDirs,
        smoke=True,
        settle_s=10.0,
        # No node is up between the cut and the restart.
        max_unavailability_s=None,
        default_duration_s=30.0,
    )
)

DISK_FULL = register_scenario(
    Scenario(
        name="disk-full",
        description=(
            "Each node keeps its data on a 64 MiB tmpfs. Under load, one follower's disk is "
            "filled: it must stay up and reject produce requests with disk_full (HTTP 507) "
            "while the other two go on, then catch up once the space is freed."
        ),
        faults=(FaultSpec(0.25, 0.4, DiskFullFault, relative=True),),
        data_dirs=SmallDiskDataDirs,
        smoke=False,
        settle_s=10.0,
        max_unavailability_s=10.0,
        default_duration_s=40.0,
    )
)
