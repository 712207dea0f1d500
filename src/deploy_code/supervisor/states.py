"""The replica state machine as one table. Nothing assigns a state without :func:`check_transition`."""

from __future__ import annotations

from collections.abc import Mapping

from deploy_code.errors import ErrorCode, SupervisionError
from deploy_code.events import ReplicaState as S

__all__ = ["TRANSITIONS", "check_transition"]

TRANSITIONS: Mapping[S, frozenset[S]] = {
    S.PENDING: frozenset({S.STARTING, S.BACKOFF, S.STOPPED, S.FAILED}),  # BACKOFF: the spawn failed
    # STARTING -> BACKOFF: the process exited (or failed liveness/startup) before it was ready.
    S.STARTING: frozenset({S.READY, S.BACKOFF, S.STOPPING, S.STOPPED, S.COMPLETED, S.FAILED}),
    S.READY: frozenset({S.DEGRADED, S.BACKOFF, S.STOPPING, S.STOPPED, S.COMPLETED, S.FAILED}),
    S.DEGRADED: frozenset({S.READY, S.BACKOFF, S.STOPPING, S.STOPPED, S.COMPLETED, S.FAILED}),
    S.BACKOFF: frozenset({S.STARTING, S.STOPPED, S.FAILED}),
    S.STOPPING: frozenset({S.STOPPED, S.FAILED}),
    # A stopped, completed or failed replica can be started again by `restart`.
    S.STOPPED: frozenset({S.STARTING, S.PENDING}),
    S.COMPLETED: frozenset({S.STARTING, S.PENDING}),
    S.FAILED: frozenset({S.STARTING, S.PENDING}),
}


def check_transition(old: S, new: S, *, who: str) -> None:
    """Raise S005 unless ``old -> new`` is in :data:`TRANSITIONS`.

    Args:
        old: the current state.
        new: the state asked for.
        who: the replica, for the message.

    Raises:
        SupervisionError: S005 with both states named.
    """
    if new not in TRANSITIONS[old]:
        raise SupervisionError(
            f"illegal state transition for {who}: {old} -> {new}",
            code=ErrorCode.S005,
            hint="this is a bug in deploy-code; please report it with the events of this replica",
        )
