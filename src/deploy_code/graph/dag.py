"""The dependency DAG: frozen adjacency plus reverse edges, built and checked in O(V + E)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from types import MappingProxyType

from deploy_code.errors import ConfigError, Diagnostic, ErrorCode, SupervisionError
from deploy_code.graph.select import reach
from deploy_code.graph.waves import CycleError, find_cycle, generations

__all__ = ["DependencyGraph", "ServiceNotFoundError", "UnknownDependencyError", "build"]


class UnknownDependencyError(ConfigError):
    """A service depends on a service that is not defined (E002).

    When several dependencies are unknown, the first (in input order) names the error and
    every one of them is listed in ``diagnostics``.

    Attributes:
        service: the service whose ``depends_on`` is wrong.
        dependency: the name that is not defined.
    """

    def __init__(self, problems: Sequence[tuple[str, str]], known: Iterable[str]) -> None:
        self.service, self.dependency = problems[0]
        known_names = list(known)
        diags = [_unknown_dependency_diagnostic(s, d, known_names) for s, d in problems]
        first = diags[0]
        super().__init__(first.message, code=ErrorCode.E002, hint=first.hint, diagnostics=diags)


def _unknown_dependency_diagnostic(service: str, dependency: str, known: list[str]) -> Diagnostic:
    close = difflib.get_close_matches(dependency, known, n=1)
    hint = f"did you mean {close[0]!r}?" if close else "define that service or remove it from depends_on"
    return Diagnostic(
        ErrorCode.E002, f"service {service!r} depends on {dependency!r}, which is not defined", hint=hint
    )


class ServiceNotFoundError(SupervisionError, KeyError):
    """A service name asked for is not in the graph (S001). Also a :class:`KeyError`.

    Attributes:
        service: the name that was asked for.
    """

    def __init__(self, service: str) -> None:
        self.service = service
        super().__init__(f"service {service!r} not found", code=ErrorCode.S001)


class DependencyGraph:
    """A frozen dependency DAG over service names. Build it with :func:`build`.

    Edges point from a service to the services it depends on; the reverse edges ("who depends
    on me") are stored too. Waves are computed once, at build time. Instances are immutable:
    every accessor returns a tuple, a frozenset or a read-only mapping.
    """

    __slots__ = ("_conditions", "_dependants", "_deps", "_index", "_level", "_names", "_waves")

    def __init__(
        self,
        names: tuple[str, ...],
        conditions: tuple[Mapping[str, str], ...],
        deps: list[tuple[int, ...]],
        dependants: list[tuple[int, ...]],
        level: list[int],
        index: dict[str, int] | None = None,
    ) -> None:
        """Wrap already-checked adjacency; use :func:`build` instead of calling this.

        ``index`` (name -> position in ``names``) is rebuilt when not given.
        """
        self._names = names
        self._index = index if index is not None else {name: i for i, name in enumerate(names)}
        self._conditions = conditions
        self._deps = deps
        self._dependants = dependants
        self._level = level
        # Bucket by level in input order: O(V), and order within a wave is the input order.
        buckets: list[list[str]] = [[] for _ in range(max(level, default=-1) + 1)]
        for i, lvl in enumerate(level):
            buckets[lvl].append(names[i])
        self._waves: tuple[tuple[str, ...], ...] = tuple(tuple(b) for b in buckets)

    @property
    def services(self) -> tuple[str, ...]:
        """Every service, in input order."""
        return self._names

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __repr__(self) -> str:
        edges = sum(len(d) for d in self._deps)
        return f"<DependencyGraph {len(self._names)} services, {edges} edges, {len(self._waves)} waves>"

    def _idx(self, name: str) -> int:
        try:
            return self._index[name]
        except KeyError:
            raise ServiceNotFoundError(name) from None

    def dependencies(self, name: str) -> Mapping[str, str]:
        """Direct dependencies of ``name`` and their conditions (read-only, input order).

        Raises:
            ServiceNotFoundError: ``name`` is not in the graph (S001).
        """
        return self._conditions[self._idx(name)]

    def dependants(self, name: str) -> frozenset[str]:
        """Services that depend directly on ``name`` ("who depends on me").

        Raises:
            ServiceNotFoundError: ``name`` is not in the graph (S001).
        """
        return frozenset(self._names[j] for j in self._dependants[self._idx(name)])

    def transitive_dependants(self, name: str) -> frozenset[str]:
        """Every service that depends on ``name`` directly or indirectly (``name`` excluded).

        These are the services to restart or roll back when ``name`` changes.

        Raises:
            ServiceNotFoundError: ``name`` is not in the graph (S001).
        """
        start = self._idx(name)
        found = reach(self._dependants, self._dependants[start])
        return frozenset(self._names[j] for j in found)

    def wave_of(self, name: str) -> int:
        """The wave number of ``name`` (0 for services without dependencies).

        Raises:
            ServiceNotFoundError: ``name`` is not in the graph (S001).
        """
        return self._level[self._idx(name)]

    def waves(self) -> tuple[tuple[str, ...], ...]:
        """Kahn topological generations: wave ``k`` depends only on waves ``< k``.

        Order within a wave is the input order.
        """
        return self._waves

    def start_order(self) -> tuple[str, ...]:
        """One start order: the waves, flattened."""
        return tuple(name for wave in self._waves for name in wave)

    def stop_waves(self) -> tuple[tuple[str, ...], ...]:
        """Generations for stopping: a service's wave comes after all its dependants' waves.

        This is Kahn over the reverse edges, so a service nobody depends on stops in wave 0
        even if it started last. Order within a wave is the input order.
        """
        level = generations(self._dependants, self._deps)
        if level is None:  # pragma: no cover - the reverse of a DAG is a DAG
            raise AssertionError("reverse graph has a cycle")
        buckets: list[list[str]] = [[] for _ in range(max(level, default=-1) + 1)]
        for i, lvl in enumerate(level):
            buckets[lvl].append(self._names[i])
        return tuple(tuple(b) for b in buckets)

    def stop_order(self) -> tuple[str, ...]:
        """Reverse dependency order: every service comes before everything it depends on."""
        return tuple(name for wave in self.stop_waves() for name in wave)

    def closure(self, names: Iterable[str]) -> frozenset[str]:
        """``names`` plus all their transitive dependencies (what ``up SERVICE...`` starts).

        Raises:
            ServiceNotFoundError: one of ``names`` is not in the graph (S001).
        """
        starts = [self._idx(name) for name in names]
        return frozenset(self._names[i] for i in reach(self._deps, starts))

    def subgraph(self, names: Iterable[str], *, with_dependencies: bool = True) -> DependencyGraph:
        """A graph over ``names``, keeping the input order.

        Args:
            names: services to keep.
            with_dependencies: when true (the default) the transitive dependencies of ``names``
                are kept too, so no edge is lost. When false the graph is induced on exactly
                ``names`` and edges to services outside it are dropped (e.g. to stop a service
                together with its dependants: ``names = {s} | transitive_dependants(s)``).

        Raises:
            ServiceNotFoundError: one of ``names`` is not in the graph (S001).
        """
        starts = {self._idx(name) for name in names}
        keep = reach(self._deps, starts) if with_dependencies else starts
        # Iterate in input order; the result has no cycle and no unknown names by construction.
        spec = {
            self._names[i]: {d: c for d, c in self._conditions[i].items() if self._index[d] in keep}
            for i in range(len(self._names))
            if i in keep
        }
        return build(spec)


def build(deps: Mapping[str, Mapping[str, str]]) -> DependencyGraph:
    """Check and freeze a dependency map in O(V + E).

    Args:
        deps: ``service -> {dependency: condition}``, in the order services were declared.
            The condition string (e.g. ``"service_healthy"``) is kept as is.

    Returns:
        The graph with its waves computed.

    Raises:
        UnknownDependencyError: a dependency is not a key of ``deps`` (every one is listed).
        CycleError: the dependencies form a cycle; ``path`` holds one of them.
    """
    names = tuple(deps)
    index = {name: i for i, name in enumerate(names)}
    lookup = index.get
    conditions: list[Mapping[str, str]] = []
    dep_idx: list[tuple[int, ...]] = []
    rev: list[list[int]] = [[] for _ in names]
    unknown: list[tuple[str, str]] = []
    # Hot loop (once per service and once per edge): the name lookups run in C through map().
    for i, name in enumerate(names):
        cond = dict(deps[name])
        conditions.append(MappingProxyType(cond))
        row = tuple(map(lookup, cond))
        if None in row:
            unknown.extend((name, dep) for dep, j in zip(cond, row, strict=True) if j is None)
            continue
        dep_idx.append(row)  # type: ignore[arg-type]  # no None left in row
        for j in row:
            rev[j].append(i)  # type: ignore[index]  # appended in input order: dependants stay in input order
    if unknown:
        raise UnknownDependencyError(unknown, names)
    dependants = [tuple(r) for r in rev]
    level = generations(dep_idx, dependants)
    if level is None:
        raise CycleError([names[i] for i in find_cycle(dep_idx)])
    return DependencyGraph(names, tuple(conditions), dep_idx, dependants, level, index)
