"""Typed access to the fields of a decoded JSON or msgpack object.

Decoded bodies are plain dicts, lists, strings and numbers. :class:`Fields`
reads one object's fields with their expected types and ranges, and raises
a 4xx error that names the field path (``records[2].partition``), the value
and the expected type or range. Python's ``bool`` is a subclass of ``int``,
so every integer check rejects ``true`` and ``false`` explicitly.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from kaflow.errors import InvalidRequestError, MalformedBodyError

__all__ = [
    "INT32_MAX",
    "INT64_MAX",
    "Fields",
    "describe_type",
    "describe_value",
    "expect_object",
    "shorten",
]

INT32_MAX: Final = 2**31 - 1
INT64_MAX: Final = 2**63 - 1

_TYPE_NAMES: Final[dict[type, str]] = {
    dict: "object",
    list: "array",
    str: "string",
    bool: "boolean",
    int: "integer",
    float: "number",
    bytes: "binary",
    type(None): "null",
}


def describe_type(value: Any) -> str:
    """Return the JSON (or msgpack) name of ``value``'s type, for messages."""
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def expect_object(
    value: Any, path: str, error: type[InvalidRequestError] = MalformedBodyError
) -> dict[str, Any]:
    """Return ``value`` if it is an object (dict), else raise ``error`` naming ``path``."""
    if not isinstance(value, dict):
        raise error(
            f"{path} must be an object, got {describe_type(value)}",
            field=path,
            expected="object",
            got=describe_type(value),
        )
    return value


def shorten(text: str, limit: int = 64) -> str:
    """Return ``text`` cut to ``limit`` characters with "..." appended, for messages."""
    return text if len(text) <= limit else text[:limit] + "..."


def describe_value(value: Any) -> str:
    """Return ``value``'s type and a short rendering of it, for messages."""
    kind = describe_type(value)
    if value is None or isinstance(value, dict | list):
        return kind
    if isinstance(value, bool):
        return f"{kind} {str(value).lower()}"
    if isinstance(value, bytes):
        excerpt = value[:32].hex() + ("..." if len(value) > 32 else "")
        return f"{kind} 0x{excerpt}"
    if isinstance(value, str):
        return f"{kind} {shorten(value)!r}"
    return f"{kind} {shorten(repr(value))}"


class Fields:
    """The fields of one decoded object, read one by one with their types checked.

    ``path`` names the object in messages (``body``, ``records[3]``), and
    ``error`` is the class raised for a wrong type, a missing or an unknown field.
    """

    def __init__(
        self, obj: dict[str, Any], path: str, error: type[InvalidRequestError] = MalformedBodyError
    ) -> None:
        self.obj = obj
        self.path = path
        self.error = error

    def field_path(self, name: str) -> str:
        return name if self.path == "body" else f"{self.path}.{name}"

    def reject_unknown(self, allowed: Iterable[str]) -> None:
        """Raise if the object has a field outside ``allowed``, so typos do not pass silently."""
        allowed_set = set(allowed)
        for name in self.obj:
            if name not in allowed_set:
                valid = ", ".join(sorted(allowed_set))
                raise self.error(
                    f"unknown field {shorten(name)!r} in {self.path}; valid fields: {valid}",
                    field=self.field_path(shorten(name)),
                    valid=sorted(allowed_set),
                )

    def has(self, name: str) -> bool:
        return name in self.obj

    def wrong_type(self, name: str, expected: str) -> InvalidRequestError:
        value = self.obj.get(name)
        return self.error(
            f"{self.field_path(name)} must be {expected}, got {describe_value(value)}",
            field=self.field_path(name),
            expected=expected,
            got=describe_type(value),
        )

    def missing(self, name: str, expected: str) -> InvalidRequestError:
        return self.error(
            f"{self.field_path(name)} is missing; it must be {expected}",
            field=self.field_path(name),
            expected=expected,
        )

    def required_str(self, name: str) -> str:
        if name not in self.obj:
            raise self.missing(name, "a string")
        value = self.obj[name]
        if not isinstance(value, str):
            raise self.wrong_type(name, "a string")
        return value

    def optional_str(self, name: str, default: str) -> str:
        if self.obj.get(name) is None:
            return default
        return self.required_str(name)

    def optional_int(
        self,
        name: str,
        default: int | None,
        minimum: int,
        maximum: int,
        range_error: type[InvalidRequestError] | None = None,
    ) -> int | None:
        """Return the integer field ``name``, or ``default`` when it is absent or null."""
        if self.obj.get(name) is None:
            return default
        return self.required_int(name, minimum, maximum, range_error)

    def required_int(
        self,
        name: str,
        minimum: int,
        maximum: int,
        range_error: type[InvalidRequestError] | None = None,
    ) -> int:
        """Return the integer field ``name`` within minimum..maximum.

        A value of another type raises this object's error class; an integer
        out of range raises ``range_error`` when given.
        """
        expected = f"an integer in {minimum}..{maximum}"
        if name not in self.obj:
            raise self.missing(name, expected)
        value = self.obj[name]
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.wrong_type(name, expected)
        if not minimum <= value <= maximum:
            raise (range_error or self.error)(
                f"{self.field_path(name)} is {value}, outside {minimum}..{maximum}",
                field=self.field_path(name),
                value=value,
                min=minimum,
                max=maximum,
            )
        return value

    def optional_list(self, name: str) -> list[Any]:
        """Return the array field ``name``; absent or null is an empty list."""
        value = self.obj.get(name)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.wrong_type(name, "an array")
        return value

    def required_list(self, name: str) -> list[Any]:
        if name not in self.obj:
            raise self.missing(name, "an array")
        if not isinstance(self.obj[name], list):
            raise self.wrong_type(name, "an array")
        return self.optional_list(name)

    def optional_object(self, name: str) -> dict[str, Any]:
        """Return the object field ``name``; absent or null is an empty object."""
        value = self.obj.get(name)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.wrong_type(name, "an object")
        return value
