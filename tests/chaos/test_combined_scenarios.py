"""Scenarios joined with '+' run their faults one after another in one run."""

from __future__ import annotations

import pytest

from chaos.api import ChaosUnsupportedError, find_scenario, scenarios


def test_combined_scenario_runs_parts_in_turn() -> None:
    leader_kill = scenarios()["leader-kill"]
    pause = scenarios()["pause"]

    combined = find_scenario("leader-kill+pause")

    assert combined is not None
    assert combined.name == "leader-kill+pause"
    assert len(combined.faults) == len(leader_kill.faults) + len(pause.faults)
    windows = [spec.window(100.0) for spec in combined.faults]
    first = windows[: len(leader_kill.faults)]
    second = windows[len(leader_kill.faults) :]
    assert all(start + length <= 50.0 for start, length in first)
    assert all(start >= 50.0 for start, _ in second)
    assert [start for start, _ in windows] == sorted(start for start, _ in windows)
    assert combined.default_duration_s == (
        leader_kill.default_duration_s + pause.default_duration_s
    )


def test_combined_scenario_keeps_common_runners_and_loosest_bound() -> None:
    combined = find_scenario("partition+kill-all")

    assert combined is not None
    assert combined.runners == frozenset({"process"})
    # kill-all takes the majority away, so the combination has no unavailability bound.
    assert combined.max_unavailability_s is None


def test_combined_scenario_with_two_filesystems_refused() -> None:
    with pytest.raises(ChaosUnsupportedError, match="cannot be combined"):
        find_scenario("power-loss+disk-full")


def test_combined_scenario_with_special_filesystem_keeps_it() -> None:
    power_loss = scenarios()["power-loss"]

    combined = find_scenario("leader-kill+power-loss")

    assert combined is not None
    assert combined.data_dirs is power_loss.data_dirs


def test_combined_scenario_unknown_part() -> None:
    assert find_scenario("leader-kill+no-such-fault") is None
