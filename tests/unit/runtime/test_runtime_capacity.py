"""Capacity discovery: psutil numbers, NVML when present, never an error."""

from __future__ import annotations

from pathlib import Path

import psutil

from deploy_code.runtime import LocalBackend, discover_capacity
from deploy_code.runtime.local.capacity import discover_gpus


def test_capacity_matches_psutil(tmp_path: Path) -> None:
    cap = discover_capacity(str(tmp_path))
    assert cap.total.cpu_cores == psutil.cpu_count(logical=True)
    assert cap.total.memory_mb == psutil.virtual_memory().total // 2**20
    assert abs(cap.total.storage_gb - psutil.disk_usage(str(tmp_path)).total / 2**30) < 1e-6
    assert cap.total.gpu_count == len(cap.gpus)
    assert cap.source in ("psutil", "psutil+nvml")


def test_storage_path_need_not_exist(tmp_path: Path) -> None:
    cap = discover_capacity(str(tmp_path / "not" / "yet" / "state"))
    assert cap.total.storage_gb > 0


def test_gpus_agree_with_nvml_when_present(tmp_path: Path) -> None:
    gpus = discover_gpus()
    cap = discover_capacity(str(tmp_path))
    if gpus is None:
        assert cap.source == "psutil" and cap.gpus == ()
        return
    assert cap.source == "psutil+nvml"
    assert [g.index for g in cap.gpus] == list(range(len(gpus)))
    for gpu in cap.gpus:
        assert gpu.name and gpu.uuid.startswith("GPU-") and gpu.memory_mb > 0


async def test_backend_capacity_is_discovery(tmp_path: Path) -> None:
    backend = LocalBackend()
    try:
        assert backend.capacity(str(tmp_path)).total.cpu_cores == psutil.cpu_count(logical=True)
    finally:
        await backend.aclose()
