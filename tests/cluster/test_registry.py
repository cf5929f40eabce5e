from __future__ import annotations

import pytest

from kaflow.cluster.registry import (
    MemberInfo,
    apply_registry_command,
    decode_members,
    encode_members,
    register,
    unregister,
)
from kaflow.replication.commands import (
    RegisterMember,
    UnregisterMember,
    decode_command,
    encode_command,
)
from kaflow.replication.state import ReplicatedState, decode_state, encode_state

A = MemberInfo("127.0.0.1:9001", "1", "http://127.0.0.1:9000")
B = MemberInfo("127.0.0.1:9003", "2", "http://127.0.0.1:9002")


def test_register_adds_and_reports_change() -> None:
    members: dict[str, MemberInfo] = {}

    assert register(members, A) is True
    assert register(members, A) is False
    assert members == {A.raft_address: A}


def test_register_new_url_replaces_entry() -> None:
    members = {A.raft_address: A}
    moved = MemberInfo(A.raft_address, "1", "http://10.0.0.1:9000")

    assert register(members, moved) is True
    assert members == {A.raft_address: moved}


def test_register_node_id_at_new_address_drops_old() -> None:
    members = {A.raft_address: A, B.raft_address: B}
    readdressed = MemberInfo("127.0.0.1:9005", "1", A.http_url)

    register(members, readdressed)

    assert members == {B.raft_address: B, readdressed.raft_address: readdressed}


def test_unregister_removes_entry() -> None:
    members = {A.raft_address: A}

    assert unregister(members, A.raft_address) is True
    assert unregister(members, A.raft_address) is False
    assert members == {}


def test_registry_commands_round_trip() -> None:
    register_command = RegisterMember("2", B.raft_address, B.http_url)
    unregister_command = UnregisterMember(B.raft_address)

    assert decode_command(encode_command(register_command)) == register_command
    assert decode_command(encode_command(unregister_command)) == unregister_command


def test_apply_registry_commands() -> None:
    members: dict[str, MemberInfo] = {}

    apply_registry_command(members, RegisterMember("2", B.raft_address, B.http_url), 5)
    assert members == {B.raft_address: B}

    apply_registry_command(members, UnregisterMember(B.raft_address), 6)
    assert members == {}


def test_members_encode_decode_round_trip() -> None:
    members = {B.raft_address: B, A.raft_address: A}

    encoded = encode_members(members)

    assert [row[0] for row in encoded["members"]] == [A.raft_address, B.raft_address]
    assert decode_members(encoded) == members


def test_members_absent_key_is_empty() -> None:
    assert decode_members({}) == {}


@pytest.mark.parametrize(
    "rows", [[["a", "b"]], [["a", "b", 3]], "not-a-list"], ids=["short", "int", "type"]
)
def test_members_malformed_rejected(rows: object) -> None:
    with pytest.raises(ValueError, match="member"):
        decode_members({"members": rows})


def test_state_snapshot_keeps_members() -> None:
    state = ReplicatedState(index=7)
    state.members = {A.raft_address: A, B.raft_address: B}

    restored = decode_state(encode_state(state))

    assert restored.members == state.members
    assert restored.index == 7
