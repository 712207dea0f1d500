"""Fixtures for the runtime integration tests: a LocalBackend that kills whatever a test left running."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator

import pytest

from deploy_code.runtime import LocalBackend


@pytest.fixture
async def backend() -> AsyncIterator[LocalBackend]:
    b = LocalBackend(log_max_bytes=2**20, log_backups=2)
    try:
        yield b
    finally:
        for handle in list(b._handles.values()):
            if not handle.exited:
                handle.signal_group(signal.SIGKILL)
                async with asyncio.timeout(10):
                    await handle.wait()
            handle.close()
        await b.aclose()
