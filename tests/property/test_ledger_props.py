"""Stateful property test: the Ledger never over-commits and returns to zero."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from deploy_code.errors import PlacementError
from deploy_code.resources import Ledger
from deploy_code.units import Resources

OWNERS = st.sampled_from([f"r{i}" for i in range(8)])


def resources(
    max_cpu_quarters: int, max_mem: int, max_disk: int, max_gpu: int
) -> st.SearchStrategy[Resources]:
    # CPU in quarter cores and whole MiB/GiB: every sum is exact in binary floating point,
    # so the model below can use == without tolerances.
    return st.builds(
        Resources,
        cpu_cores=st.integers(0, max_cpu_quarters).map(lambda q: q / 4),
        memory_mb=st.integers(0, max_mem).map(float),
        storage_gb=st.integers(0, max_disk).map(float),
        gpu_count=st.integers(0, max_gpu),
    )


REQUESTS = resources(12, 3000, 40, 2)


def fits(total: Resources, cap: Resources) -> bool:
    return all(getattr(total, n) <= getattr(cap, n) for n in Resources.FIELDS)


class LedgerMachine(RuleBasedStateMachine):
    """Random allocate / batch / release sequences against a dict model."""

    def __init__(self) -> None:
        super().__init__()
        self.ledger = Ledger(Resources())
        self.model: dict[str, Resources] = {}
        self.last_version = 0

    @initialize(cap=resources(32, 8000, 100, 4))
    def setup(self, cap: Resources) -> None:
        self.ledger = Ledger(cap)

    def _model_total(self) -> Resources:
        total = Resources()
        for r in self.model.values():
            total = total + r
        return total

    @rule(owner=OWNERS, request=REQUESTS)
    def allocate(self, owner: str, request: Resources) -> None:
        if owner in self.model:
            with pytest.raises(ValueError):
                self.ledger.allocate(owner, request)
            return
        should_fit = fits(self._model_total() + request, self.ledger.capacity)
        assert (self.ledger.check(request) == []) == should_fit
        try:
            self.ledger.allocate(owner, request)
        except PlacementError as err:
            assert not should_fit
            assert repr(owner) in err.message
            return
        assert should_fit
        self.model[owner] = request

    @rule(items=st.lists(st.tuples(OWNERS, REQUESTS), max_size=4, unique_by=lambda t: t[0]))
    def allocate_batch(self, items: list[tuple[str, Resources]]) -> None:
        before = dict(self.model)
        if any(owner in self.model for owner, _ in items):
            with pytest.raises(ValueError):
                self.ledger.allocate_batch(items)
            return
        total = self._model_total()
        for _, r in items:
            total = total + r
        try:
            self.ledger.allocate_batch(items)
        except PlacementError:
            assert not fits(total, self.ledger.capacity)
            assert self.model == before
            return
        assert fits(total, self.ledger.capacity)
        self.model.update(items)

    @rule(owner=OWNERS)
    def release(self, owner: str) -> None:
        freed = self.ledger.release(owner)
        assert freed == self.model.pop(owner, Resources())

    @invariant()
    def never_over_commits_and_matches_model(self) -> None:
        led = self.ledger
        assert fits(led.allocated, led.capacity)
        assert all(getattr(led.free, n) >= 0 for n in Resources.FIELDS)
        assert led.allocated == self._model_total()
        assert led.owners == len(self.model)
        assert led.version >= self.last_version
        self.last_version = led.version

    def teardown(self) -> None:
        for owner in list(self.model):
            self.ledger.release(owner)
        assert self.ledger.allocated == Resources()
        assert self.ledger.owners == 0
        assert self.ledger.free == self.ledger.capacity


LedgerMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestLedger = LedgerMachine.TestCase
