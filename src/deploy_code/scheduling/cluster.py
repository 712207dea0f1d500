"""A simulated cluster: nodes with capacity, labels, free capacity and the services placed on them.

Capacity is tracked in integer units so that reserving and releasing never drifts: CPU in
millicores, memory in MiB, storage in MiB and GPUs as a count. Requests are rounded up into these
units and node capacity is rounded down, so an integer fit is never a fractional over-commit.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import NewType

from deploy_code.units import Resources

__all__ = ["DIMENSIONS", "NodeId", "SimCluster", "SimNode", "Vector", "from_units", "to_units"]

NodeId = NewType("NodeId", str)
"""The identifier of a node in a :class:`SimCluster`."""

Vector = tuple[int, int, int, int]
"""A resource vector in integer units: (millicores, memory MiB, storage MiB, GPUs)."""

DIMENSIONS: tuple[str, str, str, str] = ("cpu_cores", "memory_mb", "storage_gb", "gpu_count")
"""The :class:`Resources` field each position of a :data:`Vector` stands for."""

_SCALE = (1000, 1, 1024, 1)
_EPS = 1e-9


def to_units(res: Resources, *, round_up: bool) -> Vector:
    """Convert ``res`` to integer units.

    Args:
        res: the resource vector.
        round_up: round each dimension up (requests) or down (capacity).

    Returns:
        The integer vector (millicores, MiB, storage MiB, GPUs).

    Raises:
        ValueError: a dimension is negative.
    """
    values = (res.cpu_cores, res.memory_mb, res.storage_gb, float(res.gpu_count))
    out: list[int] = []
    for name, value, scale in zip(DIMENSIONS, values, _SCALE, strict=True):
        if value < 0:
            raise ValueError(f"{name} must not be negative: {value!r}")
        scaled = value * scale
        out.append(math.ceil(scaled - _EPS) if round_up else math.floor(scaled + _EPS))
    return (out[0], out[1], out[2], out[3])


def from_units(vec: Vector) -> Resources:
    """Convert an integer vector back to :class:`Resources`.

    Args:
        vec: the integer vector.

    Returns:
        The equivalent resources.
    """
    return Resources(vec[0] / 1000, float(vec[1]), vec[2] / 1024, vec[3])


@dataclass(eq=False, slots=True)
class SimNode:
    """One node: its capacity, labels, free capacity and the services placed on it.

    Args:
        id: the node identifier.
        capacity: the total capacity.
        labels: node labels, e.g. ``{"zone": "eu"}``.
    """

    id: NodeId
    capacity: Resources
    labels: dict[str, str] = field(default_factory=dict)
    cap: Vector = field(init=False)
    free: list[int] = field(init=False)
    services: dict[str, int] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.cap = to_units(self.capacity, round_up=False)
        self.free = list(self.cap)

    @property
    def used(self) -> Vector:
        """Reserved capacity in integer units."""
        c, f = self.cap, self.free
        return (c[0] - f[0], c[1] - f[1], c[2] - f[2], c[3] - f[3])

    @property
    def free_resources(self) -> Resources:
        """Free capacity as :class:`Resources`."""
        f = self.free
        return from_units((f[0], f[1], f[2], f[3]))

    def fits(self, req: Vector) -> bool:
        """True when ``req`` fits the free capacity.

        Args:
            req: the request in integer units.

        Returns:
            Whether every dimension fits.
        """
        f = self.free
        return req[0] <= f[0] and req[1] <= f[1] and req[2] <= f[2] and req[3] <= f[3]

    def reserve(self, req: Vector, service: str) -> None:
        """Take ``req`` from the free capacity and record one replica of ``service``.

        Args:
            req: the request in integer units.
            service: the service key (``owner/service``).

        Raises:
            ValueError: ``req`` does not fit (the node is never over-committed).
        """
        if not self.fits(req):
            raise ValueError(f"{req} does not fit the free capacity {self.free} of node {self.id}")
        f = self.free
        f[0] -= req[0]
        f[1] -= req[1]
        f[2] -= req[2]
        f[3] -= req[3]
        self.services[service] = self.services.get(service, 0) + 1

    def record(self, service: str) -> None:
        """Record one replica of ``service`` without taking any capacity (constraint-only placement).

        Args:
            service: the service key (``owner/service``).
        """
        self.services[service] = self.services.get(service, 0) + 1

    def forget(self, service: str) -> None:
        """Forget one replica of ``service`` without giving capacity back (undoes :meth:`record`).

        Args:
            service: the service key, as recorded.

        Raises:
            ValueError: no replica of ``service`` is on this node.
        """
        count = self.services.get(service, 0)
        if count <= 0:
            raise ValueError(f"no replica of {service} on node {self.id}")
        if count == 1:
            del self.services[service]
        else:
            self.services[service] = count - 1

    def release(self, req: Vector, service: str) -> None:
        """Give ``req`` back and forget one replica of ``service``.

        Args:
            req: the request in integer units, as reserved.
            service: the service key, as reserved.

        Raises:
            ValueError: no replica of ``service`` is on this node, or the release exceeds capacity.
        """
        count = self.services.get(service, 0)
        if count <= 0:
            raise ValueError(f"no replica of {service} on node {self.id}")
        f, c = self.free, self.cap
        if any(f[i] + req[i] > c[i] for i in range(4)):
            raise ValueError(f"releasing {req} on node {self.id} would exceed its capacity")
        for i in range(4):
            f[i] += req[i]
        if count == 1:
            del self.services[service]
        else:
            self.services[service] = count - 1


# (weight, cpu cores, memory MiB, storage GiB, gpus, kind)
_SHAPES: tuple[tuple[int, float, float, float, int, str], ...] = (
    (30, 4, 8192, 100, 0, "small"),
    (35, 8, 32768, 250, 0, "medium"),
    (20, 16, 65536, 500, 0, "large"),
    (10, 32, 131072, 1000, 0, "xlarge"),
    (5, 32, 262144, 2000, 4, "gpu"),
)
ZONES: tuple[str, ...] = ("us-east", "us-west", "eu")


class SimCluster:
    """An ordered collection of :class:`SimNode`.

    Args:
        nodes: the nodes; identifiers must be unique.

    Raises:
        ValueError: two nodes share an identifier.
    """

    def __init__(self, nodes: Iterable[SimNode]) -> None:
        self.nodes: list[SimNode] = list(nodes)
        self._by_id: dict[NodeId, SimNode] = {}
        for node in self.nodes:
            if node.id in self._by_id:
                raise ValueError(f"duplicate node id {node.id}")
            self._by_id[node.id] = node

    @classmethod
    def generate(
        cls, n_nodes: int, seed: int, *, labels: Mapping[str, tuple[str, ...]] | None = None
    ) -> SimCluster:
        """A heterogeneous cluster: five node shapes, a ``zone`` label and a ``disk`` label.

        Args:
            n_nodes: how many nodes.
            seed: the random seed; the same seed gives the same cluster.
            labels: extra label keys with their possible values, drawn uniformly per node.

        Returns:
            The cluster, nodes named ``node-00000`` upwards.

        Raises:
            ValueError: ``n_nodes`` is negative.
        """
        if n_nodes < 0:
            raise ValueError(f"n_nodes must not be negative: {n_nodes}")
        rng = random.Random(seed)
        weights = [s[0] for s in _SHAPES]
        extra = dict(labels or {})
        nodes: list[SimNode] = []
        for i in range(n_nodes):
            _, cpu, mem, disk, gpu, kind = rng.choices(_SHAPES, weights)[0]
            node_labels = {"zone": rng.choice(ZONES), "disk": rng.choice(("ssd", "hdd")), "kind": kind}
            for key, values in extra.items():
                node_labels[key] = rng.choice(values)
            cap = Resources(cpu_cores=cpu, memory_mb=mem, storage_gb=disk, gpu_count=gpu)
            nodes.append(SimNode(NodeId(f"node-{i:05d}"), cap, node_labels))
        return cls(nodes)

    def __len__(self) -> int:
        return len(self.nodes)

    def __iter__(self) -> Iterator[SimNode]:
        return iter(self.nodes)

    def node(self, node_id: NodeId) -> SimNode:
        """The node called ``node_id``.

        Args:
            node_id: the identifier.

        Returns:
            The node.

        Raises:
            KeyError: no such node.
        """
        return self._by_id[node_id]

    def total_capacity(self) -> Vector:
        """Sum of all node capacities in integer units."""
        tot = [0, 0, 0, 0]
        for n in self.nodes:
            for i in range(4):
                tot[i] += n.cap[i]
        return (tot[0], tot[1], tot[2], tot[3])
