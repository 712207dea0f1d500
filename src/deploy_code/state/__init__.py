"""Embedded state: the SQLite store in the state directory.

Inputs: replica records written by the supervisor before it relies on them, and event records.
Outputs: what a restarted orchestrator needs to re-adopt its replicas, and the bounded event history.
Never imports ``supervisor``.
"""

from deploy_code.state.lockfile import StateDirLock, prepare_state_dir
from deploy_code.state.store import EVENT_RETENTION, ReplicaRecord, StateStore

__all__ = ["EVENT_RETENTION", "ReplicaRecord", "StateDirLock", "StateStore", "prepare_state_dir"]
