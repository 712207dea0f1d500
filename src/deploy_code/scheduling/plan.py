"""Turn a validated project into a plan: dependency waves plus one placement per replica."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from deploy_code.config import Project
from deploy_code.errors import ConfigError, DeployCodeError, Diagnostic, ErrorCode, PlacementError
from deploy_code.graph import CycleError, DependencyGraph, build
from deploy_code.ports import PortAllocator
from deploy_code.resources import LOCAL_NODE, Ledger
from deploy_code.scheduling.cluster import NodeId, SimCluster, SimNode
from deploy_code.scheduling.placement import PlacementRequest, Scheduler, default_filters, default_scorers
from deploy_code.units import Resources

__all__ = [
    "Placement",
    "Plan",
    "check",
    "effective_capacity",
    "local_cluster",
    "make_graph",
    "place",
    "plan",
    "release_plan",
]

_RESOURCE_UNITS = {"cpu_cores": "cores", "memory_mb": "MiB", "storage_gb": "GiB", "gpu_count": "GPUs"}


@dataclass(frozen=True, slots=True)
class Placement:
    """Where one replica runs and what it holds."""

    service: str
    index: int
    resources: Resources
    ports: Mapping[str, int]
    node: str = LOCAL_NODE

    @property
    def owner(self) -> str:
        """The replica's id in the ledger and port allocator: ``service.index``."""
        return f"{self.service}.{self.index}"


@dataclass(frozen=True, slots=True)
class Plan:
    """The result of planning: graph, start waves, and placements per service (in start order)."""

    graph: DependencyGraph
    waves: tuple[tuple[str, ...], ...]
    placements: Mapping[str, tuple[Placement, ...]]

    def all_placements(self) -> Iterable[Placement]:
        """Every placement, in start order."""
        for wave in self.waves:
            for name in wave:
                yield from self.placements.get(name, ())


def make_graph(project: Project) -> DependencyGraph:
    """Build the dependency graph; a cycle becomes E002 at the first edge of the cycle.

    Raises:
        ConfigError: E002 with the cycle path, located at the ``depends_on`` key that closes it.
    """
    deps = {name: dict(svc.depends_on) for name, svc in project.spec.services.items()}
    try:
        return build(deps)
    except CycleError as exc:
        path = list(exc.path)
        loc = project.locate("services", path[0], "depends_on", path[1]) if len(path) > 1 else None
        raise ConfigError(
            f"dependency cycle: {' -> '.join(path)}",
            location=loc,
            hint="remove one of these depends_on entries",
        ) from None


def effective_capacity(project: Project, discovered: Resources) -> Resources:
    """What services may book: the discovered figures, overridden by ``settings.capacity``, less the
    ``settings.headroom`` kept back for the system (never below zero).

    Args:
        project: the loaded file.
        discovered: the machine's figures (from the runtime backend).
    """
    settings = project.spec.settings
    figures = {**discovered.to_dict(), **settings.capacity.overrides()}
    kept = settings.headroom.to_resources().to_dict()
    out = {k: max(0.0, v - kept[k]) for k, v in figures.items()}
    return Resources(out["cpu_cores"], out["memory_mb"], out["storage_gb"], int(out["gpu_count"]))


def _num(x: float) -> str:
    """``999999999`` -> ``999,999,999``; ``0.25`` -> ``0.25``: whole figures readable, fractions kept."""
    return f"{x:,.0f}" if float(x).is_integer() else f"{x:,.3g}"


def _kept(project: Project, dim: str) -> str:
    kept = getattr(project.spec.settings.headroom, dim)
    return f" ({_num(kept)} kept back as settings.headroom)" if kept else ""


def _fit_diagnostics(project: Project, capacity: Resources) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    for name, svc in project.spec.services.items():
        one = svc.resources.to_resources()
        total = one.scale(svc.replicas) if svc.replicas else Resources()
        for dim, want, have in total.exceeded(capacity):
            unit = _RESOURCE_UNITS[dim]
            per = f" ({svc.replicas} replicas x {_num(getattr(one, dim))})" if svc.replicas > 1 else ""
            out.append(
                Diagnostic(
                    ErrorCode.E004,
                    f"service {name!r} requests {_num(want)} {unit} of {dim}{per}, "
                    f"but the machine offers {_num(have)} {unit}{_kept(project, dim)}",
                    project.locate("services", name, "resources", dim),
                    "lower the request or the replica count, or run on a bigger machine",
                )
            )
    return out


def check(project: Project, capacity: Resources) -> list[Diagnostic]:
    """Every problem planning would meet, without booking anything: cycles and oversize requests."""
    diags: list[Diagnostic] = []
    try:
        make_graph(project)
    except DeployCodeError as exc:
        diags.extend(exc.diagnostics)
    diags.extend(_fit_diagnostics(project, capacity))
    diags.extend(_pool_diagnostics(project, capacity))
    if not diags:
        diags.extend(place(project, capacity, project.spec.services)[1])
    return diags


def local_cluster(project: Project, capacity: Resources) -> SimCluster:
    """This machine as a cluster of one node: ``capacity`` and ``settings.labels``."""
    return SimCluster([SimNode(NodeId(LOCAL_NODE), capacity, dict(project.spec.settings.labels))])


def place(
    project: Project,
    capacity: Resources,
    names: Iterable[str],
    counts: Mapping[str, int] | None = None,
) -> tuple[dict[str, tuple[str, ...]], list[Diagnostic]]:
    """Run every replica of ``names`` through the placement pipeline on this machine's one-node cluster.

    The pipeline's filters (resource fit, node labels, anti-affinity, affinity) decide whether a replica
    may run here at all; resources are not reserved (``reserve_resources=False``): the ledger books them
    when each service starts, so services that fit one at a time may wait for each other instead of
    failing. Services with a hard ``affinity`` are placed after the others, so that what they need
    beside them is already on the node.

    Args:
        project: the loaded file.
        capacity: what services may book in all.
        names: the services to place.
        counts: replica counts that differ from the file's (a service scaled at run time).

    Returns:
        The node of every replica, by service; and one E004 diagnostic per service that cannot be
        placed, located at its ``placement`` key.
    """
    services = project.spec.services
    cluster = local_cluster(project, capacity)
    scheduler = Scheduler(default_filters(), default_scorers(), cluster=cluster, reserve_resources=False)
    ordered = sorted(names, key=lambda n: bool(services[n].placement.affinity))  # stable: order kept
    nodes: dict[str, tuple[str, ...]] = {}
    diags: list[Diagnostic] = []
    for name in ordered:
        svc = services[name]
        spec = svc.placement
        request = PlacementRequest(
            owner=project.spec.name,
            service=name,
            resources=svc.resources.to_resources(),
            node_labels=tuple(sorted(spec.node_labels.items())),
            anti_affinity=frozenset(spec.anti_affinity),
            preferred_affinity=frozenset(spec.preferred_affinity),
            spread=spec.spread,
            affinity=frozenset(spec.affinity),
        )
        got: list[str] = []
        for idx in range((counts or {}).get(name, svc.replicas)):
            try:
                got.append(scheduler.place(request))
            except PlacementError as exc:
                where = f"replica {idx} of " if idx else ""
                diags.append(
                    Diagnostic(
                        ErrorCode.E004,
                        f"{where}service {name!r} has no node: {exc.message}",
                        project.locate("services", name, "placement"),
                        "this machine's labels are settings.labels; on one machine, anti_affinity "
                        "between services deployed together (or with itself and replicas > 1) "
                        "cannot be met",
                    )
                )
                break
        nodes[name] = tuple(got)
    return nodes, diags


def _pool_diagnostics(project: Project, capacity: Resources) -> list[Diagnostic]:
    """A top-level pool larger than what the machine offers can never be filled: E004."""
    out: list[Diagnostic] = []
    for name, pool in project.spec.pools.items():
        if pool.parent is not None:
            continue  # checked against its parent when the file loaded
        for dim, want in pool.quotas().items():
            have = getattr(capacity, dim)
            if want > have:
                out.append(
                    Diagnostic(
                        ErrorCode.E004,
                        f"pool {name!r} has {_num(want)} {_RESOURCE_UNITS[dim]} of {dim}, "
                        f"but the machine offers {_num(have)}{_kept(project, dim)}",
                        project.locate("pools", name, dim),
                        "lower the pool's quota, or raise settings.capacity",
                    )
                )
    return out


def plan(
    project: Project,
    capacity: Resources,
    ports: PortAllocator,
    *,
    now: float,
    selected: Iterable[str] | None = None,
    assigned: Mapping[str, Mapping[str, int]] | None = None,
) -> Plan:
    """Plan every replica of the selected services (plus their dependencies): waves and ports.

    Ports are taken here, all or nothing. Resources are only checked against ``capacity`` (a request
    that can never fit is E004 now); they are booked in the ledger when each service is about to
    start (see the supervisor), so a service that fits the machine but not what is free right now
    waits for capacity instead of failing the whole deployment.

    Args:
        project: the loaded file.
        capacity: what services may book in all (``effective_capacity``).
        ports: ports are taken here; fixed ports are reserved, ``auto`` ones allocated.
        now: monotonic time, for port quarantine.
        selected: service names to deploy with their dependencies; None means all.
        assigned: ports already held by replicas being re-adopted, by owner id (``svc.idx``).

    Raises:
        PlacementError: E004 when a request can never fit; nothing stays booked.
        DeployCodeError: S001 for an unknown service name, S004 for a port conflict.
    """
    graph = make_graph(project)
    diags = _fit_diagnostics(project, capacity)
    if diags:
        raise PlacementError.from_diagnostics(diags)
    names = graph.closure(selected) if selected else frozenset(graph.services)
    waves = tuple(tuple(n for n in wave if n in names) for wave in graph.waves())
    waves = tuple(w for w in waves if w)
    nodes, diags = place(project, capacity, [n for w in waves for n in w])
    if diags:
        raise PlacementError.from_diagnostics(diags)
    assigned = assigned or {}
    placements: dict[str, tuple[Placement, ...]] = {}
    owners: list[str] = []  # every owner that may hold a port, including a half-placed replica
    try:
        for wave in waves:
            for name in wave:
                svc = project.spec.services[name]
                reps: list[Placement] = []
                for idx in _indices(name, svc.replicas, assigned):
                    owner = f"{name}.{idx}"
                    owners.append(owner)
                    held = assigned.get(owner, {})
                    got: dict[str, int] = {}
                    for port_name, value in svc.ports.items():
                        if port_name in held:
                            ports.reserve(held[port_name], owner)
                            got[port_name] = held[port_name]
                        elif value == "auto":
                            got[port_name] = ports.allocate(owner, now)
                        else:
                            ports.reserve(int(value), owner)
                            got[port_name] = int(value)
                    p = Placement(name, idx, svc.resources.to_resources(), got, nodes[name][len(reps)])
                    reps.append(p)
                placements[name] = tuple(reps)
    except BaseException:
        for owner in owners:
            ports.release_owner(owner, now)
        raise
    return Plan(graph, waves, placements)


def _indices(name: str, count: int, assigned: Mapping[str, Mapping[str, int]]) -> list[int]:
    """Replica indices for ``count`` replicas: those of re-adopted replicas (which may be any numbers
    after a rollout), then the lowest free ones."""
    prefix = f"{name}."
    adopted = sorted(
        int(owner[len(prefix) :])
        for owner in assigned
        if owner.startswith(prefix) and owner[len(prefix) :].isdigit()
    )[:count]
    taken = set(adopted)
    free = (i for i in range(count + len(taken)) if i not in taken)
    return adopted + [next(free) for _ in range(count - len(adopted))]


def release_plan(plan_: Plan, ledger: Ledger, ports: PortAllocator, *, now: float) -> None:
    """Give back every port of the plan and every booking its replicas hold (idempotent)."""
    for p in plan_.all_placements():
        ledger.release(p.owner)
        ports.release_owner(p.owner, now)
