"""Scheduling: (Project, DependencyGraph, capacity) -> Plan. Pure: no I/O, ``now`` is a parameter.

``check`` reports every problem that planning would hit (cycles, requests larger than the machine) as
diagnostics with file locations; ``plan`` books resources and ports for every replica, all or nothing.
"""

from deploy_code.scheduling.plan import (
    Placement,
    Plan,
    check,
    effective_capacity,
    local_cluster,
    make_graph,
    place,
    plan,
    release_plan,
)

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
