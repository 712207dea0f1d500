"""The replica registry: every index agrees with the entries, and forgetting leaves nothing behind."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from deploy_code.events import ReplicaState
from deploy_code.supervisor import Registry

S = ReplicaState


def test_indexes_follow_placement_and_transitions() -> None:
    reg = Registry()
    reg.add("api", 0, {"http": 30001}, S.PENDING)
    reg.add("api", 1, {"http": 30002}, S.PENDING, node="n2")
    reg.add("db", 0, {"main": 30000}, S.PENDING)
    assert reg.by_port(30002) is reg.get("api.1")
    assert [e.id for e in reg.service("api")] == ["api.0", "api.1"]
    assert reg.on_node("local") == {"api.0", "db.0"} and reg.services_on("n2") == {"api"}
    reg.set_state("api.0", S.READY)
    reg.set_state("db.0", S.FAILED)
    assert reg.in_state(S.READY) == {"api.0"} and reg.count(S.PENDING) == 1
    assert reg.in_state(S.READY, S.FAILED) == {"api.0", "db.0"}
    reg.remove("api.1")
    assert reg.by_port(30002) is None and reg.on_node("n2") == frozenset()
    assert len(reg) == 2


ops = st.lists(
    st.tuples(
        st.sampled_from(["add", "state", "remove"]),
        st.sampled_from(["a", "b", "c"]),
        st.integers(0, 3),
        st.sampled_from(list(ReplicaState)),
        st.sampled_from(["local", "n1"]),
    ),
    max_size=200,
)


@given(ops)
def test_random_operations_keep_every_index_consistent(seq: list[tuple[str, str, int, S, str]]) -> None:
    reg = Registry()
    for op, svc, idx, state, node in seq:
        rid = f"{svc}.{idx}"
        port = 30000 + ord(svc) * 10 + idx
        if op == "add":
            reg.add(svc, idx, {"p": port}, state, node)
        elif op == "state":
            reg.set_state(rid, state)
        else:
            reg.remove(rid)
    ids = set(reg.ids())
    assert sum(reg.count(s) for s in ReplicaState) == len(ids) == len(reg)
    for rid in ids:
        e = reg.get(rid)
        assert e is not None and rid in reg.in_state(e.state) and rid in reg.on_node(e.node)
        assert all(reg.by_port(p) is e for p in e.ports.values())
    for rid in list(ids):
        reg.remove(rid)
    assert len(reg) == 0 and not reg._by_port and not reg._by_node and not reg._by_service
    assert all(not s for s in reg._by_state.values())
