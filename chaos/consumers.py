"""The load's consumers: one :mod:`chaos.consumer_process` child process each.

Separate processes let the consumer faults act as they would in production:
SIGKILL between processing and commit, SIGSTOP past ``max.poll.interval.ms``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import chaos

__all__ = ["ConsumerSettings", "ProcessConsumer"]

logger = logging.getLogger(__name__)

# The directory that contains the chaos package, for the child's import path.
_SOURCE_ROOT = Path(chaos.__file__).resolve().parent.parent
CRASH_WAIT_S = 20.0
STOP_WAIT_S = 30.0


class ConsumerSettings:
    """Settings every consumer of a run shares: where to connect, what to read, where to log."""

    def __init__(
        self,
        urls: list[str],
        topic: str,
        group: str,
        out_dir: Path,
        run_start_wall: float,
        max_poll_interval_ms: int,
    ) -> None:
        self.urls = urls
        self.topic = topic
        self.group = group
        self.out_dir = out_dir
        self.run_start_wall = run_start_wall
        self.max_poll_interval_ms = max_poll_interval_ms


class ProcessConsumer:
    """One consumer child process; ``partitions`` None means it subscribes to the group."""

    def __init__(
        self, name: str, slot: int, partitions: list[int] | None, settings: ConsumerSettings
    ) -> None:
        self.name = name
        self.slot = slot
        self.partitions = partitions
        self.settings = settings
        self.log_path = settings.out_dir / "logs" / f"consumer-{name}.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def alive(self) -> bool:
        """True while the process runs, stopped by SIGSTOP or not."""
        return self._process is not None and self._process.poll() is None

    def command(self) -> list[str]:
        """Return the argument list that starts this consumer."""
        settings = self.settings
        command = [
            sys.executable, "-m", "chaos.consumer_process",
            "--name", self.name,
            "--topic", settings.topic,
            "--group", settings.group,
            "--out-dir", str(settings.out_dir),
            "--run-start", repr(settings.run_start_wall),
            "--max-poll-interval-ms", str(settings.max_poll_interval_ms),
        ]  # fmt: skip
        for url in settings.urls:
            command += ["--bootstrap", url]
        if self.partitions is not None:
            command += ["--partitions", ",".join(str(p) for p in self.partitions)]
        return command

    def start(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(_SOURCE_ROOT), *filter(None, [env.get("PYTHONPATH")])]
        )
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        logger.info(
            "consumer started consumer=%s pid=%s partitions=%s",
            self.name,
            self._process.pid,
            "group" if self.partitions is None else self.partitions,
        )

    def _signal(self, sig: signal.Signals) -> None:
        if self._process is not None and self._process.poll() is None:
            try:
                os.kill(self._process.pid, sig)
            except ProcessLookupError:
                return

    async def _wait_exit(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while self.alive:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    async def crash(self) -> None:
        """Make the consumer SIGKILL itself after its next processed poll, before the commit.

        When no records arrive within CRASH_WAIT_S seconds, it is killed where it is.
        """
        self._signal(signal.SIGCONT)
        self._signal(signal.SIGUSR1)
        if not await self._wait_exit(CRASH_WAIT_S):
            logger.warning("consumer did not reach a poll with records consumer=%s", self.name)
            self._signal(signal.SIGKILL)
            await self._wait_exit(5.0)
        logger.info("consumer crashed consumer=%s", self.name)

    def stall(self) -> None:
        self._signal(signal.SIGSTOP)
        logger.info("consumer stalled consumer=%s", self.name)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)
        logger.info("consumer resumed consumer=%s", self.name)

    async def stop(self) -> None:
        """Stop the consumer with SIGTERM (it commits and leaves), SIGKILL after STOP_WAIT_S."""
        self._signal(signal.SIGCONT)
        self._signal(signal.SIGTERM)
        if not await self._wait_exit(STOP_WAIT_S):
            logger.warning("consumer ignored SIGTERM consumer=%s; sending SIGKILL", self.name)
            self._signal(signal.SIGKILL)
            await self._wait_exit(5.0)
