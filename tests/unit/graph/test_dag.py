"""Unit tests for deploy_code.graph.dag: building, accessors, errors."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import deploy_code.graph as graph_pkg
from deploy_code.errors import ConfigError, ErrorCode, SupervisionError
from deploy_code.graph import CycleError, DependencyGraph, ServiceNotFoundError, UnknownDependencyError, build

SPEC = {
    "db": {},
    "cache": {},
    "api": {"db": "service_healthy", "cache": "service_started"},
    "worker": {"db": "service_healthy"},
    "web": {"api": "service_healthy"},
}


@pytest.fixture
def g() -> DependencyGraph:
    return build(SPEC)


def test_services_keep_input_order(g: DependencyGraph) -> None:
    assert g.services == ("db", "cache", "api", "worker", "web")
    assert len(g) == 5
    assert list(g) == list(g.services)
    assert "api" in g
    assert "nope" not in g


def test_dependencies_keep_conditions_and_are_read_only(g: DependencyGraph) -> None:
    deps = g.dependencies("api")
    assert dict(deps) == {"db": "service_healthy", "cache": "service_started"}
    with pytest.raises(TypeError):
        deps["x"] = "y"  # type: ignore[index]


def test_build_copies_its_input() -> None:
    spec: dict[str, dict[str, str]] = {"a": {}, "b": {"a": "started"}}
    g = build(spec)
    spec["b"]["zzz"] = "x"
    assert dict(g.dependencies("b")) == {"a": "started"}


def test_dependants_are_direct_only(g: DependencyGraph) -> None:
    assert g.dependants("db") == frozenset({"api", "worker"})
    assert g.dependants("web") == frozenset()


def test_transitive_dependants(g: DependencyGraph) -> None:
    assert g.transitive_dependants("db") == frozenset({"api", "worker", "web"})
    assert g.transitive_dependants("cache") == frozenset({"api", "web"})
    assert g.transitive_dependants("web") == frozenset()


def test_waves_in_input_order(g: DependencyGraph) -> None:
    assert g.waves() == (("db", "cache"), ("api", "worker"), ("web",))
    assert g.start_order() == ("db", "cache", "api", "worker", "web")
    assert g.wave_of("web") == 2


def test_stop_waves_put_dependants_first(g: DependencyGraph) -> None:
    # worker and web have no dependants: both stop first, even though worker started in wave 1.
    assert g.stop_waves() == (("worker", "web"), ("api",), ("db", "cache"))
    order = g.stop_order()
    assert order.index("web") < order.index("api") < order.index("db")
    assert order.index("worker") < order.index("db")


def test_closure_is_names_plus_transitive_dependencies(g: DependencyGraph) -> None:
    assert g.closure(["web"]) == frozenset({"web", "api", "db", "cache"})
    assert g.closure(["worker", "cache"]) == frozenset({"worker", "db", "cache"})
    assert g.closure([]) == frozenset()


def test_subgraph_with_dependencies_keeps_every_edge(g: DependencyGraph) -> None:
    sub = g.subgraph(["api"])
    assert sub.services == ("db", "cache", "api")
    assert dict(sub.dependencies("api")) == dict(g.dependencies("api"))
    assert sub.waves() == (("db", "cache"), ("api",))


def test_subgraph_induced_drops_outside_edges(g: DependencyGraph) -> None:
    sub = g.subgraph(["api", "web"], with_dependencies=False)
    assert sub.services == ("api", "web")
    assert dict(sub.dependencies("api")) == {}
    assert dict(sub.dependencies("web")) == {"api": "service_healthy"}


@pytest.mark.parametrize(
    "call",
    [
        lambda g: g.dependencies("nope"),
        lambda g: g.dependants("nope"),
        lambda g: g.transitive_dependants("nope"),
        lambda g: g.wave_of("nope"),
        lambda g: g.closure(["web", "nope"]),
        lambda g: g.subgraph(["nope"]),
    ],
)
def test_unknown_service_is_s001_and_a_key_error(g: DependencyGraph, call: object) -> None:
    with pytest.raises(ServiceNotFoundError) as info:
        call(g)  # type: ignore[operator]
    err = info.value
    assert isinstance(err, SupervisionError)
    assert isinstance(err, KeyError)
    assert err.code is ErrorCode.S001
    assert err.service == "nope"
    assert "'nope' not found" in str(err)


def test_unknown_dependency_names_service_and_dependency_and_suggests() -> None:
    with pytest.raises(UnknownDependencyError) as info:
        build({"db": {}, "api": {"dbb": "service_started"}, "web": {"ghost": "x", "api": "y"}})
    err = info.value
    assert isinstance(err, ConfigError)
    assert err.code is ErrorCode.E002
    assert (err.service, err.dependency) == ("api", "dbb")
    assert "service 'api' depends on 'dbb', which is not defined" in str(err)
    assert err.hint == "did you mean 'db'?"
    # every unknown dependency is reported, not just the first
    assert len(err.diagnostics) == 2
    assert "'ghost'" in err.diagnostics[1].message


def test_cycle_error_carries_path_and_message() -> None:
    with pytest.raises(CycleError) as info:
        build({"a": {"b": "x"}, "b": {"c": "x"}, "c": {"a": "x"}, "d": {"a": "x"}})
    err = info.value
    assert isinstance(err, ConfigError)
    assert err.code is ErrorCode.E002
    assert err.path == ("a", "b", "c", "a")
    assert err.message == "dependency cycle: a -> b -> c -> a"


def test_self_dependency_is_a_cycle() -> None:
    with pytest.raises(CycleError) as info:
        build({"a": {}, "b": {"b": "x"}})
    assert info.value.path == ("b", "b")


def test_cycle_behind_an_acyclic_prefix_is_found() -> None:
    # "entry" is not on the cycle but leads to it; the path must be the cycle only.
    with pytest.raises(CycleError) as info:
        build({"entry": {"x": ""}, "x": {"y": ""}, "y": {"z": ""}, "z": {"x": ""}})
    assert info.value.path == ("x", "y", "z", "x")


def test_empty_graph() -> None:
    g = build({})
    assert g.services == ()
    assert g.waves() == ()
    assert g.start_order() == ()
    assert g.stop_order() == ()


def test_long_chain_builds_without_recursion_or_quadratic_cost() -> None:
    n = 20_000
    spec = {f"s{i}": ({f"s{i - 1}": "started"} if i else {}) for i in range(n)}
    g = build(spec)
    assert len(g.waves()) == n
    assert g.stop_order()[0] == f"s{n - 1}"
    assert len(g.closure([f"s{n - 1}"])) == n
    assert len(g.transitive_dependants("s0")) == n - 1


def test_long_cycle_is_found_iteratively() -> None:
    n = 10_000
    spec = {f"s{i}": {f"s{(i + 1) % n}": "started"} for i in range(n)}
    with pytest.raises(CycleError) as info:
        build(spec)
    assert len(info.value.path) == n + 1
    assert info.value.path[0] == info.value.path[-1] == "s0"


def test_repr_mentions_sizes(g: DependencyGraph) -> None:
    assert repr(g) == "<DependencyGraph 5 services, 4 edges, 3 waves>"


FORBIDDEN = {"asyncio", "subprocess", "socket", "sqlite3", "httpx", "time"}


def test_graph_package_is_pure() -> None:
    root = Path(graph_pkg.__file__).parent
    for path in root.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert name.split(".")[0] not in FORBIDDEN, f"{path.name} imports {name}"
