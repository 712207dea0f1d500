"""Unit tests for deploy_code.graph.waves: index-level Kahn generations and cycle search."""

from __future__ import annotations

import pytest

from deploy_code.graph.waves import find_cycle, generations


def _reverse(deps: list[list[int]]) -> list[list[int]]:
    rev: list[list[int]] = [[] for _ in deps]
    for i, row in enumerate(deps):
        for j in row:
            rev[j].append(i)
    return rev


def test_generation_is_longest_dependency_chain() -> None:
    # 0 <- 1 <- 2, and 3 depends on 0 and 2: its wave is 3, not 1.
    deps = [[], [0], [1], [0, 2]]
    assert generations(deps, _reverse(deps)) == [0, 1, 2, 3]


def test_generations_none_on_cycle() -> None:
    deps = [[1], [0], []]
    assert generations(deps, _reverse(deps)) is None


def test_find_cycle_skips_acyclic_part() -> None:
    deps = [[1], [2], [3], [1], []]
    assert find_cycle(deps) == [1, 2, 3, 1]


def test_find_cycle_after_dead_end_branch() -> None:
    # 0 depends on 4 (a dead end) first, then on 1, which is in a cycle with 2.
    deps = [[4, 1], [2], [1], [], []]
    assert find_cycle(deps) == [1, 2, 1]


def test_find_cycle_raises_on_dag() -> None:
    with pytest.raises(ValueError, match="no cycle"):
        find_cycle([[], [0]])
