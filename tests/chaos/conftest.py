"""Chaos suite fixtures: the ``chaos`` marker, the figures every scenario records (written to
``test-artifacts/chaos.json`` and printed at the end), and a deployment whose state file is checked.

Short by default (the whole suite in about a minute on two cores); ``DEPLOY_CODE_CHAOS_LONG=1`` runs
more kills for longer. ``DEPLOY_CODE_CHAOS_SEED=N`` replays the random choices of an earlier run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.support import ARTIFACT, LONG, SCALE, SEED, integrity
from tests.helpers import Deployment

_FIGURES = pytest.StashKey[dict[str, Any]]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "chaos: fault-injection scenarios (tests/chaos); long with DEPLOY_CODE_CHAOS_LONG=1"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.chaos)
            item.add_marker(pytest.mark.timeout(SCALE.timeout_s))


@pytest.fixture(scope="session")
def figures(pytestconfig: pytest.Config) -> Iterator[dict[str, Any]]:
    """Scenario name -> its figures; written to ``test-artifacts/chaos.json`` when the session ends."""
    found: dict[str, Any] = {}
    pytestconfig.stash[_FIGURES] = found
    yield found
    doc = {"mode": "long" if LONG else "short", "seed": SEED, "at": time.time(), "scenarios": found}
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    ARTIFACT.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\nchaos figures ({doc['mode']}, seed {SEED}) -> {ARTIFACT}\n{json.dumps(found, indent=2)}")


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    found = config.stash.get(_FIGURES, None)
    if not found:
        return
    terminalreporter.section(f"chaos figures (seed {SEED}, {ARTIFACT})")
    for name, values in found.items():
        terminalreporter.write_line(f"{name}: {json.dumps(values)}")


@pytest.fixture
def chaos(deployment: Deployment) -> Iterator[Deployment]:
    """The shared ``deployment`` fixture, plus: its ``state.db`` passes SQLite's integrity check at the end,
    whatever happened (the base fixture then checks that nothing runs and the books balanced)."""
    yield deployment
    deployment.cleanup()
    db = deployment.state_dir / "state.db"
    if db.exists():
        assert integrity(db) == ["ok"]
