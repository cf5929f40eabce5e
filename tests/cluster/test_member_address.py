from __future__ import annotations

import pytest

from kaflow.cluster.membership import find_alias, parse_raft_address
from kaflow.errors import InvalidRequestError


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("127.0.0.1:8093", "127.0.0.1:8093"),
        ("127.0.0.1:08093", "127.0.0.1:8093"),
        ("LocalHost:8093", "localhost:8093"),
    ],
    ids=["plain", "leading-zero-port", "upper-case-host"],
)
def test_parse_raft_address_canonical(text: str, canonical: str) -> None:
    assert parse_raft_address(text) == canonical


@pytest.mark.parametrize("text", ["", "8093", "host:", ":8093", "host:0", "host:65536", "h:x"])
def test_parse_raft_address_rejects(text: str) -> None:
    with pytest.raises(InvalidRequestError, match="invalid Raft address"):
        parse_raft_address(text)


async def test_find_alias_detects_same_endpoint() -> None:
    members = ["127.0.0.1:8093", "127.0.0.1:8095"]

    assert await find_alias("localhost:8095", members) == "127.0.0.1:8095"
    assert await find_alias("127.0.0.1:8097", members) is None
    assert await find_alias("127.0.0.2:8093", members) is None
