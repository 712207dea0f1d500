"""Stateful property test: PortAllocator never hands a port out twice and honours quarantine."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from deploy_code.errors import ErrorCode, PlacementError, SupervisionError
from deploy_code.ports import PortAllocator

LOW = 9000
OWNERS = st.sampled_from(["api.1", "api.2", "web.1", "db.1"])


class PortAllocatorMachine(RuleBasedStateMachine):
    """Drives a PortAllocator with a fake ``now`` and checks it against a plain model."""

    def __init__(self) -> None:
        super().__init__()
        self.pa = PortAllocator(LOW, LOW)
        self.size = 1
        self.now = 0.0
        self.held: dict[int, str] = {}  # model: port -> owner
        self.released_at: dict[int, float] = {}  # model: last release time of a range port
        self.busy: set[int] = set()  # ports the fake bind probe reports as taken
        self.probing = True  # without a probe, ``allocate`` takes its fast path

    @initialize(size=st.integers(1, 8), quarantine=st.sampled_from([0.0, 0.5, 2.0]), probing=st.booleans())
    def setup(self, size: int, quarantine: float, probing: bool) -> None:
        self.size = size
        self.probing = probing
        # max_probe >= size, so a failed allocate means no eligible port at all
        self.pa = PortAllocator(
            LOW,
            LOW + size - 1,
            quarantine_s=quarantine,
            is_free=self._probe if probing else None,
            max_probe=size,
        )

    def _probe(self, port: int) -> bool:
        return port not in self.busy

    def _in_range(self, port: int) -> bool:
        return LOW <= port < LOW + self.size

    def _eligible(self) -> list[int]:
        q = self.pa.quarantine_s
        return [
            p
            for p in range(LOW, LOW + self.size)
            if p not in self.held
            and (p not in self.busy or not self.probing)
            and (p not in self.released_at or self.released_at[p] + q <= self.now)
        ]

    @rule(dt=st.sampled_from([0.0, 0.1, 0.5, 1.0, 2.5]))
    def advance(self, dt: float) -> None:
        self.now += dt

    @rule(port=st.integers(LOW, LOW + 7))
    def toggle_busy(self, port: int) -> None:
        self.busy ^= {port}

    @rule(owner=OWNERS)
    def allocate(self, owner: str) -> None:
        eligible = self._eligible()
        try:
            port = self.pa.allocate(owner, self.now)
        except PlacementError as err:
            assert err.code is ErrorCode.E004
            assert eligible == [], f"allocate failed although {eligible} were eligible"
            return
        assert port not in self.held, f"port {port} handed out twice"
        assert self._in_range(port)
        assert port in eligible, f"port {port} broke quarantine or the probe"
        self.held[port] = owner

    @rule(port=st.sampled_from([80, 8080, *range(LOW, LOW + 8)]), owner=OWNERS)
    def reserve(self, port: int, owner: str) -> None:
        holder = self.held.get(port)
        if holder is not None and holder != owner:
            with pytest.raises(SupervisionError) as info:
                self.pa.reserve(port, owner)
            assert info.value.code is ErrorCode.S004
            assert repr(holder) in info.value.message and repr(owner) in info.value.message
            return
        self.pa.reserve(port, owner)
        self.held[port] = owner

    @precondition(lambda self: bool(self.held))
    @rule(data=st.data())
    def release_held(self, data: st.DataObject) -> None:
        port = data.draw(st.sampled_from(sorted(self.held)))
        self._release(port)

    @rule(port=st.integers(LOW - 1, LOW + 8))
    def release_any(self, port: int) -> None:
        self._release(port)

    def _release(self, port: int) -> None:
        self.pa.release(port, self.now)
        if self.held.pop(port, None) is not None and self._in_range(port):
            self.released_at[port] = self.now

    @rule(owner=OWNERS)
    def release_owner(self, owner: str) -> None:
        expected = sorted(p for p, o in self.held.items() if o == owner)
        assert self.pa.release_owner(owner, self.now) == expected
        for port in expected:
            del self.held[port]
            if self._in_range(port):
                self.released_at[port] = self.now

    @invariant()
    def matches_model(self) -> None:
        assert self.pa.in_use == len(self.held)
        for port in [80, 8080, *range(LOW - 1, LOW + 9)]:
            assert self.pa.owner_of(port) == self.held.get(port)
        in_range_held = sum(1 for p in self.held if self._in_range(p))
        assert self.pa.free_count + self.pa.quarantined + in_range_held == self.size

    def teardown(self) -> None:
        for owner in {*self.held.values()}:
            self.pa.release_owner(owner, self.now)
        assert self.pa.in_use == 0
        assert self.pa.snapshot()["owners"] == {}


PortAllocatorMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestPortAllocator = PortAllocatorMachine.TestCase
