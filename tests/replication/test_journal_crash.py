"""RaftJournal after SIGKILL of a process that appends, syncs and compacts in a loop."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kaflow.replication.journal import RaftJournal

# The writer appends batches of 20 entries, syncs, reports the last synced
# index, and compacts whenever more than 100 entries are kept, so a kill at a
# random moment can land inside an append, a sync or a compaction.
WRITER = textwrap.dedent(
    """
    import sys

    from kaflow.replication.journal import RaftJournal

    def payload(index):
        return b"%d:" % index * (1 + index % 7)

    journal = RaftJournal(sys.argv[1], segment_bytes=2048)
    index = journal[-1][1] + 1 if len(journal) else 1
    while True:
        for _ in range(20):
            journal.add(payload(index), index, 1)
            index += 1
        journal.sync()
        print("synced", index - 1, flush=True)
        if len(journal) > 100:
            journal.deleteEntriesTo(len(journal) - 30)
    """
)


def payload(index: int) -> bytes:
    return b"%d:" % index * (1 + index % 7)


def run_writer_until_killed(path: Path, synced_batches: int) -> int:
    """Start the writer and SIGKILL it after ``synced_batches`` reported syncs.

    Returns the last index the writer reported as synced.
    """
    process = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    last_synced = 0
    try:
        for _ in range(synced_batches):
            line = process.stdout.readline()
            if not line:
                pytest.fail(f"writer exited early: {process.communicate()[1]}")
            last_synced = int(line.split()[1])
    finally:
        process.kill()
        process.wait(timeout=30)
        process.stdout.close()
        assert process.stderr is not None
        process.stderr.close()
    return last_synced


@pytest.mark.parametrize("rounds", [(3, 17, 41, 8)], ids=["four-kills"])
def test_journal_consistent_after_sigkill(tmp_path: Path, rounds: tuple[int, ...]) -> None:
    path = tmp_path / "journal"
    for synced_batches in rounds:
        last_synced = run_writer_until_killed(path, synced_batches)

        with RaftJournal(path, segment_bytes=2048) as journal:
            entries = list(journal[0:])
            assert entries, "the journal lost every entry"
            first_index = entries[0][1]
            indexes = [index for _, index, _ in entries]
            assert indexes == list(range(first_index, first_index + len(entries)))
            assert all(command == payload(index) for command, index, _ in entries)
            assert indexes[-1] >= last_synced
            assert first_index <= last_synced


# The child fills a journal, then replaces one function with a wrapper that
# SIGKILLs the process on its N-th call, and runs one operation.
KILLED_OPERATION = textwrap.dedent(
    """
    import os
    import signal
    import sys

    from kaflow.replication.journal import RaftJournal
    from kaflow.replication.journal_directory import JournalDirectory

    path, operation, target, kill_at = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    journal = RaftJournal(path, segment_bytes=512)
    for index in range(1, 61):
        journal.add(b"%d:" % index * (1 + index % 7), index, 1)
    journal.sync()

    calls = []

    def kill_on_call(original):
        def wrapper(*args, **kwargs):
            calls.append(1)
            if len(calls) == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return original(*args, **kwargs)
        return wrapper

    if target == "remove":
        JournalDirectory.remove = kill_on_call(JournalDirectory.remove)
    else:
        setattr(os, target, kill_on_call(getattr(os, target)))

    if operation == "compact":
        journal.deleteEntriesTo(45)
    elif operation == "truncate":
        journal.deleteEntriesFrom(12)
    else:
        journal.clear()
    print("the kill point was never reached", flush=True)
    """
)

ALL_ENTRIES = [(payload(index), index, 1) for index in range(1, 61)]


@pytest.mark.parametrize(
    ("operation", "target", "kill_at", "allowed"),
    [
        ("compact", "replace", 1, [ALL_ENTRIES]),
        ("compact", "remove", 1, [ALL_ENTRIES[45:]]),
        ("compact", "remove", 2, [ALL_ENTRIES[45:]]),
        ("clear", "remove", 1, [[]]),
        ("clear", "remove", 3, [[]]),
        ("truncate", "remove", 2, [ALL_ENTRIES[:n] for n in range(12, 61)]),
        ("truncate", "ftruncate", 1, [ALL_ENTRIES[:n] for n in range(12, 61)]),
    ],
    ids=[
        "compact-before-meta-rename",
        "compact-before-first-removal",
        "compact-after-first-removal",
        "clear-before-first-removal",
        "clear-after-two-removals",
        "truncate-after-first-removal",
        "truncate-before-cutting-segment",
    ],
)
def test_operation_killed_midway_recovers(
    tmp_path: Path,
    operation: str,
    target: str,
    kill_at: int,
    allowed: list[list[tuple[bytes, int, int]]],
) -> None:
    path = tmp_path / "journal"
    result = subprocess.run(
        [sys.executable, "-c", KILLED_OPERATION, str(path), operation, target, str(kill_at)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == -9, result.stdout + result.stderr

    with RaftJournal(path, segment_bytes=512) as journal:
        entries = list(journal[0:])
        assert entries in allowed
        journal.add(b"after", entries[-1][1] + 1 if entries else 61, 2)
