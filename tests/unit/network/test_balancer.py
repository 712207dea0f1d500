"""Balancer: round robin order, least-connections choice against a naive model, membership and drain state."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deploy_code.network import Backend, BackendState, Balance, Balancer


def ids(backends: list[Backend | None]) -> list[str | None]:
    return [None if b is None else b.id for b in backends]


def test_round_robin_cycles_in_join_order() -> None:
    bal = Balancer("round_robin")
    for i in range(3):
        bal.add(f"b{i}", "127.0.0.1", 1000 + i)
    assert ids([bal.pick() for _ in range(7)]) == ["b0", "b1", "b2", "b0", "b1", "b2", "b0"]


def test_round_robin_removal_keeps_the_rotation_going() -> None:
    bal = Balancer(Balance.ROUND_ROBIN)
    for i in range(4):
        bal.add(f"b{i}", "127.0.0.1", 1000 + i)
    assert ids([bal.pick(), bal.pick()]) == ["b0", "b1"]
    bal.remove("b0")  # before the cursor: the next pick is still b2
    assert ids([bal.pick(), bal.pick(), bal.pick()]) == ["b2", "b3", "b1"]


def test_empty_pool_and_exclusions_give_none() -> None:
    bal = Balancer()
    assert bal.pick() is None
    a = bal.add("a", "127.0.0.1", 1)
    b = bal.add("b", "127.0.0.1", 2)
    assert bal.pick(exclude={a}) is b
    assert bal.pick(exclude={a, b}) is None


def test_least_conn_prefers_the_idlest_and_rotates_ties() -> None:
    bal = Balancer("least_conn")
    a, b, c = (bal.add(n, "127.0.0.1", p) for n, p in (("a", 1), ("b", 2), ("c", 3)))
    picks = []
    for _ in range(6):
        chosen = bal.pick()
        assert chosen is not None
        bal.acquire(chosen)
        picks.append(chosen.id)
    assert sorted(picks) == ["a", "a", "b", "b", "c", "c"]
    bal.release(a)
    bal.release(a)
    assert bal.pick() is a
    bal.acquire(a)
    assert bal.pick() is a  # still the least loaded (1 against 2, 2)
    assert bal.pick(exclude={a}) in (b, c)


def test_removed_backend_keeps_counting_and_never_returns() -> None:
    bal = Balancer("least_conn")
    a = bal.add("a", "127.0.0.1", 1)
    b = bal.add("b", "127.0.0.1", 2)
    bal.acquire(a)
    assert bal.remove("a", BackendState.DRAINING) is a
    assert a.state is BackendState.DRAINING
    assert bal.pick() is b
    bal.release(a)  # its last connection ends after it left the pool
    assert a.active == 0
    assert [x.id for x in bal] == ["b"]
    assert bal.remove("a") is None


def test_readding_an_id_gives_a_new_incarnation() -> None:
    bal = Balancer("least_conn")
    old = bal.add("a", "127.0.0.1", 1)
    bal.acquire(old)
    bal.remove("a", BackendState.DRAINING)
    new = bal.add("a", "127.0.0.1", 2)
    assert new is not old and new.active == 0 and old.active == 1
    bal.release(old)
    assert bal.pick() is new


def test_release_without_acquire_is_an_error() -> None:
    bal = Balancer()
    a = bal.add("a", "127.0.0.1", 1)
    with pytest.raises(ValueError):
        bal.release(a)


def test_unknown_policy_is_rejected() -> None:
    with pytest.raises(ValueError):
        Balancer("random")


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(["add", "remove", "open", "close"]), st.integers(0, 5)), max_size=80)
)
def test_least_conn_matches_a_naive_minimum(ops: list[tuple[str, int]]) -> None:
    """Whatever happens, pick() returns a ready backend with the smallest active count."""
    bal = Balancer("least_conn")
    open_conns: list[Backend] = []
    rng = random.Random(0)
    for op, n in ops:
        if op == "add":
            bal.add(f"b{n}", "127.0.0.1", n)
        elif op == "remove":
            bal.remove(f"b{n}", rng.choice([BackendState.REMOVED, BackendState.DRAINING]))
        elif op == "open":
            chosen = bal.pick()
            if chosen is not None:
                bal.acquire(chosen)
                open_conns.append(chosen)
        elif open_conns:
            bal.release(open_conns.pop(n % len(open_conns)))
        ready = list(bal)
        chosen = bal.pick()
        if not ready:
            assert chosen is None
        else:
            assert chosen is not None and chosen.state is BackendState.READY
            assert chosen.active == min(b.active for b in ready)


@pytest.mark.parametrize("policy", ["round_robin", "least_conn"])
def test_suspect_is_passed_over_until_it_expires_or_is_alone(policy: str) -> None:
    bal = Balancer(policy)
    a = bal.add("a", "127.0.0.1", 1)
    b = bal.add("b", "127.0.0.1", 2)
    bal.suspect(a, until=10.0)
    assert {bal.pick(now=1.0) for _ in range(4)} == {b}
    assert bal.pick(exclude={b}, now=1.0) is a  # only suspects left: try one anyway
    assert a in {bal.pick(now=10.0) for _ in range(4)}  # expired
    bal.suspect(b, until=20.0)
    bal.clear_suspect(b)
    assert bal.pick(exclude={a}, now=11.0) is b
    bal.suspect(a, until=30.0)
    bal.remove("a")
    assert bal.pick(now=12.0) is b
