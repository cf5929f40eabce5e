"""Typed keys for what the application stores for its handlers."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Final

from aiohttp import web

from kaflow.broker import Broker
from kaflow.config import NodeConfig

__all__ = ["BROKER_KEY", "CONFIG_KEY", "LONG_POLL_KEY", "SHUTDOWN_KEY", "LongPollStatistics"]


@dataclass
class LongPollStatistics:
    """Counts of long-poll fetches, so tests and operators can see parked requests."""

    # Fetches now waiting in the broker for data.
    waiting: int = 0
    # Fetches that waited and have finished, by data, timeout or shutdown.
    completed: int = 0


BROKER_KEY: Final = web.AppKey[Broker]("broker")
CONFIG_KEY: Final = web.AppKey("config", NodeConfig)
# Set when the application starts shutting down, so long polls return early.
SHUTDOWN_KEY: Final = web.AppKey("shutdown", asyncio.Event)
LONG_POLL_KEY: Final = web.AppKey("long_poll", LongPollStatistics)
