"""Unit tests for deploy_code.graph.select."""

from __future__ import annotations

from deploy_code.graph.select import reach


def test_reach_includes_starts_and_follows_edges() -> None:
    adj = [[1], [2], [], [0]]
    assert reach(adj, [0]) == {0, 1, 2}
    assert reach(adj, [3]) == {0, 1, 2, 3}
    assert reach(adj, []) == set()


def test_reach_handles_cycles_and_deep_chains() -> None:
    assert reach([[1], [0]], [0]) == {0, 1}
    n = 50_000
    chain = [[i + 1] for i in range(n - 1)] + [[]]
    assert len(reach(chain, [0])) == n
