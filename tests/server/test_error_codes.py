from __future__ import annotations

import pytest

from kaflow.errors import KaflowError, all_error_classes, error_from_payload


@pytest.mark.parametrize("cls", all_error_classes(), ids=lambda cls: cls.code)
def test_error_codes_round_trip(cls: type[KaflowError]) -> None:
    rebuilt = error_from_payload(cls("m").to_payload())

    assert type(rebuilt) is cls
    assert rebuilt.message == "m"
