"""What this machine offers: cores, memory and disk from psutil; GPUs from NVML when its library loads.

Nothing is hard-coded. NVML (``nvidia-ml-py``) is optional: when the package or the driver library is
missing, or NVML fails to initialise, the machine simply has zero GPUs; discovery never raises for that.
"""

from __future__ import annotations

import logging
import os

import psutil

from deploy_code.runtime.backend import Capacity, GpuInfo
from deploy_code.units import Resources

__all__ = ["discover_capacity", "discover_gpus"]

log = logging.getLogger(__name__)


def _existing_ancestor(path: str) -> str:
    """``path`` or its nearest existing parent (the state directory may not exist yet)."""
    path = os.path.abspath(path)
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


# Present wherever the NVIDIA kernel driver is loaded (also inside containers that are given GPUs).
_NVIDIA_DRIVER_PATHS = ("/dev/nvidiactl", "/proc/driver/nvidia/version")


def _text(value: object) -> str:
    """NVML returns bytes in older bindings and str in newer ones."""
    return value.decode() if isinstance(value, bytes) else str(value)


def discover_gpus() -> tuple[GpuInfo, ...] | None:
    """List the GPUs through NVML.

    Returns:
        The GPUs (possibly none), or None when NVML is unavailable.
    """
    if not any(os.path.exists(p) for p in _NVIDIA_DRIVER_PATHS):
        return None  # no NVIDIA driver: skip importing the (large) bindings and loading the library
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # pynvml.NVMLError: no driver library, no driver, insufficient permissions
        log.debug("NVML unavailable: %s", exc)
        return None
    try:
        gpus = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(index)
            gpus.append(
                GpuInfo(
                    index=index,
                    name=_text(pynvml.nvmlDeviceGetName(h)),
                    memory_mb=int(pynvml.nvmlDeviceGetMemoryInfo(h).total) // 2**20,
                    uuid=_text(pynvml.nvmlDeviceGetUUID(h)),
                )
            )
        return tuple(gpus)
    except Exception as exc:  # a device that fails to answer: report NVML as unavailable, not half a list
        log.warning("NVML device query failed: %s", exc)
        return None
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception as exc:
            log.debug("nvmlShutdown failed: %s", exc)


def discover_capacity(storage_path: str) -> Capacity:
    """Discover this machine's capacity.

    Args:
        storage_path: a path on the filesystem whose size is the storage capacity (the state directory);
            it need not exist yet, its nearest existing parent is measured.

    Returns:
        Logical cores, total memory (MiB), total disk (GiB) and GPUs; ``source`` is ``"psutil+nvml"``
        when NVML answered, else ``"psutil"``.
    """
    cores = psutil.cpu_count(logical=True) or os.cpu_count() or 1
    memory_mb = psutil.virtual_memory().total // 2**20
    storage_gb = psutil.disk_usage(_existing_ancestor(storage_path)).total / 2**30
    gpus = discover_gpus()
    total = Resources(
        cpu_cores=float(cores),
        memory_mb=float(memory_mb),
        storage_gb=float(storage_gb),
        gpu_count=len(gpus or ()),
    )
    return Capacity(total=total, gpus=gpus or (), source="psutil" if gpus is None else "psutil+nvml")
