"""Fixtures shared by every test directory."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import Deployment, processes_marked


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
