"""Shared by the in-process orchestrator tests: run one, wait on a condition, GET through a port."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from deploy_code.config import Project
from deploy_code.runtime import LocalBackend
from deploy_code.state import StateStore
from deploy_code.supervisor import Orchestrator


@contextlib.asynccontextmanager
async def running(
    project: Project, tmp_path: Path, **kwargs: Any
) -> AsyncIterator[tuple[Orchestrator, StateStore]]:
    """An orchestrator running ``project`` (state in ``tmp_path/state.db``); brought down on exit, its
    backend and store closed, whatever the test did."""
    store = StateStore(tmp_path / "state.db")
    backend = LocalBackend()
    orch = Orchestrator(project, backend=backend, store=store, **kwargs)
    run = asyncio.ensure_future(orch.run())
    try:
        yield orch, store
    finally:
        orch.request_down(2.0)
        await asyncio.wait_for(run, 30)
        await backend.aclose()
        store.close()


async def until(cond: Callable[[], bool], timeout: float, step: float = 0.02) -> None:
    """Poll ``cond`` until it holds (a bounded wait on plain state that has no event to await)."""
    async with asyncio.timeout(timeout):
        while not cond():  # noqa: ASYNC110 - replica states and counters, polled in a bounded wait
            await asyncio.sleep(step)


async def http_get(port: int) -> str:
    """``GET /`` over HTTP/1.0 on 127.0.0.1:``port``; the body (the status must be 200)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        data = await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200"), data
    return body.decode()
