"""Property tests: deploy_code.graph against networkx on random DAGs (and DAGs plus a back edge)."""

from __future__ import annotations

import itertools

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deploy_code.graph import CycleError, DependencyGraph, UnknownDependencyError, build

Spec = dict[str, dict[str, str]]

SETTINGS = settings(max_examples=150, deadline=None)


@st.composite
def dag_specs(draw: st.DrawFn, max_nodes: int = 25) -> Spec:
    """A random DAG: node ``i`` may depend only on nodes ``< i``; declared in a random order."""
    n = draw(st.integers(0, max_nodes))
    names = [f"s{i}" for i in range(n)]
    deps: list[list[int]] = []
    for i in range(n):
        picked = draw(st.lists(st.integers(0, i - 1), max_size=4, unique=True)) if i else []
        deps.append(picked)
    order = draw(st.permutations(range(n)))
    cond = st.sampled_from(["service_started", "service_healthy", "service_completed_successfully"])
    return {names[i]: {names[j]: draw(cond) for j in deps[i]} for i in order}


def to_nx(spec: Spec) -> nx.DiGraph:
    """Edges point from a dependency to its dependant (start order)."""
    g: nx.DiGraph = nx.DiGraph()
    g.add_nodes_from(spec)
    for svc, deps in spec.items():
        for dep in deps:
            g.add_edge(dep, svc)
    return g


@SETTINGS
@given(dag_specs())
def test_waves_equal_networkx_generations(spec: Spec) -> None:
    g = build(spec)
    expected = [set(gen) for gen in nx.topological_generations(to_nx(spec))]
    assert [set(w) for w in g.waves()] == expected


@SETTINGS
@given(dag_specs())
def test_every_edge_goes_from_an_earlier_wave_and_waves_keep_input_order(spec: Spec) -> None:
    g = build(spec)
    position = {name: i for i, name in enumerate(spec)}
    for svc, deps in spec.items():
        for dep in deps:
            assert g.wave_of(dep) < g.wave_of(svc)
    for wave in g.waves():
        assert [position[s] for s in wave] == sorted(position[s] for s in wave)
    assert sorted(g.start_order()) == sorted(spec)


@SETTINGS
@given(dag_specs())
def test_stop_order_is_reverse_compatible(spec: Spec) -> None:
    g = build(spec)
    order = g.stop_order()
    assert sorted(order) == sorted(spec)
    at = {name: i for i, name in enumerate(order)}
    for svc, deps in spec.items():
        for dep in deps:
            assert at[svc] < at[dep], f"{svc} depends on {dep} but stops after it"
    reverse_gens = [set(gen) for gen in nx.topological_generations(to_nx(spec).reverse())]
    assert [set(w) for w in g.stop_waves()] == reverse_gens


@SETTINGS
@given(dag_specs(), st.data())
def test_closure_and_dependants_match_networkx(spec: Spec, data: st.DataObject) -> None:
    g = build(spec)
    ng = to_nx(spec)
    names = data.draw(st.lists(st.sampled_from(sorted(spec)), max_size=4)) if spec else []
    expected: set[str] = set(names)
    for name in names:
        expected |= nx.ancestors(ng, name)
    assert g.closure(names) == expected
    for name in spec:
        assert g.dependants(name) == set(ng.successors(name))
        assert g.transitive_dependants(name) == nx.descendants(ng, name)
        assert dict(g.dependencies(name)) == spec[name]


@SETTINGS
@given(dag_specs(), st.data())
def test_subgraph_over_closure_keeps_edges(spec: Spec, data: st.DataObject) -> None:
    g = build(spec)
    names = data.draw(st.lists(st.sampled_from(sorted(spec)), max_size=3)) if spec else []
    sub = g.subgraph(names)
    assert set(sub.services) == g.closure(names)
    assert list(sub.services) == [s for s in spec if s in sub]
    for svc in sub.services:
        assert dict(sub.dependencies(svc)) == spec[svc]


def _check_is_cycle(path: tuple[str, ...], graph_spec: Spec) -> None:
    assert len(path) >= 2
    assert path[0] == path[-1]
    assert len(set(path[:-1])) == len(path) - 1, "a simple cycle visits each node once"
    for a, b in itertools.pairwise(path):
        assert b in graph_spec[a], f"{a} -> {b} is not an edge"


@SETTINGS
@given(dag_specs(max_nodes=30).filter(bool), st.data())
def test_back_edge_raises_cycle_error_with_a_real_cycle(spec: Spec, data: st.DataObject) -> None:
    g: DependencyGraph = build(spec)
    # Pick v and one of its transitive dependencies u (or v itself); making u depend on v closes a cycle.
    v = data.draw(st.sampled_from(sorted(spec)))
    u = data.draw(st.sampled_from(sorted(g.closure([v]))))
    cyclic = {name: dict(deps) for name, deps in spec.items()}
    cyclic[u][v] = "service_started"
    with pytest.raises(CycleError) as info:
        build(cyclic)
    path = info.value.path
    _check_is_cycle(path, cyclic)
    assert info.value.message == "dependency cycle: " + " -> ".join(path)


@SETTINGS
@given(dag_specs(max_nodes=15).filter(bool), st.data())
def test_unknown_dependency_is_reported(spec: Spec, data: st.DataObject) -> None:
    svc = data.draw(st.sampled_from(sorted(spec)))
    broken = {name: dict(deps) for name, deps in spec.items()}
    broken[svc]["missing-service"] = "service_started"
    with pytest.raises(UnknownDependencyError) as info:
        build(broken)
    assert (info.value.service, info.value.dependency) == (svc, "missing-service")
