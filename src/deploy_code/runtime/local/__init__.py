"""The local backend: replicas as processes on this machine.

Import it through ``deploy_code.runtime``; the submodules are its implementation.
"""

from deploy_code.runtime.local.backend import LocalBackend
from deploy_code.runtime.local.capacity import discover_capacity
from deploy_code.runtime.local.follow import LogFollower
from deploy_code.runtime.local.handle import ProcessHandle
from deploy_code.runtime.local.logs import LogFile
from deploy_code.runtime.local.net import port_is_free
from deploy_code.runtime.local.procinfo import proc_start_time
from deploy_code.runtime.local.sweep import marked_groups

__all__ = [
    "LocalBackend",
    "LogFile",
    "LogFollower",
    "ProcessHandle",
    "discover_capacity",
    "marked_groups",
    "port_is_free",
    "proc_start_time",
]
