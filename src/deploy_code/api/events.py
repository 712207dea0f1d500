"""``GET /v1/events?follow=true``: stored events as NDJSON, then new ones as they are stored.

The store is the single source: each follower registers a tiny sink on the orchestrator that only
*wakes* it, then reads the rows after the last id it sent (the store flushes its write queue before a
read, so a woken reader always finds the event that woke it). Nothing is buffered per client beyond
one read of at most :data:`BATCH` rows, and a slow client simply reads the table later; rows trimmed
by the store's retention in the meantime are skipped, as they would be for ``deploy-code events``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from deploy_code.events import Event
from deploy_code.supervisor import Orchestrator

__all__ = ["BATCH", "NDJSON", "follow_events"]

NDJSON = "application/x-ndjson"
BATCH = 1_000  # rows per store read while catching up


class _Wake:
    """An EventSink that only records "something was published" (never blocks, holds nothing)."""

    def __init__(self) -> None:
        self.flag = asyncio.Event()

    def publish(self, event: Event) -> None:
        self.flag.set()


async def _woken_or_finished(wake: _Wake, orch: Orchestrator) -> bool:
    """Wait for a new event (True) or for the orchestrator to finish (False)."""
    if wake.flag.is_set():
        return True
    async with asyncio.TaskGroup() as tg:
        woken = tg.create_task(wake.flag.wait())
        finished = tg.create_task(orch.wait_finished())
        await asyncio.wait({woken, finished}, return_when=asyncio.FIRST_COMPLETED)
        got = woken.done()
        woken.cancel()
        finished.cancel()
    return got


async def follow_events(
    orch: Orchestrator, limit: int, service: str | None, kind: str | None, after_id: int | None
) -> AsyncIterator[str]:
    """Yield NDJSON lines: the stored events (as ``GET /v1/events`` would list them), then new ones.

    Ends when the orchestrator has finished, or when the client goes away (the response is cancelled).
    """
    wake = _Wake()
    orch.sinks.append(wake)
    try:
        rows = await asyncio.to_thread(
            orch.store.events, limit=limit, service=service, kind=kind, after_id=after_id
        )
        last = after_id or 0
        while True:
            for row in rows:
                last = max(last, row.id)
                yield json.dumps(row.to_dict(), default=str) + "\n"
            if len(rows) < BATCH:
                if not await _woken_or_finished(wake, orch):
                    return
                wake.flag.clear()  # before the read: an event stored after it wakes us again
            rows = await asyncio.to_thread(
                orch.store.events, limit=BATCH, service=service, kind=kind, after_id=last
            )
    finally:
        orch.sinks.remove(wake)
