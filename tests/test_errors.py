from __future__ import annotations

import pytest

from kaflow import errors
from kaflow.errors import (
    KaflowError,
    OffsetOutOfRangeError,
    all_error_classes,
    error_class_for_code,
    error_from_payload,
)


@pytest.mark.parametrize("cls", all_error_classes(), ids=lambda cls: cls.code)
def test_error_round_trips_through_payload(cls: type[KaflowError]) -> None:
    original = cls("something failed", value=3, limit=2)

    rebuilt = error_from_payload(original.to_payload())

    assert type(rebuilt) is cls
    assert rebuilt.message == "something failed"
    assert rebuilt.details == {"value": 3, "limit": 2}
    assert rebuilt.retriable is cls.retriable


def test_error_codes_are_unique_snake_case() -> None:
    codes = [cls.code for cls in all_error_classes()]

    assert len(codes) == len(set(codes))
    for code in codes:
        assert code == code.lower()
        assert " " not in code


def test_error_statuses_match_retriable_flag() -> None:
    for cls in all_error_classes():
        assert 400 <= cls.http_status <= 599
        if cls.retriable:
            # 507 Insufficient Storage: the disk frees up without any change to the request.
            assert cls.http_status in (503, 504, 507), cls


def test_error_unknown_code_keeps_code_in_details() -> None:
    error = error_from_payload({"error": {"code": "from_the_future", "message": "m"}})

    assert type(error) is KaflowError
    assert error.details["code"] == "from_the_future"


@pytest.mark.parametrize("body", [None, "text", {"error": "x"}, {"error": {"code": 5}}])
def test_error_from_malformed_body(body: object) -> None:
    error = error_from_payload(body)

    assert type(error) is KaflowError
    assert "unexpected error body" in error.message


def test_error_class_for_code_finds_subclass() -> None:
    assert error_class_for_code("offset_out_of_range") is OffsetOutOfRangeError


def test_errors_all_lists_every_public_class() -> None:
    public = {
        name
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, KaflowError)
    }

    assert public <= set(errors.__all__)
