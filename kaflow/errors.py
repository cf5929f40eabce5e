"""Kaflow's error tree.

Every error a node returns is a subclass of :class:`KaflowError`, and the
client raises the same class when it receives one (errors the client detects
itself, such as use after close, are in :mod:`kaflow.client.errors`). Each
class has a stable snake_case ``code`` (the wire name), the HTTP status of the
response, and a ``retriable`` flag that indicates whether sending the same request
again may succeed without changing it.

::

    KaflowError
    ├── InvalidRequestError            400 invalid_request
    │   ├── MalformedBodyError         400 malformed_body
    │   ├── InvalidTopicNameError      400 invalid_topic_name
    │   ├── InvalidGroupNameError      400 invalid_group_name
    │   ├── InvalidPartitionsError     400 invalid_partitions
    │   ├── InvalidConfigError         400 invalid_config
    │   ├── InvalidOffsetError         400 invalid_offset
    │   ├── InvalidRecordError         400 invalid_record
    │   └── EmptyRecordsError          400 empty_records
    ├── UnsupportedMediaTypeError      415 unsupported_media_type
    ├── RequestTooLargeError           413 request_too_large
    ├── RecordTooLargeError            413 record_too_large
    ├── NotFoundError                  404 not_found
    │   ├── UnknownTopicError          404 unknown_topic
    │   ├── UnknownPartitionError      404 unknown_partition
    │   ├── UnknownGroupError          404 unknown_group
    │   ├── UnknownProducerIdError     404 unknown_producer_id
    │   ├── UnknownNodeError           404 unknown_node
    │   └── UnknownGroupMemberError    404 unknown_member
    ├── MethodNotAllowedError          405 method_not_allowed
    ├── TopicAlreadyExistsError        409 topic_already_exists
    ├── TopicCollisionError            409 topic_collision
    ├── MemberAlreadyExistsError       409 member_already_exists
    ├── StaleGenerationError           409 stale_generation
    ├── GroupNotEmptyError             409 group_not_empty
    ├── InvalidProducerEpochError      409 invalid_producer_epoch
    ├── OutOfOrderSequenceError        409 out_of_order_sequence
    ├── OffsetOutOfRangeError          416 offset_out_of_range
    ├── RetriableError                 (retriable = True)
    │   ├── NotReadyError              503 not_ready
    │   ├── LeaderNotAvailableError    503 leader_not_available
    │   ├── NotLeaderError             503 not_leader
    │   ├── ReplicaNotAvailableError   503 replica_not_available
    │   ├── RequestTimedOutError       504 request_timed_out
    │   ├── UnknownOutcomeError        504 unknown_outcome
    │   └── DiskFullError              507 disk_full
    ├── StorageError                   500 storage_error
    │   ├── CorruptBatchError          500 corrupt_batch
    │   └── CorruptLogError            500 corrupt_log
    └── InternalError                  500 internal_error

The server renders an error as
``{"error": {"code", "message", "retriable", "details"}}``;
:func:`error_from_payload` turns that body back into the same class.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "CorruptBatchError",
    "CorruptLogError",
    "DiskFullError",
    "EmptyRecordsError",
    "FencedInstanceIdError",
    "GroupNotEmptyError",
    "InternalError",
    "InvalidConfigError",
    "InvalidGroupNameError",
    "InvalidOffsetError",
    "InvalidPartitionsError",
    "InvalidProducerEpochError",
    "InvalidRecordError",
    "InvalidRequestError",
    "InvalidTopicNameError",
    "KaflowError",
    "LeaderNotAvailableError",
    "MalformedBodyError",
    "MemberAlreadyExistsError",
    "MethodNotAllowedError",
    "NotFoundError",
    "NotLeaderError",
    "NotReadyError",
    "OffsetOutOfRangeError",
    "OutOfOrderSequenceError",
    "RecordTooLargeError",
    "ReplicaNotAvailableError",
    "RequestTimedOutError",
    "RequestTooLargeError",
    "RetriableError",
    "StaleGenerationError",
    "StorageError",
    "TopicAlreadyExistsError",
    "TopicCollisionError",
    "UnknownGroupError",
    "UnknownGroupMemberError",
    "UnknownNodeError",
    "UnknownOutcomeError",
    "UnknownPartitionError",
    "UnknownProducerIdError",
    "UnknownTopicError",
    "UnsupportedMediaTypeError",
    "all_error_classes",
    "error_class_for_code",
    "error_from_payload",
]


class KaflowError(Exception):
    """Base class of every error Kaflow raises or returns on the wire.

    ``details`` contains structured fields (the offending value, the limit) that
    a program can act on without parsing ``message``.
    """

    code: ClassVar[str] = "kaflow_error"
    http_status: ClassVar[int] = 500
    retriable: ClassVar[bool] = False

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details

    def to_payload(self) -> dict[str, Any]:
        """Return the JSON-ready body the HTTP API sends for this error."""
        return {
            "error": {
                "code": self.code,
                "message": self.message,
                "retriable": self.retriable,
                "details": self.details,
            }
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, code={self.code!r})"


class InvalidRequestError(KaflowError):
    """The request is well-formed but a parameter is invalid."""

    code = "invalid_request"
    http_status = 400


class MalformedBodyError(InvalidRequestError):
    """The body is not valid JSON or msgpack, or has the wrong shape."""

    code = "malformed_body"


class InvalidTopicNameError(InvalidRequestError):
    code = "invalid_topic_name"


class InvalidGroupNameError(InvalidRequestError):
    """A consumer group name is empty, too long or contains a character outside the allowed set."""

    code = "invalid_group_name"


class InvalidPartitionsError(InvalidRequestError):
    code = "invalid_partitions"


class InvalidConfigError(InvalidRequestError):
    code = "invalid_config"


class InvalidOffsetError(InvalidRequestError):
    code = "invalid_offset"


class InvalidRecordError(InvalidRequestError):
    code = "invalid_record"


class EmptyRecordsError(InvalidRequestError):
    code = "empty_records"


class UnsupportedMediaTypeError(KaflowError):
    code = "unsupported_media_type"
    http_status = 415


class RequestTooLargeError(KaflowError):
    code = "request_too_large"
    http_status = 413


class RecordTooLargeError(KaflowError):
    code = "record_too_large"
    http_status = 413


class NotFoundError(KaflowError):
    code = "not_found"
    http_status = 404


class UnknownTopicError(NotFoundError):
    code = "unknown_topic"


class UnknownPartitionError(NotFoundError):
    code = "unknown_partition"


class UnknownGroupError(NotFoundError):
    code = "unknown_group"


class UnknownProducerIdError(NotFoundError):
    """The producer id was never allocated, or its state expired after a long idle time.

    The producer must request a new id with ``POST /v1/producers``.
    """

    code = "unknown_producer_id"


class MethodNotAllowedError(KaflowError):
    code = "method_not_allowed"
    http_status = 405


class TopicAlreadyExistsError(KaflowError):
    code = "topic_already_exists"
    http_status = 409


class TopicCollisionError(KaflowError):
    """The name differs from an existing topic only by '.' versus '_'.

    Kafka rejects such names because metric names replace '.' with '_', so
    both topics would report under one name.
    """

    code = "topic_collision"
    http_status = 409


class InvalidProducerEpochError(KaflowError):
    """The producer epoch is not the current one for its producer id.

    A lower epoch means a newer instance of the producer re-initialised the
    id and fenced this one, so sending again cannot succeed.
    """

    code = "invalid_producer_epoch"
    http_status = 409


class OutOfOrderSequenceError(KaflowError):
    """The batch's base sequence is neither the next expected one nor a recent duplicate.

    Records between the last stored batch and this one are missing, so
    storing it would break the producer's order. Sending the same request
    again returns the same error.
    """

    code = "out_of_order_sequence"
    http_status = 409


class UnknownNodeError(NotFoundError):
    """No cluster member (node) has that node id or Raft address."""

    code = "unknown_node"


class UnknownGroupMemberError(NotFoundError):
    """The consumer group has no member with that member id.

    The member was fenced (session or rebalance timeout), replaced by a static
    member with the same group instance id, or left. It must drop all its
    partitions and join again with member epoch 0.
    """

    code = "unknown_member"


class StaleGenerationError(KaflowError):
    """The member epoch (generation) in the request is not the member's current one.

    A heartbeat with a stale epoch must join again. A commit with a stale epoch,
    or for a partition the member does not own, is not stored.
    """

    code = "stale_generation"
    http_status = 409


class FencedInstanceIdError(KaflowError):
    """Another member joined with this member's group_instance_id and replaced it.

    Two running consumers share one static identity. The replaced one must
    stop rather than join again, or the two would replace each other in turn.
    """

    code = "fenced_instance_id"
    http_status = 409


class GroupNotEmptyError(KaflowError):
    """The operation needs a consumer group without members, and this one has members."""

    code = "group_not_empty"
    http_status = 409


class MemberAlreadyExistsError(KaflowError):
    """The Raft address to add already belongs to a cluster member."""

    code = "member_already_exists"
    http_status = 409


class OffsetOutOfRangeError(KaflowError):
    """The offset is below the log start offset or above the high watermark."""

    code = "offset_out_of_range"
    http_status = 416


class RetriableError(KaflowError):
    """The same request may succeed if sent again after a short wait."""

    code = "retriable_error"
    http_status = 503
    retriable = True


class NotReadyError(RetriableError):
    """The node is still starting or replaying its log."""

    code = "not_ready"


class LeaderNotAvailableError(RetriableError):
    """No Raft leader is known, for example during an election."""

    code = "leader_not_available"


class NotLeaderError(RetriableError):
    """The command reached a node that is no longer the Raft leader."""

    code = "not_leader"


class ReplicaNotAvailableError(RetriableError):
    """This node has not yet copied the requested records from another member.

    A node that missed records while it was down copies them from a peer
    after it rejoins. Until then it rejects reads of that range with this
    error instead of empty or wrong data; another member can serve them now.
    """

    code = "replica_not_available"


class RequestTimedOutError(RetriableError):
    code = "request_timed_out"
    http_status = 504


class UnknownOutcomeError(RetriableError):
    """The write may or may not have been committed.

    Raft can report a leader change for a command that was committed anyway,
    so a retry is only safe for idempotent writes.
    """

    code = "unknown_outcome"
    http_status = 504


class DiskFullError(RetriableError):
    """The node's data directory has less free space than the node keeps in reserve.

    The node rejects new writes instead of failing in the middle of one, and
    accepts them again once space is freed. ``details`` has ``path``,
    ``free_bytes`` and ``reserve_bytes``.
    """

    code = "disk_full"
    http_status = 507


class StorageError(KaflowError):
    """The node failed to read or write its data directory."""

    code = "storage_error"
    http_status = 500


class CorruptBatchError(StorageError):
    """Bytes that should hold a record batch fail its structure or CRC-32C check."""

    code = "corrupt_batch"


class CorruptLogError(StorageError):
    """A partition directory is inconsistent in a way that recovery must not paper over.

    Examples are a missing segment in the middle of the log, or a closed
    segment that is shorter than its offset index indicates. Serving such a log
    would hide lost records, so opening it fails and names the file.
    """

    code = "corrupt_log"


class InternalError(KaflowError):
    code = "internal_error"
    http_status = 500


def all_error_classes() -> list[type[KaflowError]]:
    """Return every concrete error class, the base class included."""
    found: list[type[KaflowError]] = []
    pending: list[type[KaflowError]] = [KaflowError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


def _build_registry() -> dict[str, type[KaflowError]]:
    registry: dict[str, type[KaflowError]] = {}
    for cls in all_error_classes():
        if cls.code in registry:
            raise RuntimeError(f"error code {cls.code!r} is used by two classes")
        registry[cls.code] = cls
    return registry


_REGISTRY = _build_registry()


def error_class_for_code(code: str) -> type[KaflowError]:
    """Return the error class for a wire ``code``; unknown codes map to KaflowError."""
    return _REGISTRY.get(code, KaflowError)


def error_from_payload(payload: Any) -> KaflowError:
    """Rebuild an error from the body the server sent.

    Accepts the whole body (``{"error": {...}}``) or its inner object; any
    other shape becomes a plain KaflowError that quotes the body.
    """
    inner = payload.get("error", payload) if isinstance(payload, dict) else None
    if not isinstance(inner, dict) or not isinstance(inner.get("code"), str):
        return KaflowError(f"unexpected error body from server: {payload!r}")

    cls = error_class_for_code(inner["code"])
    details = inner.get("details")
    error = cls(str(inner.get("message", "")), **(details if isinstance(details, dict) else {}))
    if cls is KaflowError and inner["code"] != KaflowError.code:
        error.details.setdefault("code", inner["code"])
    return error
