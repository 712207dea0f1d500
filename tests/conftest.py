"""Fixtures shared by every test directory."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import ZERO, Deployment, books_at_close, processes_marked


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    """A project directory driven through the real CLI; every process it started is gone afterwards."""
    dep = Deployment(tmp_path)
    try:
        yield dep
    finally:
        leftovers = dep.cleanup()
        time.sleep(0.05)
        assert not processes_marked(dep.state_dir), f"processes survived cleanup: {leftovers}"
        books = books_at_close(dep.state_dir)
        if books is not None:  # the last orchestrator's ledger and ports balanced to zero when it ended
            assert books == {"owners": 0, "allocated": ZERO, "ports_in_use": 0}, books
