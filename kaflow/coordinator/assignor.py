"""The sticky, lag-aware assignment strategy.

:func:`assign` computes a group's target assignment. It is deterministic:
the same input gives the same output, whatever the order of the mappings.

A partition's weight is ``1 + lag / mean_lag`` (1 for every partition when
no partition has lag). The added 1 keeps the partition count in play, so a
member with a few lagging partitions does not end up with no others. A
member's load is the sum of its partitions' weights.

1. Each member keeps the partitions of its current target that it still
   subscribes to, so a rebalance moves as few partitions as it can.
2. Unassigned partitions go out heaviest first, each to the eligible member
   with the least load (ties: fewest partitions, then member id).
3. A partition moves from a more loaded member to a less loaded eligible one
   while the move lowers the larger of the two loads. Each move lowers the
   sum of squared loads, so the loop ends.

With no lag this balances by count: 6 partitions over 3 members is 2/2/2,
over 4 members 2/2/1/1.
"""

from __future__ import annotations

from collections.abc import Mapping, Set

from kaflow.coordinator.model import TopicPartition

__all__ = ["assign", "partition_weights"]

# Loads are float sums; a move must improve by more than this to count.
_EPSILON = 1e-9


def partition_weights(
    partitions: Set[TopicPartition], lags: Mapping[TopicPartition, int]
) -> dict[TopicPartition, float]:
    """Return ``1 + lag / mean_lag`` for each partition (1 when the mean lag is 0)."""
    if not partitions:
        return {}
    total = sum(max(0, lags.get(partition, 0)) for partition in partitions)
    mean = total / len(partitions)
    if mean <= 0:
        return dict.fromkeys(partitions, 1.0)
    return {partition: 1.0 + max(0, lags.get(partition, 0)) / mean for partition in partitions}


def assign(
    subscriptions: Mapping[str, Set[str]],
    partition_counts: Mapping[str, int],
    current: Mapping[str, Set[TopicPartition]],
    lags: Mapping[TopicPartition, int],
) -> dict[str, frozenset[TopicPartition]]:
    """Return member id -> target partitions.

    ``subscriptions`` maps member id -> subscribed topics, ``partition_counts``
    topic -> partition count (a topic missing here has no partitions),
    ``current`` is the previous target and ``lags`` the lag per partition.
    Every partition of a subscribed topic is assigned to exactly one member
    that subscribes to it.
    """
    members = sorted(subscriptions)
    partitions = {
        (topic, number)
        for member in members
        for topic in subscriptions[member]
        for number in range(partition_counts.get(topic, 0))
    }
    weights = partition_weights(partitions, lags)
    target: dict[str, set[TopicPartition]] = {member: set() for member in members}

    # 1. Keep what each member had and still subscribes to.
    taken: set[TopicPartition] = set()
    for member in members:
        for partition in sorted(current.get(member, ())):
            still_subscribed = partition in partitions and partition[0] in subscriptions[member]
            if still_subscribed and partition not in taken:
                target[member].add(partition)
                taken.add(partition)

    loads = {member: sum(weights[p] for p in target[member]) for member in members}

    # 2. Hand out the rest, heaviest first, to the least loaded eligible member.
    free = sorted(partitions - taken, key=lambda p: (-weights[p], p))
    for partition in free:
        eligible = [member for member in members if partition[0] in subscriptions[member]]
        chosen = min(eligible, key=lambda m: (loads[m], len(target[m]), m))
        target[chosen].add(partition)
        loads[chosen] += weights[partition]

    # 3. Move partitions while a move lowers the larger of the two loads.
    _balance(target, loads, weights, subscriptions, max_moves=4 * len(partitions) + 1)
    return {member: frozenset(owned) for member, owned in target.items()}


def _balance(
    target: dict[str, set[TopicPartition]],
    loads: dict[str, float],
    weights: Mapping[TopicPartition, float],
    subscriptions: Mapping[str, Set[str]],
    max_moves: int,
) -> None:
    for _ in range(max_moves):
        move = _best_move(target, loads, weights, subscriptions)
        if move is None:
            return
        partition, source, destination = move
        target[source].remove(partition)
        target[destination].add(partition)
        loads[source] -= weights[partition]
        loads[destination] += weights[partition]


def _best_move(
    target: Mapping[str, set[TopicPartition]],
    loads: Mapping[str, float],
    weights: Mapping[TopicPartition, float],
    subscriptions: Mapping[str, Set[str]],
) -> tuple[TopicPartition, str, str] | None:
    """Return the move that most lowers the most loaded member's load, or None."""
    by_load = sorted(target, key=lambda m: (-loads[m], -len(target[m]), m))
    for source in by_load:
        best: tuple[float, TopicPartition, str] | None = None
        for partition in sorted(target[source]):
            weight = weights[partition]
            for destination in sorted(target):
                if destination == source or partition[0] not in subscriptions[destination]:
                    continue
                if loads[destination] + weight >= loads[source] - _EPSILON:
                    continue
                larger = max(loads[source] - weight, loads[destination] + weight)
                if best is None or larger < best[0] - _EPSILON:
                    best = (larger, partition, destination)
        if best is not None:
            return best[1], source, best[2]
    return None
