"""Retention by count and age, the deployments table, bounded snapshots, and the read-only reader."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from deploy_code.config import RetentionSpec
from deploy_code.errors import ErrorCode, SupervisionError
from deploy_code.events import (
    AlertFired,
    DeploymentFinished,
    DeploymentStarted,
    ProbeFailed,
    ReplicaState,
    ReplicaTransitioned,
)
from deploy_code.state import StateReader, StateStore

DAY = 86_400.0


class WallClock:
    """A settable wall clock for age retention."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _transition(i: int, at: float, service: str = "svc") -> ReplicaTransitioned:
    return ReplicaTransitioned(service, 0, ReplicaState.PENDING, ReplicaState.STARTING, f"e{i}", at)


def test_count_retention_keeps_the_newest_rows(tmp_path: Path) -> None:
    clock = WallClock(1_000.0)
    store = StateStore(tmp_path / "s.db", RetentionSpec(events_max_count=100), wall_time=clock)
    for i in range(1_000):
        store.publish(_transition(i, 1_000.0))
    # Between trims the table may exceed the bound by at most one batch of inserts.
    assert 100 <= store.count_events() < 100 + 256
    store.trim()
    assert store.count_events() == 100
    rows = store.events(limit=1_000)
    assert [r.body["reason"] for r in rows] == [f"e{i}" for i in range(900, 1_000)]
    store.close()


def test_age_retention_drops_events_older_than_max_age(tmp_path: Path) -> None:
    clock = WallClock(10 * DAY)
    store = StateStore(tmp_path / "s.db", RetentionSpec(events_max_age=DAY), wall_time=clock)
    for i in range(10):  # one event per day, days 1..10
        store.publish(_transition(i, (i + 1) * DAY))
    store.trim()
    # Only day 9 (exactly max_age old) and day 10 remain.
    assert [r.body["reason"] for r in store.events()] == ["e8", "e9"]
    clock.now = 20 * DAY
    store.trim()
    assert store.count_events() == 0
    store.close()


def test_age_retention_applies_while_inserting_and_at_open(tmp_path: Path) -> None:
    clock = WallClock(100 * DAY)
    path = tmp_path / "s.db"
    store = StateStore(path, RetentionSpec(events_max_age=DAY), wall_time=clock)
    for i in range(255):
        store.publish(_transition(i, 0.0))  # ancient
    store.publish(_transition(255, 100 * DAY))  # the 256th insert trims
    assert [r.body["reason"] for r in store.events()] == ["e255"]
    for i in range(5):
        store.publish(_transition(i, 100 * DAY))
    store.close()
    clock.now = 102 * DAY
    again = StateStore(path, RetentionSpec(events_max_age=DAY), wall_time=clock)
    assert again.count_events() == 0
    again.close()


def test_event_queries_by_service_kind_and_after_id(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "s.db", wall_time=lambda: 50.0)
    store.publish(_transition(0, 1.0, "api"))
    store.publish(_transition(1, 2.0, "db"))
    store.publish(ProbeFailed("api", 0, "readiness", "refused", 3.0))
    store.publish(AlertFired("down", "api", "down_for", "api down for 30s", 30.0, 30.0, 4.0))
    rows = store.events()
    assert [r.kind for r in rows] == [
        "replica.transition",
        "replica.transition",
        "probe.failed",
        "alert.fired",
    ]
    assert [r.id for r in rows] == sorted(r.id for r in rows)
    assert [r.body["reason"] for r in store.events(service="db")] == ["e1"]
    assert [r.kind for r in store.events(kind="probe.failed")] == ["probe.failed"]
    assert [r.kind for r in store.events(kind="alert.*")] == ["alert.fired"]
    after = store.events(after_id=rows[1].id)
    assert [r.id for r in after] == [rows[2].id, rows[3].id]
    assert store.events(after_id=rows[3].id) == []
    assert store.events(limit=2)[0].id == rows[2].id  # the newest two, oldest first
    assert rows[0].to_dict()["id"] == rows[0].id
    assert rows[0].body["new"] == "starting"
    store.close()


def test_deployments_open_close_and_bound(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "s.db", RetentionSpec(deployments_max=3), wall_time=lambda: 1_000.0)
    store.publish(DeploymentStarted("app", 100.0))
    [row] = store.deployments()
    assert (row.name, row.outcome, row.finished_at, row.duration_s) == ("app", "running", None, None)
    store.publish(DeploymentFinished("app", "ready", 1.5, 101.5))
    [row] = store.deployments()
    assert (row.outcome, row.started_at, row.finished_at, row.duration_s) == ("ready", 100.0, 101.5, 1.5)
    # An open row at the next start belongs to an orchestrator that died: interrupted.
    store.publish(DeploymentStarted("app", 200.0))
    store.publish(DeploymentStarted("app", 300.0))
    store.publish(DeploymentFinished("app", "failed", 2.0, 302.0, "api: exited 1"))
    rows = store.deployments()
    assert [(r.started_at, r.outcome) for r in rows] == [
        (300.0, "failed"),
        (200.0, "interrupted"),
        (100.0, "ready"),
    ]
    assert rows[0].message == "api: exited 1"
    for t in (400.0, 500.0):
        store.publish(DeploymentStarted("app", t))
        store.publish(DeploymentFinished("app", "ready", 1.0, t + 1.0))
    assert [r.started_at for r in store.deployments()] == [500.0, 400.0, 300.0]  # bounded by 3
    # A finish without a start is recorded as one complete row.
    store.publish(DeploymentFinished("other", "ready", 4.0, 604.0))
    assert (store.deployments(1)[0].name, store.deployments(1)[0].started_at) == ("other", 600.0)
    store.close()


def test_close_marks_an_open_deployment_cancelled(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = StateStore(path, wall_time=lambda: 110.0)
    store.publish(DeploymentStarted("app", 100.0))
    store.close()
    with StateReader(path) as reader:
        [row] = reader.deployments()
    assert (row.outcome, row.finished_at, row.duration_s) == ("cancelled", 110.0, 10.0)


def _services(n: int) -> dict[str, dict[str, object]]:
    return {f"s{i}": {"replicas": 1, "ports": [{"http": 30_000 + i}]} for i in range(n)}


def test_snapshots_are_bounded_by_count(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "s.db", RetentionSpec(snapshots_max_count=3))
    store.publish(DeploymentStarted("app", 1.0))
    for i in range(5):
        assert store.save_snapshot(f"name: v{i}\n", _services(2), at=float(i)) is not None
    infos = store.snapshots()
    assert [s.at for s in infos] == [4.0, 3.0, 2.0]
    latest = store.snapshot()
    assert latest is not None
    assert latest["config"] == "name: v4\n"
    assert latest["services"]["s1"] == {"replicas": 1, "ports": [{"http": 30001}]}
    assert infos[0].config_hash == latest["config_hash"]
    assert infos[0].deployment_id == store.deployments()[0].id
    assert store.snapshot(infos[2].id) is not None
    assert store.snapshot(-1) is None
    store.close()


def test_snapshots_are_bounded_by_total_bytes(tmp_path: Path) -> None:
    budget = 3_000
    store = StateStore(tmp_path / "s.db", RetentionSpec(snapshots_max_bytes=budget))
    sizes = [store.save_snapshot("x" * 800, _services(1), at=float(i)) for i in range(6)]
    assert all(s is not None and 800 < s < 1_000 for s in sizes), sizes
    infos = store.snapshots()
    assert [s.at for s in infos] == [5.0, 4.0, 3.0]  # three fit in 3000 bytes, four do not
    assert sum(s.size_bytes for s in infos) <= budget
    # One snapshot larger than the whole budget is refused; the stored ones stay.
    assert store.save_snapshot("y" * budget, {}) is None
    assert [s.at for s in store.snapshots()] == [5.0, 4.0, 3.0]
    store.close()


def test_reader_is_read_only_and_sees_new_rows(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = StateStore(path, wall_time=lambda: 10.0)
    store.publish(_transition(0, 1.0))
    store.flush()
    reader = StateReader(path)
    [first] = reader.events()
    store.publish(_transition(1, 2.0))
    store.flush()
    assert [r.body["reason"] for r in reader.events(after_id=first.id)] == ["e1"]
    with pytest.raises(sqlite3.OperationalError):
        reader._conn.execute("DELETE FROM events")
    reader.close()
    store.close()


def test_reader_without_a_file_is_s006(tmp_path: Path) -> None:
    with pytest.raises(SupervisionError) as err:
        StateReader(tmp_path / "missing.db")
    assert err.value.code == ErrorCode.S006


def test_reader_of_an_older_file_without_new_tables(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.close()
    with StateReader(path) as reader:
        assert reader.events() == [] and reader.deployments() == [] and reader.snapshots() == []
        assert reader.snapshot() is None


def test_reads_from_other_threads_while_the_writer_commits(tmp_path: Path) -> None:
    # The API reads through asyncio.to_thread while the orchestrator keeps publishing.
    import threading

    store = StateStore(tmp_path / "s.db", wall_time=lambda: 1e9)
    errors: list[BaseException] = []
    done = threading.Event()

    def reader() -> None:
        try:
            while not done.is_set():
                rows = store.events(limit=50)
                assert [r.id for r in rows] == sorted(r.id for r in rows)
                store.deployments()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for i in range(3_000):
        store.publish(_transition(i, 1e9))
    done.set()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    assert store.count_events() == 3_000
    store.close()
