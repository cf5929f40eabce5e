"""The sticky, lag-aware assignor as a pure function."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from kaflow.coordinator.assignor import assign, partition_weights

SIX = {"t": 6}


def counts(target: dict[str, frozenset[tuple[str, int]]]) -> list[int]:
    return sorted((len(owned) for owned in target.values()), reverse=True)


def test_assign_six_over_three_is_even() -> None:
    target = assign({m: {"t"} for m in "abc"}, SIX, {}, {})

    assert counts(target) == [2, 2, 2]


def test_assign_six_over_four_uneven() -> None:
    target = assign({m: {"t"} for m in "abcd"}, SIX, {}, {})

    assert counts(target) == [2, 2, 1, 1]


def test_assign_keeps_partitions_on_join() -> None:
    before = assign({m: {"t"} for m in "abc"}, SIX, {}, {})
    after = assign({m: {"t"} for m in "abcd"}, SIX, before, {})

    moved = sum(len(before[m] - after[m]) for m in "abc")
    assert moved == 1
    assert counts(after) == [2, 2, 1, 1]


def test_assign_lag_weighting_spreads_heavy_partitions() -> None:
    lags = {("t", 0): 1000, ("t", 1): 1000, ("t", 2): 0, ("t", 3): 0}
    target = assign({"a": {"t"}, "b": {"t"}}, {"t": 4}, {}, lags)

    assert {("t", 0), ("t", 1)} not in [set(owned) for owned in target.values()]
    assert counts(target) == [2, 2]


def test_assign_lag_weighting_changes_counts() -> None:
    lags = {("t", 0): 10_000}
    target = assign({"a": {"t"}, "b": {"t"}}, {"t": 6}, {}, lags)

    heavy_owner = next(m for m, owned in target.items() if ("t", 0) in owned)
    assert len(target[heavy_owner]) < 3


def test_partition_weights_without_lag_are_one() -> None:
    assert set(partition_weights({("t", 0), ("t", 1)}, {}).values()) == {1.0}


def test_assign_respects_subscriptions() -> None:
    target = assign({"a": {"x"}, "b": {"y"}}, {"x": 2, "y": 3}, {}, {})

    assert target["a"] == {("x", 0), ("x", 1)}
    assert target["b"] == {("y", 0), ("y", 1), ("y", 2)}


def test_assign_is_deterministic() -> None:
    first = assign({m: {"t", "u"} for m in "cab"}, {"t": 5, "u": 3}, {}, {("t", 1): 7})
    second = assign({m: {"u", "t"} for m in "bca"}, {"u": 3, "t": 5}, {}, {("t", 1): 7})

    assert first == second


@given(
    members=st.dictionaries(
        st.sampled_from(["a", "b", "c", "d", "e"]),
        st.sets(st.sampled_from(["x", "y", "z"]), min_size=1),
        min_size=1,
    ),
    partition_counts=st.fixed_dictionaries(
        {"x": st.integers(0, 8), "y": st.integers(0, 8), "z": st.integers(0, 8)}
    ),
    lag_values=st.lists(st.integers(0, 1000), max_size=24),
)
def test_assign_never_two_owners_and_all_assigned(
    members: dict[str, set[str]], partition_counts: dict[str, int], lag_values: list[int]
) -> None:
    every = [(t, p) for t in sorted(partition_counts) for p in range(partition_counts[t])]
    lags = dict(zip(every, lag_values, strict=False))
    target = assign(members, partition_counts, {}, lags)

    owners: dict[tuple[str, int], str] = {}
    for member, owned in target.items():
        for partition in owned:
            assert partition not in owners
            assert partition[0] in members[member]
            owners[partition] = member
    subscribed = {t for topics in members.values() for t in topics}
    assert set(owners) == {p for p in every if p[0] in subscribed}
