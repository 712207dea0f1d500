"""The values every check shares: ``ProbeResult``, the ``Check`` protocol and ``CheckTarget``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

__all__ = ["MAX_MESSAGE_CHARS", "Check", "CheckTarget", "ProbeResult", "short"]

# Messages end up in events, the state database and the CLI: keep them one short line.
MAX_MESSAGE_CHARS = 200


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """The outcome of one probe attempt.

    Attributes:
        ok: whether the check passed.
        message: a short, human-readable line (at most ``MAX_MESSAGE_CHARS`` characters).
        latency_s: how long the attempt took, in seconds.
    """

    ok: bool
    message: str
    latency_s: float


class Check(Protocol):
    """One kind of health check, bound to one replica.

    The probe runner calls it once per attempt. It never raises (errors become ``ok=False`` with a
    short message) and it enforces its own timeout, so the runner's bound is only a backstop.
    Cancellation propagates as usual; the check releases what it holds (sockets, child processes).
    """

    async def __call__(self) -> ProbeResult:
        """Run one attempt and report its outcome."""
        ...


@dataclass(frozen=True, slots=True)
class CheckTarget:
    """Where and how a replica runs, as far as its checks need to know.

    Attributes:
        host: where the replica listens (``127.0.0.1`` by default); used unless a check names a host.
        ports: the replica's allocated ports by name.
        env: the replica's environment, for exec checks.
        cwd: the replica's working directory, for exec checks.
    """

    host: str
    ports: Mapping[str, int]
    env: Mapping[str, str]
    cwd: str


def short(text: str) -> str:
    """``text`` on one line, cut to ``MAX_MESSAGE_CHARS`` characters."""
    line = " ".join(text.split())
    if len(line) > MAX_MESSAGE_CHARS:
        line = line[: MAX_MESSAGE_CHARS - 3] + "..."
    return line
