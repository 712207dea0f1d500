"""The replica registry: every live replica indexed by service, port, node and state.

Look-ups the control plane and the supervisor make all the time -- "who holds port 30012?", "which
replicas are failed?", "what runs on node n-17?" -- are dictionary hits here, never scans over every
replica. The indexes are updated where the facts change: on placement (ports, node) and on every state
transition, each in O(1).

Bounded: an entry exists per placed replica and is removed when the replica is forgotten (scaled away
or its service stopped for good); the state index holds one set per ``ReplicaState``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from deploy_code.events import ReplicaState

__all__ = ["Registry", "ReplicaEntry"]

LOCAL_NODE = "local"


@dataclass(slots=True)
class ReplicaEntry:
    """What the registry knows of one replica."""

    id: str
    service: str
    index: int
    node: str
    ports: dict[str, int]
    state: ReplicaState


class Registry:
    """Replicas by id, and the indexes over them."""

    def __init__(self) -> None:
        self._by_id: dict[str, ReplicaEntry] = {}
        self._by_service: dict[str, dict[int, ReplicaEntry]] = {}
        self._by_port: dict[int, ReplicaEntry] = {}
        self._by_node: dict[str, set[str]] = {}
        self._by_state: dict[ReplicaState, set[str]] = {s: set() for s in ReplicaState}

    def __len__(self) -> int:
        return len(self._by_id)

    def add(
        self,
        service: str,
        index: int,
        ports: Mapping[str, int],
        state: ReplicaState,
        node: str = LOCAL_NODE,
    ) -> ReplicaEntry:
        """Register a placed replica (replacing an earlier entry with the same id)."""
        rid = f"{service}.{index}"
        if rid in self._by_id:
            self.remove(rid)
        entry = ReplicaEntry(rid, service, index, node, dict(ports), state)
        self._by_id[rid] = entry
        self._by_service.setdefault(service, {})[index] = entry
        for port in entry.ports.values():
            self._by_port[port] = entry
        self._by_node.setdefault(node, set()).add(rid)
        self._by_state[state].add(rid)
        return entry

    def remove(self, rid: str) -> None:
        """Forget a replica (idempotent)."""
        entry = self._by_id.pop(rid, None)
        if entry is None:
            return
        reps = self._by_service.get(entry.service)
        if reps is not None:
            reps.pop(entry.index, None)
            if not reps:
                del self._by_service[entry.service]
        for port in entry.ports.values():
            if self._by_port.get(port) is entry:
                del self._by_port[port]
        on_node = self._by_node.get(entry.node)
        if on_node is not None:
            on_node.discard(rid)
            if not on_node:
                del self._by_node[entry.node]
        self._by_state[entry.state].discard(rid)

    def set_state(self, rid: str, state: ReplicaState) -> None:
        """Move a replica between state indexes (O(1))."""
        entry = self._by_id.get(rid)
        if entry is None or entry.state == state:
            return
        self._by_state[entry.state].discard(rid)
        self._by_state[state].add(rid)
        entry.state = state

    def get(self, rid: str) -> ReplicaEntry | None:
        """The replica with this id."""
        return self._by_id.get(rid)

    def service(self, name: str) -> list[ReplicaEntry]:
        """A service's replicas by index."""
        reps = self._by_service.get(name, {})
        return [reps[i] for i in sorted(reps)]

    def by_port(self, port: int) -> ReplicaEntry | None:
        """The replica holding ``port``."""
        return self._by_port.get(port)

    def on_node(self, node: str) -> frozenset[str]:
        """Ids of the replicas on ``node``."""
        return frozenset(self._by_node.get(node, ()))

    def in_state(self, *states: ReplicaState) -> frozenset[str]:
        """Ids of the replicas in any of ``states``."""
        if len(states) == 1:
            return frozenset(self._by_state[states[0]])
        out: set[str] = set()
        for s in states:
            out |= self._by_state[s]
        return frozenset(out)

    def count(self, state: ReplicaState) -> int:
        """How many replicas are in ``state`` (O(1))."""
        return len(self._by_state[state])

    def services_on(self, node: str) -> frozenset[str]:
        """Services with a replica on ``node`` (for affinity rules)."""
        return frozenset(self._by_id[r].service for r in self._by_node.get(node, ()))

    def ids(self) -> Iterable[str]:
        """Every registered id."""
        return self._by_id.keys()
