"""Kahn topological generations and cycle extraction over an index-based adjacency.

Everything here works on integer node indices (position in the input order) so that the
hot loops touch lists, not dicts of strings. :mod:`deploy_code.graph.dag` translates names.
"""

from __future__ import annotations

from collections.abc import Sequence

from deploy_code.errors import ConfigError, ErrorCode

__all__ = ["CycleError", "find_cycle", "generations"]


class CycleError(ConfigError):
    """The dependency graph has a cycle (E002).

    Attributes:
        path: one cycle, first node repeated at the end, following "depends on" edges:
            ``("a", "b", "c", "a")`` means a depends on b, b on c and c on a.
    """

    def __init__(self, path: Sequence[str]) -> None:
        self.path: tuple[str, ...] = tuple(path)
        shown = " -> ".join(self.path)
        super().__init__(
            f"dependency cycle: {shown}",
            code=ErrorCode.E002,
            hint="remove one of these depends_on entries so the services can be started in order",
        )


def generations(deps: Sequence[Sequence[int]], dependants: Sequence[Sequence[int]]) -> list[int] | None:
    """Assign each node its Kahn generation (wave number) in O(V + E).

    A node's wave is one more than the highest wave among its dependencies; nodes with no
    dependencies are in wave 0. This equals ``networkx.topological_generations``.

    Args:
        deps: ``deps[i]`` lists the indices node ``i`` depends on (no duplicates).
        dependants: the reverse adjacency: ``dependants[j]`` lists the nodes that depend on ``j``.

    Returns:
        ``level[i]`` for every node, or ``None`` when some nodes are on or behind a cycle
        (call :func:`find_cycle` to get one).
    """
    n = len(deps)
    indegree = [len(d) for d in deps]
    level = [0] * n
    # Wave by wave: a node joins the next wave when its last dependency is taken, and that
    # dependency is in the highest wave among them, so the wave number is the level. Per edge
    # this is one decrement and one test (no max over levels).
    wave = [i for i, d in enumerate(indegree) if not d]
    seen = len(wave)
    number = 0
    while wave:
        number += 1
        following: list[int] = []
        for node in wave:
            for dependant in dependants[node]:
                left = indegree[dependant] - 1
                indegree[dependant] = left
                if not left:
                    following.append(dependant)
        for node in following:
            level[node] = number
        seen += len(following)
        wave = following
    if seen != n:
        return None
    return level


def find_cycle(deps: Sequence[Sequence[int]]) -> list[int]:
    """Return one cycle as node indices, first node repeated at the end.

    Iterative depth-first search with an explicit stack (no recursion, so 10,000-node cycles
    are fine). Each node is entered at most once, so this is O(V + E).

    Args:
        deps: ``deps[i]`` lists the indices node ``i`` depends on.

    Returns:
        ``[a, b, ..., a]`` where each node depends on the next.

    Raises:
        ValueError: the graph has no cycle (a caller bug: call it only after
            :func:`generations` returned ``None``).
    """
    n = len(deps)
    white, grey, black = 0, 1, 2
    colour = [white] * n
    for root in range(n):
        if colour[root] != white:
            continue
        # Stack of (node, index of the next dependency to look at); the grey nodes on it are the path.
        stack: list[tuple[int, int]] = [(root, 0)]
        colour[root] = grey
        while stack:
            node, i = stack[-1]
            edges = deps[node]
            if i == len(edges):
                colour[node] = black
                stack.pop()
                continue
            stack[-1] = (node, i + 1)
            nxt = edges[i]
            if colour[nxt] == white:
                colour[nxt] = grey
                stack.append((nxt, 0))
            elif colour[nxt] == grey:
                path = [entry[0] for entry in stack]
                start = path.index(nxt)
                return [*path[start:], nxt]
    raise ValueError("graph has no cycle")
