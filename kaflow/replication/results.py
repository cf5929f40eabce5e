"""Results that applying a command returns to the node that proposed it.

Results never leave the node, because PySyncObj hands the replicated
method's return value only to the local callback. A rejected command is a
value, not an exception: PySyncObj 0.3.17 retries an entry whose replicated
method raised on every tick, forever.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kaflow.broker import ProducerIdAndEpoch
from kaflow.errors import KaflowError, error_class_for_code

__all__ = ["AppendedBatch", "CommandResult", "Rejection"]


@dataclass(frozen=True, slots=True)
class Rejection:
    """A command, or one item of an append, that apply refused; the state is unchanged."""

    code: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, error: KaflowError) -> Rejection:
        return cls(error.code, error.message, dict(error.details))

    def to_error(self) -> KaflowError:
        """Return the KaflowError this rejection stands for."""
        return error_class_for_code(self.code)(self.message, **self.details)


@dataclass(frozen=True, slots=True)
class AppendedBatch:
    """Offsets the state machine assigned to one appended batch.

    ``original_timestamp`` is set when the batch was an idempotent retry of a
    stored batch: nothing was appended, the offsets are the stored batch's,
    and the timestamp is the time the node accepted the original request,
    which is the timestamp of its records sent without one.
    """

    base_offset: int
    last_offset: int
    original_timestamp: int | None = None

    @property
    def duplicate(self) -> bool:
        return self.original_timestamp is not None


@dataclass(frozen=True, slots=True)
class CommandResult:
    """The outcome of one applied command.

    ``rejection`` is set when the whole command was refused. For an append,
    ``appended`` has one entry per item, in command order: the assigned
    offsets, or the rejection of that item alone. ``producer`` is the
    producer id and epoch an init_producer command allocated.
    """

    rejection: Rejection | None = None
    appended: tuple[AppendedBatch | Rejection, ...] = ()
    producer: ProducerIdAndEpoch | None = None

    @property
    def ok(self) -> bool:
        return self.rejection is None

    def raise_for_rejection(self) -> None:
        """Raise the rejection's KaflowError, if the command was rejected."""
        if self.rejection is not None:
            raise self.rejection.to_error()
