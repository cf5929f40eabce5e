from __future__ import annotations

import pytest

from kaflow.errors import InvalidGroupNameError
from kaflow.groups import MAX_GROUP_NAME_LENGTH, validate_group_name


@pytest.mark.parametrize("name", ["g", "billing.v2_eu-1", "G" * MAX_GROUP_NAME_LENGTH])
def test_group_name_valid(name: str) -> None:
    assert validate_group_name(name) == name


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("", "is empty"),
        ("g" * (MAX_GROUP_NAME_LENGTH + 1), "is 256 characters long, more than the maximum of 255"),
        (".", "is reserved"),
        ("..", "is reserved"),
        ("a/b", "contains '/'"),
        ("a b%", "contains ' %'"),
        ("\ud800", "contains"),
    ],
    ids=["empty", "too-long", "dot", "dot-dot", "slash", "space-percent", "surrogate"],
)
def test_group_name_invalid(name: str, match: str) -> None:
    with pytest.raises(InvalidGroupNameError, match=match) as raised:
        validate_group_name(name)

    assert raised.value.details["group"] == name


def test_group_name_not_string() -> None:
    with pytest.raises(InvalidGroupNameError, match="must be a string, got int"):
        validate_group_name(7)
