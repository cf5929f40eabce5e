"""Stateful property test: the log always matches a simple in-memory model."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from kaflow.errors import StorageError
from kaflow.storage import (
    BatchRecord,
    FileCache,
    LogConfig,
    PartitionLog,
    decode_batch,
    encode_batch,
    iter_batches,
    read_batch_header,
)

Row = tuple[int, bytes | None, bytes | None, tuple[tuple[str, bytes], ...]]

record_strategy = st.builds(
    BatchRecord,
    timestamp=st.integers(0, 1_000),
    key=st.none() | st.binary(max_size=12),
    value=st.none() | st.binary(max_size=80),
    headers=st.lists(st.tuples(st.text(max_size=4), st.binary(max_size=6)), max_size=2).map(tuple),
)
config_strategy = st.builds(
    LogConfig,
    segment_bytes=st.integers(60, 700),
    segment_ms=st.integers(1, 2_000),
    index_interval_bytes=st.integers(0, 300),
)


class LogModel(RuleBasedStateMachine):
    """Drives a PartitionLog and a dict of offset -> record side by side."""

    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="kaflow-storage-model-"))
        self.directory = self.root / "t-0"
        self.files = FileCache(max_open=4)
        self.config = LogConfig(segment_bytes=300, index_interval_bytes=64)
        self.log = PartitionLog.open(self.directory, self.config, self.files)
        self.rows: dict[int, Row] = {}
        # Base offset and record count of every batch ever appended and not truncated.
        self.batches: list[tuple[int, int]] = []
        self.start = 0
        self.end = 0

    def teardown(self) -> None:
        self.log.close()
        self.files.close_all()
        shutil.rmtree(self.root)

    @rule(records=st.lists(record_strategy, min_size=1, max_size=5))
    def append(self, records: list[BatchRecord]) -> None:
        base, last = self.log.append(encode_batch(records, base_offset=7))

        assert (base, last) == (self.end, self.end + len(records) - 1)
        for index, record in enumerate(records):
            self.rows[base + index] = (record.timestamp, record.key, record.value, record.headers)
        self.batches.append((base, len(records)))
        self.end += len(records)

    @rule(fraction=st.floats(0, 1))
    def advance_log_start(self, fraction: float) -> None:
        offset = self.start + int(fraction * (self.end - self.start))

        self.log.advance_log_start(offset)

        self._drop_below(offset)

    @rule(retention_bytes=st.integers(0, 1_500))
    def apply_size_retention(self, retention_bytes: int) -> None:
        self.config = LogConfig(
            segment_bytes=self.config.segment_bytes,
            index_interval_bytes=self.config.index_interval_bytes,
            retention_ms=-1,
            retention_bytes=retention_bytes,
        )
        self.log.update_config(self.config)
        size_before = self.log.size_bytes

        target = self.log.retention_target(now_ms=0)

        if target is None:
            return
        assert self.start < target <= self.end
        assert target in {base for base, _ in self.batches}
        self.log.advance_log_start(target)
        self._drop_below(target)
        assert self.log.size_bytes >= min(retention_bytes, size_before)

    @rule(now=st.integers(0, 2_000), retention_ms=st.integers(0, 1_000))
    def apply_time_retention(self, now: int, retention_ms: int) -> None:
        self.config = LogConfig(
            segment_bytes=self.config.segment_bytes,
            index_interval_bytes=self.config.index_interval_bytes,
            retention_ms=retention_ms,
        )
        self.log.update_config(self.config)

        target = self.log.retention_target(now_ms=now)

        if target is None:
            return
        assert self.start < target <= self.end
        for offset in range(self.start, target):
            assert self.rows[offset][0] < now - retention_ms, f"offset {offset} is too recent"
        self.log.advance_log_start(target)
        self._drop_below(target)

    @precondition(lambda self: self.batches)
    @rule(data=st.data())
    def truncate_at_boundary(self, data: st.DataObject) -> None:
        offset = data.draw(st.sampled_from([base for base, _ in self.batches] + [self.end]))

        self.log.truncate_to(offset)

        if offset < self.start:
            self.rows.clear()
            self.batches.clear()
            self.start = offset
        else:
            self.rows = {o: row for o, row in self.rows.items() if o < offset}
            self.batches = [(base, count) for base, count in self.batches if base < offset]
        self.end = offset

    @precondition(lambda self: any(count > 1 for _, count in self.batches))
    @rule(data=st.data())
    def truncate_inside_batch_fails(self, data: st.DataObject) -> None:
        base, count = data.draw(st.sampled_from([b for b in self.batches if b[1] > 1]))
        offset = base + data.draw(st.integers(1, count - 1))
        if offset < self.start:
            return

        with pytest.raises(StorageError, match="inside the batch"):
            self.log.truncate_to(offset)

    @rule()
    def reopen(self) -> None:
        self.log.close()
        self.log = PartitionLog.open(self.directory, self.config, self.files)

    @rule(config=config_strategy)
    def update_config(self, config: LogConfig) -> None:
        self.config = config
        self.log.update_config(config)

    @rule(data=st.data())
    def read_from_offset(self, data: st.DataObject) -> None:
        offset = data.draw(st.integers(self.start, self.end))
        max_bytes = data.draw(st.integers(0, 600))

        chunk = self.log.read(offset, max_bytes)

        batches = list(iter_batches(chunk))
        assert sum(len(batch) for batch in batches) == len(chunk)
        if offset == self.end:
            assert chunk == b""
            return
        first = read_batch_header(batches[0])
        assert first.base_offset <= offset < first.next_offset
        assert len(batches) == 1 or len(chunk) <= max_bytes
        for batch in batches:
            for record in decode_batch(batch):
                if record.offset >= self.start:
                    expected = self.rows[record.offset]
                    assert (record.timestamp, record.key, record.value, record.headers) == expected

    @rule(timestamp=st.integers(0, 1_001))
    def lookup_timestamp(self, timestamp: int) -> None:
        expected = next(
            (
                (offset, row[0])
                for offset, row in sorted(self.rows.items())
                if offset >= self.start and row[0] >= timestamp
            ),
            None,
        )

        assert self.log.offset_for_timestamp(timestamp) == expected

    @invariant()
    def offsets_match(self) -> None:
        assert self.log.log_start_offset == self.start
        assert self.log.log_end_offset == self.end

    @invariant()
    def records_match(self) -> None:
        records = self.log.read_records(self.start, 1 << 30, 1 << 30)

        assert [r.offset for r in records] == list(range(self.start, self.end))
        assert [(r.timestamp, r.key, r.value, r.headers) for r in records] == [
            self.rows[offset] for offset in range(self.start, self.end)
        ]

    def _drop_below(self, offset: int) -> None:
        if offset <= self.start:
            return
        self.start = offset
        self.rows = {o: row for o, row in self.rows.items() if o >= offset}


LogModel.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
test_log_matches_model = LogModel.TestCase
