from __future__ import annotations

import signal
import stat
import subprocess
from pathlib import Path

from tests.cli.cli_runner import KAFLOW, clean_env, run_kaflow
from tests.harness import free_port, wait_until


def test_cluster_up_tour_and_ctrl_c(tmp_path: Path) -> None:
    http_ports = [free_port() for _ in range(3)]
    raft_ports = [free_port() for _ in range(3)]
    data_dir = tmp_path / "kaflow-data"
    output = tmp_path / "up.out"
    command = [
        *KAFLOW,
        "cluster",
        "up",
        "--data-dir",
        str(data_dir),
        "--http-ports",
        ",".join(map(str, http_ports)),
        "--raft-ports",
        ",".join(map(str, raft_ports)),
    ]
    with open(output, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=clean_env())
    try:
        wait_until(
            lambda: "cluster is up" in output.read_text() or process.poll() is not None,
            90,
            "kaflow cluster up to print its endpoints",
        )
        text = output.read_text()
        assert "cluster is up" in text, text
        for port in http_ports:
            assert f"http://127.0.0.1:{port}" in text
        secret = data_dir / "cluster-secret"
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600

        bootstrap = f"http://127.0.0.1:{http_ports[1]}"
        created = run_kaflow("topic", "create", "orders", "--partitions", "2", bootstrap=bootstrap)
        assert created.returncode == 0, created.stderr
        produced = run_kaflow(
            "produce", "orders", "--key-separator", ":",
            bootstrap=bootstrap, stdin=b"order-1:paid\norder-2:open\n",
        )  # fmt: skip
        assert produced.returncode == 0, produced.stderr
        consumed = run_kaflow(
            "consume", "orders", "--offset", "earliest", "--count", "2",
            bootstrap=f"http://127.0.0.1:{http_ports[0]}",
        )  # fmt: skip
        assert consumed.returncode == 0, consumed.stderr
        assert sorted(consumed.stdout.split()) == [b"open", b"paid"]
        status = run_kaflow("cluster", "status", bootstrap=bootstrap)
        assert status.returncode == 0, status.stderr
        assert b"leader:" in status.stdout
        assert status.stdout.count(b"127.0.0.1:") >= 6

        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0
        assert "cluster stopped" in output.read_text()
        for node in ("node-1", "node-2", "node-3"):
            assert not (data_dir / f"{node}.ready.json").exists()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
