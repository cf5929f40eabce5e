"""Group records in the state snapshot; version 2 snapshots still load."""

from __future__ import annotations

import struct

import crc32c
import msgpack

from kaflow.coordinator.model import GroupMember, GroupRecord
from kaflow.replication.state import ReplicatedState, decode_state, encode_state


def test_snapshot_round_trips_group_record() -> None:
    member = GroupMember("m", "host", "app", ("t",), 3000, 60000, 4, frozenset({("t", 0)}))
    state = ReplicatedState(index=9)
    state.group_records["g"] = GroupRecord("g", 7, 4, {"m": member}, {"m": frozenset()}, {"t": 2})

    decoded = decode_state(encode_state(state))

    assert decoded.group_records == state.group_records


def test_snapshot_version_2_loads_without_groups() -> None:
    current = msgpack.unpackb(encode_state(ReplicatedState(index=4))[4:])
    del current["group_records"]
    body = {**current, "v": 2, "groups": [["g", "t", 0, 5, "", 1]]}
    packed = msgpack.packb(body, use_bin_type=True)
    data = struct.pack(">I", crc32c.crc32c(packed)) + packed

    decoded = decode_state(data)

    assert decoded.group_records == {}
    assert decoded.groups["g"][("t", 0)].offset == 5
