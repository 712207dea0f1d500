"""Embedded state: the SQLite store in the state directory.

Inputs: replica records written by the supervisor before it relies on them, event records, and snapshots
of the deployed state. Outputs: what a restarted orchestrator needs to re-adopt its replicas, and the
bounded history (events, deployments, snapshots) that the CLI reads through :class:`StateReader`.
Never imports ``supervisor``.
"""

from deploy_code.state.lockfile import StateDirLock, prepare_state_dir
from deploy_code.state.store import (
    EVENT_RETENTION,
    DeploymentRow,
    EventRow,
    ReplicaRecord,
    SnapshotInfo,
    StateReader,
    StateStore,
)

__all__ = [
    "EVENT_RETENTION",
    "DeploymentRow",
    "EventRow",
    "ReplicaRecord",
    "SnapshotInfo",
    "StateDirLock",
    "StateReader",
    "StateStore",
    "prepare_state_dir",
]
