"""Partition logs on disk: the record batch format, segments, indexes, recovery and retention.

Start with :class:`LogManager`, which owns every :class:`PartitionLog` of a
node and the :class:`FileCache` they share. docs/storage.md describes the
on-disk formats and the directory layout.
"""

from kaflow.storage.batch import (
    BATCH_HEADER_SIZE,
    BatchHeader,
    BatchRecord,
    decode_batch,
    encode_batch,
    iter_batches,
    read_batch_header,
    record_size_estimate,
    verify_batch,
    with_base_offset,
)
from kaflow.storage.errors import CorruptBatchError, CorruptLogError
from kaflow.storage.files import FileCache
from kaflow.storage.log import LogConfig, PartitionLog
from kaflow.storage.manager import LogManager

__all__ = [
    "BATCH_HEADER_SIZE",
    "BatchHeader",
    "BatchRecord",
    "CorruptBatchError",
    "CorruptLogError",
    "FileCache",
    "LogConfig",
    "LogManager",
    "PartitionLog",
    "decode_batch",
    "encode_batch",
    "iter_batches",
    "read_batch_header",
    "record_size_estimate",
    "verify_batch",
    "with_base_offset",
]
