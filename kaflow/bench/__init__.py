"""Load generators behind `kaflow bench`: produce, consume and end-to-end latency runs.

Each run uses the Python client (``kaflow.client``) and returns a
:class:`BenchResult`, and docs/bench.md explains the figures. The run functions
live in ``kaflow.bench.produce``, ``kaflow.bench.consume`` and
``kaflow.bench.e2e`` and are not imported here, because they load aiohttp,
which the `kaflow` command avoids loading for other subcommands.
"""

from kaflow.bench.histogram import RELATIVE_PRECISION, LatencyHistogram
from kaflow.bench.report import BenchResult, StopReason, format_text, to_json
from kaflow.bench.settings import (
    DEFAULT_MAX_DURATION_S,
    ConsumeSettings,
    E2eSettings,
    KeyDistribution,
    KeyMode,
    ProduceSettings,
    RunLimit,
    parse_key_distribution,
)

__all__ = [
    "DEFAULT_MAX_DURATION_S",
    "RELATIVE_PRECISION",
    "BenchResult",
    "ConsumeSettings",
    "E2eSettings",
    "KeyDistribution",
    "KeyMode",
    "LatencyHistogram",
    "ProduceSettings",
    "RunLimit",
    "StopReason",
    "format_text",
    "parse_key_distribution",
    "to_json",
]
