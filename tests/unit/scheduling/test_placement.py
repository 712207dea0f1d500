"""Unit tests for deploy_code.scheduling.placement and deploy_code.scheduling.cluster."""

from __future__ import annotations

import random

import pytest

from deploy_code.errors import ErrorCode, PlacementError
from deploy_code.scheduling.cluster import NodeId, SimCluster, SimNode
from deploy_code.scheduling.placement import (
    Affinity,
    AntiAffinity,
    BinPack,
    FilterPlugin,
    NodeLabels,
    PlacementRequest,
    PreferredAffinity,
    PreparedRequest,
    ResourceFit,
    Scheduler,
    ScorePlugin,
    Spread,
    default_filters,
    default_scorers,
)
from deploy_code.units import Resources


def node(i: int, cpu: float = 4, mem: float = 4096, **labels: str) -> SimNode:
    return SimNode(NodeId(f"n{i}"), Resources(cpu_cores=cpu, memory_mb=mem, storage_gb=100), dict(labels))


def sched(nodes: list[SimNode], sample: int = 16) -> Scheduler:
    return Scheduler(default_filters(), default_scorers(), sample, cluster=SimCluster(nodes))


def req(service: str = "web", cpu: float = 1, mem: float = 1024, **kw: object) -> PlacementRequest:
    return PlacementRequest("p", service, Resources(cpu_cores=cpu, memory_mb=mem), **kw)  # type: ignore[arg-type]


def test_plugins_satisfy_protocols() -> None:
    assert all(isinstance(f, FilterPlugin) for f in (ResourceFit(), NodeLabels(), AntiAffinity(), Affinity()))
    assert all(isinstance(s, ScorePlugin) for s in (BinPack(), Spread(), PreferredAffinity()))


def test_never_over_commits_random_workload() -> None:
    cluster = SimCluster.generate(50, seed=3)
    s = Scheduler(default_filters(), default_scorers(), 4, cluster=cluster)
    rng = random.Random(1)
    placed = 0
    for i in range(3000):
        r = req(f"s{i % 40}", cpu=rng.choice([0.25, 0.5, 1, 2, 4]), mem=rng.choice([256, 1024, 4096, 16384]))
        try:
            s.place(r)
            placed += 1
        except PlacementError:
            pass
    assert placed > 0
    for n in cluster:
        assert all(f >= 0 for f in n.free)
        assert all(u <= c for u, c in zip(n.used, n.cap, strict=True))


def test_reserve_refuses_over_commit() -> None:
    n = node(0, cpu=1)
    n.reserve((1000, 0, 0, 0), "p/a")
    with pytest.raises(ValueError):
        n.reserve((1, 0, 0, 0), "p/a")


def test_labels_respected() -> None:
    s = sched([node(0, zone="us"), node(1, zone="eu"), node(2, zone="us")])
    for _ in range(3):
        assert s.place(req(node_labels=(("zone", "eu"),))) == "n1"


def test_anti_affinity_respected() -> None:
    s = sched([node(0), node(1)])
    db = s.place(req("db"))
    web = s.place(req("web", anti_affinity=frozenset({"db"})))
    assert web != db
    with pytest.raises(PlacementError, match="1 anti-affinity with db"):
        s.place(req("web2", anti_affinity=frozenset({"db", "web"})))


def test_anti_affinity_is_per_owner() -> None:
    s = sched([node(0)])
    s.place(req("db"))
    other = PlacementRequest("q", "web", Resources(cpu_cores=1), anti_affinity=frozenset({"db"}))
    assert s.place(other) == "n0"


def test_spread_spreads_replicas() -> None:
    s = sched([node(i, cpu=16, mem=65536) for i in range(4)])
    chosen = [s.place(req("web", spread=True)) for _ in range(8)]
    assert {chosen.count(n) for n in set(chosen)} == {2}
    assert len(set(chosen)) == 4


def test_bin_pack_fills_nodes() -> None:
    s = sched([node(i, cpu=4, mem=4096) for i in range(4)])
    chosen = [s.place(req(f"s{i}", cpu=1, mem=1024)) for i in range(8)]
    assert len(set(chosen)) == 2
    assert all(chosen.count(n) == 4 for n in set(chosen))


def test_preferred_affinity_colocates() -> None:
    s = Scheduler(
        default_filters(), [PreferredAffinity(1.0)], cluster=SimCluster([node(i) for i in range(5)])
    )
    db = s.place(req("db"))
    assert s.place(req("web", preferred_affinity=frozenset({"db"}))) == db


def test_batch_rolls_back() -> None:
    s = sched([node(0, cpu=2), node(1, cpu=2)])
    s.place(req("a"))
    before = [list(n.free) for n in s.cluster]
    services = [dict(n.services) for n in s.cluster]
    with pytest.raises(PlacementError):
        s.place_batch([req("b"), req("c"), req("d"), req("e")])
    assert [list(n.free) for n in s.cluster] == before
    assert [dict(n.services) for n in s.cluster] == services
    assert len(s.place_batch([req("b"), req("c"), req("d")])) == 3


def test_deterministic_with_seed() -> None:
    def run(seed: int) -> list[NodeId]:
        cluster = SimCluster.generate(100, seed=seed)
        s = Scheduler(default_filters(), default_scorers(), cluster=cluster)
        rng = random.Random(seed)
        return [s.place(req(f"s{i % 7}", cpu=rng.choice([0.5, 1, 2]), spread=i % 3 == 0)) for i in range(500)]

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_rejection_reason_counts() -> None:
    nodes = [node(i, cpu=8, mem=1024, zone="us") for i in range(4)] + [node(4, cpu=8, mem=8192, zone="us")]
    s = sched(nodes)
    with pytest.raises(PlacementError) as exc:
        s.place(req(mem=4096, node_labels=(("zone", "eu"),)))
    assert exc.value.code is ErrorCode.E004
    assert "0 of 5 nodes fit: 4 insufficient memory_mb, 1 node label zone!=eu" in exc.value.message


def test_sample_limits_examined_nodes() -> None:
    # With k=1 the scheduler takes the first feasible node from the rotating offset.
    s = sched([node(i) for i in range(4)], sample=1)
    assert [s.place(req(f"s{i}")) for i in range(4)] == ["n0", "n1", "n2", "n3"]
    with pytest.raises(ValueError):
        sched([node(0)], sample=0)


def test_release_returns_capacity() -> None:
    s = sched([node(0, cpu=1)])
    r = req(cpu=1)
    nid = s.place(r)
    s.release(nid, r)
    assert s.place(r) == nid


def test_generate_is_heterogeneous_and_seeded() -> None:
    a, b = SimCluster.generate(200, seed=1), SimCluster.generate(200, seed=1)
    assert [(n.cap, n.labels) for n in a] == [(n.cap, n.labels) for n in b]
    assert len({n.cap for n in a}) > 1
    assert {n.labels["zone"] for n in a} == {"us-east", "us-west", "eu"}


def test_affinity_requires_every_service() -> None:
    s = sched([node(i, cpu=8, mem=8192) for i in range(4)], sample=1)
    db = s.place(req("db"))
    cache = s.place(req("cache"))
    assert db != cache
    for _ in range(3):
        assert s.place(req("web", affinity=frozenset({"db"}))) == db
    with pytest.raises(PlacementError, match="affinity: cache not on node") as exc:
        s.place(req("api", affinity=frozenset({"db", "cache", "zzz"})))
    # Missing services are reported in name order: "cache" before "db", "zzz" last.
    assert "3 affinity: cache not on node, 1 affinity: db not on node" in exc.value.message


def test_affinity_is_per_owner_and_in_defaults() -> None:
    assert [type(f) for f in default_filters()][-2:] == [AntiAffinity, Affinity]
    assert Affinity().prepare(PreparedRequest.of(req()), SimCluster([])) is None
    s = sched([node(0), node(1)])
    s.place(req("db"))
    other = PlacementRequest("q", "web", Resources(cpu_cores=1), affinity=frozenset({"db"}))
    with pytest.raises(PlacementError, match="0 of 2 nodes fit: 2 affinity: db not on node"):
        s.place(other)


def test_affinity_with_anti_affinity_and_batch_rollback() -> None:
    s = sched([node(0), node(1)])
    db = s.place(req("db"))
    ids = s.place_batch([req("web", affinity=frozenset({"db"})), req("x", anti_affinity=frozenset({"db"}))])
    assert ids[0] == db and ids[1] != db
    with pytest.raises(PlacementError):
        s.place_batch([req("a", affinity=frozenset({"db"})), req("b", affinity=frozenset({"nope"}))])
    assert s.cluster.node(db).services == {"p/db": 1, "p/web": 1}


def test_without_reserving_only_constraints_apply() -> None:
    cluster = SimCluster([node(0, cpu=2, mem=2048), node(1, cpu=2, mem=2048)])
    s = Scheduler(default_filters(), default_scorers(), cluster=cluster, reserve_resources=False)
    # Ten replicas of 2 CPUs fit by constraints: nothing is subtracted.
    ids = [s.place(req(f"s{i}", cpu=2, mem=2048)) for i in range(10)]
    assert all(list(n.free) == list(n.cap) for n in cluster)
    assert sum(sum(n.services.values()) for n in cluster) == 10
    # A replica larger than every node is still rejected, against total capacity.
    with pytest.raises(PlacementError, match="2 insufficient cpu_cores"):
        s.place(req("big", cpu=3, mem=1024))
    # Anti-affinity and affinity see recorded services.
    assert s.place(req("n", anti_affinity=frozenset({"s0"}))) != ids[0]
    assert s.place(req("w", affinity=frozenset({"s0"}))) == ids[0]
    # Release only forgets the service.
    s.release(ids[0], req("s0", cpu=2, mem=2048))
    assert "p/s0" not in cluster.node(ids[0]).services
    assert all(list(n.free) == list(n.cap) for n in cluster)
    with pytest.raises(ValueError, match="no replica of p/s0"):
        s.release(ids[0], req("s0", cpu=2, mem=2048))


def test_without_reserving_batch_rollback_forgets() -> None:
    cluster = SimCluster([node(0, cpu=2)])
    s = Scheduler(default_filters(), default_scorers(), cluster=cluster, reserve_resources=False)
    s.place(req("a", cpu=2))
    with pytest.raises(PlacementError):
        s.place_batch([req("b", cpu=2), req("c", cpu=2), req("d", cpu=5)])
    assert cluster.node(NodeId("n0")).services == {"p/a": 1}
    assert list(cluster.node(NodeId("n0")).free) == list(cluster.node(NodeId("n0")).cap)
    assert len(s.place_batch([req("b", cpu=2), req("c", cpu=2)])) == 2


def test_spread_counts_recorded_replicas_without_reserving() -> None:
    cluster = SimCluster([node(i, cpu=16, mem=65536) for i in range(3)])
    s = Scheduler(default_filters(), default_scorers(), cluster=cluster, reserve_resources=False)
    chosen = [s.place(req("web", spread=True)) for _ in range(6)]
    assert sorted(chosen.count(n) for n in set(chosen)) == [2, 2, 2]


def test_record_and_forget() -> None:
    n = node(0)
    n.record("p/a")
    n.record("p/a")
    assert n.services == {"p/a": 2} and n.used == (0, 0, 0, 0)
    n.forget("p/a")
    n.forget("p/a")
    assert n.services == {}
    with pytest.raises(ValueError):
        n.forget("p/a")


def test_inline_fit_matches_plugin_fit() -> None:
    # A ResourceFit subclass is not inlined by the scheduler: both paths must choose the same nodes.
    class PluginFit(ResourceFit):
        pass

    def run(fit: ResourceFit) -> list[NodeId | str]:
        cluster = SimCluster.generate(60, seed=5)
        filters = [fit, NodeLabels(), AntiAffinity(), Affinity()]
        s = Scheduler(filters, default_scorers(), 4, cluster=cluster)
        rng = random.Random(2)
        out: list[NodeId | str] = []
        for i in range(2500):
            labels = (("zone", rng.choice(["eu", "us-east"])),) if i % 5 == 0 else ()
            anti = frozenset({f"s{(i + 1) % 30}"}) if i % 7 == 0 else frozenset()
            r = req(
                f"s{i % 30}",
                cpu=rng.choice([0.5, 1, 2, 4]),
                mem=rng.choice([512, 2048, 8192]),
                node_labels=labels,
                anti_affinity=anti,
                spread=i % 11 == 0,
            )
            try:
                out.append(s.place(r))
            except PlacementError as e:
                out.append(e.message)
        return out

    inline, plugin = run(ResourceFit()), run(PluginFit())
    assert inline == plugin
    assert any(not str(x).startswith("node-") for x in inline)


def test_unhashable_request_still_placed() -> None:
    s = sched([node(0, zone="eu")])
    r = PlacementRequest("p", "w", Resources(cpu_cores=1), node_labels=[("zone", "eu")])  # type: ignore[arg-type]
    assert s.place(r) == "n0"
