"""A service: its replicas and the conditions dependants wait for."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from deploy_code.config.model import ServiceSpec
from deploy_code.events import ReplicaState

if TYPE_CHECKING:
    from deploy_code.supervisor.orchestrator import Orchestrator
    from deploy_code.supervisor.replica import Replica

__all__ = ["ServiceRuntime"]

S = ReplicaState


class ServiceRuntime:
    """Replicas of one service plus its conditions (started, healthy, completed, failed).

    Conditions latch: once a dependant may start, a later restart of the dependency does not stop it.
    """

    def __init__(self, orch: Orchestrator, name: str, spec: ServiceSpec) -> None:
        self.orch = orch
        self.name = name
        self.spec = spec
        self.replicas: dict[int, Replica] = {}  # bounded by `desired` (at most 10,000)
        self.desired = spec.replicas  # the file's count until `scale` changes it
        self.launched = False  # dependencies met and the first replicas launched: new ones start at once
        self.started = asyncio.Event()
        self.healthy = asyncio.Event()
        self.completed = asyncio.Event()
        self.failed = asyncio.Event()
        self.failure = ""
        self.deploy_started: float | None = None
        self.ready_after_s: float | None = None
        # Replicas per state and how many ever started: each transition updates them in O(1), so the
        # conditions never rescan the replicas (one key per ReplicaState: bounded).
        self._by_state: dict[ReplicaState, int] = dict.fromkeys(ReplicaState, 0)
        self._ever_started = 0
        self._settled = False

    def add(self, rep: Replica) -> None:
        """Take a replica (before it runs)."""
        self.replicas[rep.index] = rep
        self._by_state[rep.state] += 1
        self._ever_started += rep.ever_started

    def remove(self, rep: Replica) -> None:
        """Forget a stopped replica (scale down): its counters leave with it."""
        if self.replicas.pop(rep.index, None) is not None:
            self._by_state[rep.state] -= 1
            self._ever_started -= rep.ever_started

    def condition(self, name: str) -> asyncio.Event:
        """The event for a ``depends_on`` condition."""
        return {
            "started": self.started,
            "healthy": self.healthy,
            "completed_successfully": self.completed,
        }[name]

    def on_replica_changed(self, rep: Replica, old: ReplicaState, first_start: bool) -> None:
        """Account one replica transition and re-evaluate the conditions (on the loop, O(1))."""
        self._by_state[old] -= 1
        self._by_state[rep.state] += 1
        self._ever_started += first_start
        if rep.state == S.READY or old == S.READY:
            self.orch.route(rep, old)
        if rep.state == S.FAILED and not self.failed.is_set():
            self.failure = f"replica {rep.id}: {rep.reason}"
            self.failed.set()
            self.orch.on_service_failed(self)
        self.refresh()

    def refresh(self) -> None:
        """Set the conditions that hold now (they latch) and tell the orchestrator once settled."""
        n = len(self.replicas)
        if self._ever_started == n:
            self.started.set()
        if self._by_state[S.READY] == n and not self.healthy.is_set():
            if self.deploy_started is not None:
                self.ready_after_s = self.orch.clock.now() - self.deploy_started
            self.healthy.set()
        if n and self._by_state[S.COMPLETED] == n:
            self.completed.set()
        if not self._settled and self.settled:
            self._settled = True
            self.orch.on_service_settled(self)

    @property
    def settled(self) -> bool:
        """True when this service needs nothing more to count as deployed."""
        return self.healthy.is_set() or self.completed.is_set()

    @property
    def state(self) -> str:
        """One word for the service: the worst of its replicas' states."""
        states = [r.state for r in self.replicas.values()]
        if not states:
            return "ready"
        for s in (S.FAILED, S.BACKOFF, S.DEGRADED, S.STARTING, S.PENDING, S.STOPPING):
            if s in states:
                return str(s)
        if all(s == S.COMPLETED for s in states):
            return str(S.COMPLETED)
        if all(s in (S.STOPPED, S.COMPLETED) for s in states):
            return str(S.STOPPED)
        return str(S.READY)

    @property
    def ready_count(self) -> int:
        """Replicas ready now (a counter, not a scan)."""
        return self._by_state[S.READY]

    def summary(self) -> dict[str, object]:
        """State, ready/desired and restarts, without the per-replica detail of ``snapshot``."""
        return {
            "name": self.name,
            "state": self.state,
            "ready": self._by_state[S.READY],
            "desired": self.desired,
            "restarts": sum(r.restarts for r in self.replicas.values()),
        }

    def snapshot(self) -> dict[str, object]:
        """Plain-data view for status."""
        reps = [self.replicas[i] for i in sorted(self.replicas)]
        return {
            "name": self.name,
            "state": self.state,
            "ready": sum(1 for r in reps if r.state == S.READY),
            "desired": self.desired,
            "restarts": sum(r.restarts for r in reps),
            "depends_on": dict(self.spec.depends_on),
            "failure": self.failure or None,
            "ready_after_s": None if self.ready_after_s is None else round(self.ready_after_s, 4),
            "replicas": [r.snapshot() for r in reps],
        }
