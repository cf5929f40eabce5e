"""Consumer properties of the chaos checker.

- A node's committed offset of a partition never goes down, except right
  after an explicit reset (``commit_backwards``). Each node is judged alone
  because followers may lag the leader.
- No two members with valid generations consume the same partition at
  overlapping times (``concurrent_consumption``). A member is (member id,
  member epoch). Its time on a partition runs from its first to its last
  processed record there that a commit of the same member and epoch covers.
- Every offset below the last commit of a partition was processed at least
  once (``consumption_gap``).
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from typing import Any

from chaos.verdict import RunLogs, ViolationCollector, ViolationKind

__all__ = ["check_consumers"]


def _check_commits_monotonic(logs: RunLogs, found: ViolationCollector) -> None:
    resets: dict[int, list[float]] = defaultdict(list)
    for reset in logs.resets:
        resets[reset["partition"]].append(reset["t"])
    samples: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for sample in logs.committed:
        samples[(sample.get("node", ""), sample["partition"])].append(sample)
    for (node, partition), series in sorted(samples.items()):
        series.sort(key=lambda sample: sample["t"])
        for before, after in itertools.pairwise(series):
            if after["offset"] >= before["offset"]:
                continue
            if any(before["t"] <= t <= after["t"] for t in resets[partition]):
                continue
            found.add(
                ViolationKind.COMMIT_BACKWARDS,
                f"{node}/{partition}",
                f"node {node} partition {partition}: the committed offset went down",
                t=after["t"],
                offset=after["offset"],
                previous_offset=before["offset"],
                previous_t=before["t"],
            )


def _check_exclusive_ownership(logs: RunLogs, found: ViolationCollector) -> None:
    # A record counts only when the same member and epoch later committed past
    # it: the commit proves the generation was valid. A fenced member that
    # still processes records has its commits rejected, so it is not counted.
    committed: dict[tuple[Any, Any, int], int] = {}
    for commit in logs.commits:
        key = (commit.get("member_id"), commit.get("member_epoch"), commit["partition"])
        committed[key] = max(commit["offset"], committed.get(key, 0))
    spans: dict[int, dict[tuple[str, Any], list[float]]] = defaultdict(dict)
    for entry in logs.consumed:
        member = (entry["member_id"], entry.get("member_epoch"))
        if entry["offset"] >= committed.get((*member, entry["partition"]), 0):
            continue
        span = spans[entry["partition"]].setdefault(member, [entry["t"], entry["t"]])
        span[0] = min(span[0], entry["t"])
        span[1] = max(span[1], entry["t"])
    for partition, members in sorted(spans.items()):
        ordered = sorted(members.items(), key=lambda item: item[1][0])
        for index, (member, (start, stop)) in enumerate(ordered):
            for other, (other_start, other_stop) in ordered[index + 1 :]:
                if other[0] == member[0] or other_start > stop:
                    continue
                found.add(
                    ViolationKind.CONCURRENT_CONSUMPTION,
                    str(partition),
                    f"partition {partition} was consumed by two members at once",
                    member=list(member),
                    member_span=[start, stop],
                    other=list(other),
                    other_span=[other_start, other_stop],
                )


def _check_coverage(logs: RunLogs, found: ViolationCollector) -> None:
    last_commit: dict[int, int] = {}
    for commit in logs.commits:
        last_commit[commit["partition"]] = max(
            commit["offset"], last_commit.get(commit["partition"], 0)
        )
    processed: dict[int, set[int]] = defaultdict(set)
    for entry in logs.consumed:
        processed[entry["partition"]].add(entry["offset"])
    for partition, committed in sorted(last_commit.items()):
        # The consumers start at the log start offset, 0, because the run's
        # topic is new and has no retention limit that removes records.
        missing = [o for o in range(committed) if o not in processed[partition]]
        if missing:
            found.add(
                ViolationKind.CONSUMPTION_GAP,
                str(partition),
                f"partition {partition}: {len(missing)} offsets below the last commit "
                f"({committed}) were never processed",
                first_missing=missing[:10],
                committed=committed,
            )


def check_consumers(logs: RunLogs, found: ViolationCollector) -> None:
    """Add the consumer violations of ``logs`` to ``found``."""
    _check_commits_monotonic(logs, found)
    _check_exclusive_ownership(logs, found)
    _check_coverage(logs, found)
