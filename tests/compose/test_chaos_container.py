"""The chaos runner's container cluster: a short leader-kill run on docker-compose.cluster.yml.

Runs after the image is built for the other compose tests and reuses it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.compose.docker_harness import REPO_ROOT, TEST_TIMEOUT_S, requires_compose_tests

pytestmark = [pytest.mark.compose, requires_compose_tests, pytest.mark.timeout(TEST_TIMEOUT_S)]

RUN_TIMEOUT_S = 600


def test_chaos_leader_kill_on_containers(kaflow_image: str, tmp_path: Path) -> None:
    pytest.importorskip("docker", reason="install the chaos extra: pip install -e '.[chaos]'")
    out_dir = tmp_path / "run"
    command = [
        sys.executable, "-m", "chaos", "run",
        "--scenario", "leader-kill",
        "--runner", "container",
        "--duration", "30",
        "--seed", "1",
        "--out", str(out_dir),
    ]  # fmt: skip
    result = subprocess.run(
        command,
        cwd=REPO_ROOT,
        env={**os.environ, "KAFLOW_CHAOS_IMAGE": kaflow_image},
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )

    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    outcome = json.loads((out_dir / "result.json").read_text())
    assert outcome["status"] == "passed"
    assert outcome["runner"] == "container"
