"""Selections over the graph: reachability for ``up SERVICE...`` and stop waves for ``down``.

Index-level helpers used by :class:`deploy_code.graph.dag.DependencyGraph`; they take plain
adjacency lists, so they know nothing about names or errors.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = ["reach"]


def reach(adjacency: Sequence[Sequence[int]], starts: Iterable[int]) -> set[int]:
    """Every node reachable from ``starts`` (the starts included), in O(V + E).

    With the "depends on" adjacency this is the dependency closure; with the reverse
    adjacency it is the set of transitive dependants.

    Args:
        adjacency: ``adjacency[i]`` lists the neighbours of node ``i``.
        starts: node indices to start from.

    Returns:
        The reachable node indices.
    """
    seen: set[int] = set(starts)
    # Explicit stack instead of recursion: deep chains (tens of thousands of nodes) are fine.
    stack = list(seen)
    while stack:
        node = stack.pop()
        for nxt in adjacency[node]:
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return seen
