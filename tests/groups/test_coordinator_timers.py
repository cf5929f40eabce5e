"""The coordinator's local timers, driven by a virtual clock instead of waiting."""

from __future__ import annotations

from kaflow.config import NodeConfig
from kaflow.coordinator.model import GroupMember, GroupRecord
from kaflow.coordinator.service import GroupCoordinator
from kaflow.replication.replica import Replica


class VirtualClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def member(member_id: str, revoking: frozenset[tuple[str, int]] = frozenset()) -> GroupMember:
    return GroupMember(
        member_id, None, "", ("t",), 3000, 10_000, 1, frozenset({("t", 0)}) | revoking, revoking
    )


def coordinator(clock: VirtualClock) -> GroupCoordinator:
    config = NodeConfig()
    return GroupCoordinator(config, Replica(config), clock)


def test_timers_session_timeout_expires_silent_member() -> None:
    clock = VirtualClock()
    service = coordinator(clock)
    record = GroupRecord("g", 1, 1, {"a": member("a")})

    assert service._expired_members("g", record, clock.now) == {}
    clock.now += 2.9
    assert service._expired_members("g", record, clock.now) == {}
    clock.now += 0.2
    assert service._expired_members("g", record, clock.now) == {"a": "session_timeout"}


def test_timers_revocation_deadline_expires_holder() -> None:
    clock = VirtualClock()
    service = coordinator(clock)
    record = GroupRecord("g", 1, 2, {"a": member("a", frozenset({("t", 1)}))})

    for _ in range(7):
        service._heartbeats[("g", "a")] = clock.now
        assert service._expired_members("g", record, clock.now) == {}
        clock.now += 1.5
    service._heartbeats[("g", "a")] = clock.now
    assert service._expired_members("g", record, clock.now) == {"a": "rebalance_timeout"}


def test_timers_released_revocation_clears_deadline() -> None:
    clock = VirtualClock()
    service = coordinator(clock)
    holding = GroupRecord("g", 1, 2, {"a": member("a", frozenset({("t", 1)}))})
    released = GroupRecord("g", 2, 2, {"a": member("a")})

    service._expired_members("g", holding, clock.now)
    assert ("g", "a") in service._deadlines
    service._expired_members("g", released, clock.now)
    assert ("g", "a") not in service._deadlines


def test_heartbeat_interval_bounded_by_session() -> None:
    service = coordinator(VirtualClock())

    assert service.heartbeat_interval_ms(45_000) == 3000
    assert service.heartbeat_interval_ms(3000) == 1000
    assert service.heartbeat_interval_ms(1) == 1
