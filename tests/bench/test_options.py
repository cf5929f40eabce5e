from __future__ import annotations

import pytest

from kaflow.bench.settings import (
    DEFAULT_MAX_DURATION_S,
    KeyDistribution,
    KeyMode,
    RunLimit,
    parse_key_distribution,
)
from kaflow.cli.main import main
from kaflow.cli.parser import build_parser

# A node URL nothing listens on. Every case below fails before any request.
BOOTSTRAP = "http://127.0.0.1:1"


def run_bench(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """Run `kaflow bench ARGS` in this process and return the exit status and stderr."""
    try:
        status = main(["--bootstrap", BOOTSTRAP, "bench", *args])
    except SystemExit as exc:
        status = int(exc.code or 0)
    return status, capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(
            ["produce", "--topic", "t"],
            "one of the arguments --records --duration is required",
            id="produce-no-bound",
        ),
        pytest.param(
            ["produce", "--topic", "t", "--records", "5", "--duration", "1"],
            "not allowed with argument",
            id="produce-records-and-duration",
        ),
        pytest.param(
            ["produce", "--topic", "t", "--records", "0"],
            "invalid value 0: must be 1 or more",
            id="produce-zero-records",
        ),
        pytest.param(
            ["produce", "--topic", "t", "--records", "5", "--record-size", "-1"],
            "invalid value -1: must be 0 or more",
            id="produce-negative-record-size",
        ),
        pytest.param(
            ["produce", "--topic", "t", "--records", "5", "--key-distribution", "uniform:0"],
            "invalid key distribution 'uniform:0'",
            id="produce-uniform-zero-keys",
        ),
        pytest.param(
            ["produce", "--topic", "t", "--records", "5", "--key-distribution", "random"],
            "use none, sequential or uniform:K",
            id="produce-unknown-key-distribution",
        ),
        pytest.param(
            ["produce", "--topic", "t", "--records", "5", "--in-flight", "0"],
            "invalid value 0: must be 1 or more",
            id="produce-zero-in-flight",
        ),
        pytest.param(
            ["produce", "--topic", "t", "--records", "5", "--target-rate", "-3"],
            "invalid value -3: must be 0 or more",
            id="produce-negative-rate",
        ),
        pytest.param(
            ["produce", "--topic", "t", "--records", "5", "--partitions", "3"],
            "--partitions 3 needs --create",
            id="produce-partitions-without-create",
        ),
        pytest.param(
            ["produce", "--topic", "t", "--duration", "20", "--max-duration", "10"],
            "duration 20 s exceeds the max duration of 10 s",
            id="produce-duration-over-max",
        ),
        pytest.param(
            ["consume", "--topic", "t", "--duration", "abc"],
            "invalid number 'abc'",
            id="consume-duration-not-number",
        ),
        pytest.param(
            ["consume", "--topic", "t", "--records", "5", "--max-duration", "0"],
            "invalid value 0: must be more than 0",
            id="consume-zero-max-duration",
        ),
        pytest.param(
            ["e2e", "--topic", "t", "--duration", "1"],
            "the following arguments are required: --rate",
            id="e2e-no-rate",
        ),
        pytest.param(
            ["e2e", "--topic", "t", "--rate", "10", "--duration", "1", "--record-size", "8"],
            "invalid record size 8: e2e records need at least 16 bytes",
            id="e2e-record-too-small",
        ),
        pytest.param(["e2e", "--rate", "10", "--duration", "1"], "--topic", id="e2e-no-topic"),
    ],
)
def test_bench_invalid_options_exit_2(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    status, stderr = run_bench(capsys, *args)
    assert status == 2
    assert message in stderr
    assert "usage: kaflow bench" in stderr


def test_bench_produce_defaults() -> None:
    args = build_parser().parse_args(["bench", "produce", "--topic", "t", "--records", "10"])
    assert args.records == 10
    assert args.duration is None
    assert args.max_duration == DEFAULT_MAX_DURATION_S
    assert args.record_size == 100
    assert args.key_distribution == KeyDistribution(KeyMode.NONE)
    assert args.in_flight == 1000
    assert args.target_rate == 0
    assert args.idempotence is True
    assert args.output == "text"


def test_bench_produce_no_idempotence_flag() -> None:
    args = build_parser().parse_args(
        ["bench", "produce", "--topic", "t", "--duration", "2", "--no-idempotence"]
    )
    assert args.idempotence is False
    assert args.duration == 2.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("none", KeyDistribution(KeyMode.NONE), id="none"),
        pytest.param("sequential", KeyDistribution(KeyMode.SEQUENTIAL), id="sequential"),
        pytest.param("uniform:7", KeyDistribution(KeyMode.UNIFORM, 7), id="uniform"),
    ],
)
def test_key_distribution_parses(text: str, expected: KeyDistribution) -> None:
    assert parse_key_distribution(text) == expected


def test_run_limit_time_limit_defaults_to_max_duration() -> None:
    assert RunLimit(records=5, duration_s=None, max_duration_s=12).time_limit_s == 12
    assert RunLimit(records=None, duration_s=3, max_duration_s=12).time_limit_s == 3
