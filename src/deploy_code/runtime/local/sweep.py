"""Find process groups that carry a marker variable in their environment.

The supervisor marks every replica it spawns (``DEPLOY_CODE_STATE_DIR=<state dir>``). A replica spawned
just before the orchestrator was killed, before its record reached the state store, is marked but
unrecorded: the next orchestrator finds it here and stops it, so nothing runs unmanaged.
"""

from __future__ import annotations

import os

from deploy_code.runtime.backend import ProcessIdentity
from deploy_code.runtime.local.procinfo import read_proc_stat

__all__ = ["marked_groups"]

_MAX_ENVIRON_BYTES = 1 << 20  # a marker sits among the first variables we set; never read more


def marked_groups(key: str, value: str) -> list[ProcessIdentity]:
    """Process-group leaders whose environment holds ``key=value``. Blocking: call off the loop.

    Only group leaders are returned: every replica leads its own group, and its children (which
    inherit the marker) go with it when the group is stopped.
    """
    needle = f"{key}={value}".encode()
    me = os.getpid()
    found: list[ProcessIdentity] = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        if pid == me:
            continue
        st = read_proc_stat(pid)
        if st is None or st.pgid != pid or st.state == "Z":
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read(_MAX_ENVIRON_BYTES)
        except OSError:  # gone, or not ours to read
            continue
        if needle in env.split(b"\0"):
            found.append(ProcessIdentity(pid, st.pgid, st.start_time))
    return found
