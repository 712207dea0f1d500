"""Dependency graph: ``service -> {dependency: condition}`` in, :class:`DependencyGraph` out.

Place in the flow: ``config`` produces the model; the caller hands this package plain data
(so ``graph`` never imports ``config``); ``scheduling`` and ``supervisor`` read the waves, the
start/stop orders, the closure for ``up SERVICE...`` and the "who depends on me" sets for
restarts and rollbacks.

Pure: no I/O, no asyncio, no clock. Building is O(V + E), cycle detection is iterative (no
recursion limit), and the graph is immutable once built.
"""

from deploy_code.graph.dag import DependencyGraph, ServiceNotFoundError, UnknownDependencyError, build
from deploy_code.graph.waves import CycleError

__all__ = ["CycleError", "DependencyGraph", "ServiceNotFoundError", "UnknownDependencyError", "build"]
