"""RaftJournal against PySyncObj's MemoryJournal under random operation sequences.

Both journals receive the same adds, truncations, compactions, clears and
term changes. Every read must return the same result, also after the durable
journal is closed and reopened.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from pysyncobj.journal import MemoryJournal

from kaflow.config import FsyncPolicy
from kaflow.replication.journal import RaftJournal

positions = st.integers(min_value=-40, max_value=40)
optional_positions = st.none() | positions
steps = st.none() | st.sampled_from([1, 2, 3, -1, -2])


class JournalComparison(RuleBasedStateMachine):
    # Set by the test. Each run gets a fresh directory under base_path.
    base_path: Path
    fsync: FsyncPolicy
    runs: Iterator[int]

    def __init__(self) -> None:
        super().__init__()
        self.path = self.base_path / f"run-{next(self.runs)}"
        self.journal = self.open()
        self.model: Any = MemoryJournal()

    def open(self) -> RaftJournal:
        # 160-byte segments hold only a few entries, so segments roll often.
        return RaftJournal(self.path, fsync=self.fsync, segment_bytes=160, cache_bytes=300)

    @rule(command=st.binary(max_size=40), term_step=st.integers(0, 2), start=st.integers(0, 50))
    def add(self, command: bytes, term_step: int, start: int) -> None:
        if len(self.model):
            _, last_index, last_term = self.model[-1]
            index, term = last_index + 1, last_term + term_step
        else:
            index, term = start, term_step
        self.journal.add(command, index, term)
        self.model.add(command, index, term)

    @rule(count=st.integers(1, 30))
    def add_many(self, count: int) -> None:
        first = self.model[-1][1] + 1 if len(self.model) else 1
        for index in range(first, first + count):
            self.journal.add(b"%d" % index, index, 1)
            self.model.add(b"%d" % index, index, 1)

    @rule(position=positions)
    def delete_entries_from(self, position: int) -> None:
        self.journal.deleteEntriesFrom(position)
        self.model.deleteEntriesFrom(position)

    @rule(position=positions)
    def delete_entries_to(self, position: int) -> None:
        self.journal.deleteEntriesTo(position)
        self.model.deleteEntriesTo(position)

    @rule()
    def clear(self) -> None:
        self.journal.clear()
        self.model.clear()

    @rule(term=st.integers(0, 5), voted_for=st.none() | st.sampled_from(["a:1", "b:2"]))
    def set_current_term(self, term: int, voted_for: str | None) -> None:
        self.journal.setCurrentTerm(term, voted_for)
        self.model.setCurrentTerm(term, voted_for)

    @rule()
    def sync(self) -> None:
        self.journal.sync()

    @rule()
    def reopen(self) -> None:
        self.journal.close()
        self.journal = self.open()
        assert self.journal.statistics().torn_bytes_removed == 0

    @rule(position=positions)
    def read_position(self, position: int) -> None:
        try:
            expected = self.model[position]
        except IndexError:
            with pytest.raises(IndexError):
                self.journal[position]
            return
        assert self.journal[position] == expected

    @rule(start=optional_positions, stop=optional_positions, step=steps)
    def read_slice(self, start: int | None, stop: int | None, step: int | None) -> None:
        cut = slice(start, stop, step)
        view = self.journal[cut]
        assert list(view) == self.model[cut]
        assert len(view) == len(self.model[cut])

    @invariant()
    def same_length_ends_and_term(self) -> None:
        assert len(self.journal) == len(self.model)
        if len(self.model):
            assert self.journal[0] == self.model[0]
            assert self.journal[-1] == self.model[-1]
        assert self.journal.getCurrentTerm() == self.model.getCurrentTerm()
        assert self.journal.getVotedForNodeId() == self.model.getVotedForNodeId()

    def teardown(self) -> None:
        self.journal.close()


@pytest.mark.parametrize(
    ("fsync", "examples"),
    [(FsyncPolicy.NEVER, 150), (FsyncPolicy.ALWAYS, 30)],
    ids=["never", "always"],
)
def test_journal_matches_memory_journal(tmp_path: Path, fsync: FsyncPolicy, examples: int) -> None:
    class Comparison(JournalComparison):
        base_path = tmp_path
        runs = itertools.count()

    Comparison.fsync = fsync
    run_state_machine_as_test(
        Comparison,
        settings=settings(
            max_examples=examples,
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
