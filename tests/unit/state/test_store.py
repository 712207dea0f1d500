from pathlib import Path

import pytest

from deploy_code.errors import ErrorCode, SupervisionError
from deploy_code.events import ReplicaState, ReplicaTransitioned
from deploy_code.state import EVENT_RETENTION, ReplicaRecord, StateDirLock, StateStore, prepare_state_dir


def test_replica_records_round_trip(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.db")
    rec = ReplicaRecord("api", 1, 1234, 1234, 99, {"http": 30001}, "/x.log", 1.5)
    store.put_replica(rec)
    store.flush()
    assert store.load_replicas() == [rec]
    store.delete_replica("api", 1)
    store.flush()
    assert store.load_replicas() == []
    store.close()
    store.close()  # idempotent


def test_events_are_bounded_by_retention(tmp_path: Path) -> None:
    # Timestamps 0..n seconds: the wall clock sits just after them, so age retention keeps them all.
    store = StateStore(tmp_path / "state.db", wall_time=lambda: float(EVENT_RETENTION + 2_000))
    n = EVENT_RETENTION + 2_000
    for i in range(n):
        store.publish(
            ReplicaTransitioned("svc", 0, ReplicaState.PENDING, ReplicaState.STARTING, f"e{i}", float(i))
        )
    count = store.count_events()
    # Trimmed in batches of 256: never more than the retention plus one batch.
    assert EVENT_RETENTION <= count <= EVENT_RETENTION + 256
    last = store.recent_events(1)
    assert last[0]["reason"] == f"e{n - 1}"
    store.close()


def test_records_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = StateStore(path)
    store.put_replica(ReplicaRecord("kv", 0, 1, 1, 2, {}, "/l", 0.0))
    store.close()
    again = StateStore(path)
    assert [r.service for r in again.load_replicas()] == ["kv"]
    again.close()


def test_second_lock_is_refused_with_s003(tmp_path: Path) -> None:
    d = prepare_state_dir(tmp_path / "state")
    assert (d.stat().st_mode & 0o777) == 0o700
    first = StateDirLock(d)
    first.acquire()
    assert first.held_by() is not None
    with pytest.raises(SupervisionError) as err:
        StateDirLock(d).acquire()
    assert err.value.code == ErrorCode.S003
    first.release()
    assert StateDirLock(d).held_by() is None


def test_unusable_state_dir_is_s006(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SupervisionError) as err:
        prepare_state_dir(blocker / "state")
    assert err.value.code == ErrorCode.S006
