from __future__ import annotations

import random
import threading
from pathlib import Path

from kaflow.errors import OffsetOutOfRangeError
from kaflow.storage import FileCache, PartitionLog, iter_batches, read_batch_header, verify_batch
from tests.storage.helpers import make_batch, open_log

APPENDS = 1_500
READERS = 3


def check_read(log: PartitionLog, offset: int, data: bytes) -> None:
    """Assert that ``data`` is a chain of whole, valid batches starting at ``offset``."""
    batches = list(iter_batches(data))
    assert sum(len(batch) for batch in batches) == len(data), "a partial batch was returned"
    if not batches:
        return
    first = read_batch_header(batches[0])
    assert first.base_offset <= offset < first.next_offset
    expected = first.base_offset
    for batch in batches:
        verify_batch(batch)
        header = read_batch_header(batch)
        assert header.base_offset == expected, "batches are not consecutive"
        expected = header.next_offset


def write(log: PartitionLog, done: threading.Event, errors: list[BaseException]) -> None:
    rng = random.Random(1)
    try:
        for index in range(APPENDS):
            log.append(
                make_batch(rng.randint(1, 4), timestamp=index, value_size=rng.randint(0, 90))
            )
            if index % 100 == 99:
                log.advance_log_start(log.log_end_offset - 150)
            if index % 70 == 69:
                # Cut back to a batch boundary a few batches ago, then keep appending.
                data = log.read(log.log_end_offset - 20, 1 << 20)
                log.truncate_to(read_batch_header(data).base_offset)
    except BaseException as exc:
        errors.append(exc)
    finally:
        done.set()


def read_until_done(
    log: PartitionLog,
    done: threading.Event,
    seed: int,
    counts: list[int],
    errors: list[BaseException],
) -> None:
    rng = random.Random(seed)
    successes = 0
    try:
        while not done.is_set():
            start, end = log.log_start_offset, log.log_end_offset
            offset = rng.randint(start, end)
            try:
                if rng.random() < 0.2:
                    records = log.read_records(offset, rng.randint(1, 3_000), 50)
                    assert [r.offset for r in records] == list(range(offset, offset + len(records)))
                else:
                    check_read(log, offset, log.read(offset, rng.randint(1, 3_000)))
                if rng.random() < 0.05:
                    log.offset_for_timestamp(rng.randint(0, APPENDS))
            except OffsetOutOfRangeError:
                continue  # the log start moved or a truncation cut below the chosen offset
            successes += 1
    except BaseException as exc:
        errors.append(exc)
    counts.append(successes)


def test_concurrent_reads_whole_batches(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0", FileCache(6), segment_bytes=2_000, index_interval_bytes=200)
    done = threading.Event()
    errors: list[BaseException] = []
    counts: list[int] = []
    threads = [threading.Thread(target=write, args=(log, done, errors))]
    threads += [
        threading.Thread(target=read_until_done, args=(log, done, seed, counts, errors))
        for seed in range(READERS)
    ]

    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)

    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert len(counts) == READERS
    assert min(counts) > 20, f"readers completed too few reads: {counts}"
    check_read(log, log.log_start_offset, log.read(log.log_start_offset, 1 << 30))
