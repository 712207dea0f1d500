"""One running deployment with a loopback TCP listener, shared by a test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.integration.api.support import ApiDeployment, finish, start


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiDeployment]:
    """``up --detach`` once per module; everything it started is gone afterwards."""
    running = start(tmp_path_factory.mktemp("api"))
    try:
        yield running
    finally:
        finish(running.dep)
