"""What a measurement ran on: the facts a tuning record keeps about its machine.

    hardware_of(target)  ->  {"cpu_model": "AMD EPYC 7763 64-Core Processor",
                              "llvm_cpu": "znver3", "features": ["avx2", ...],
                              "cores": 16, "tex": "0.1.0"}

For a CUDA target the GPU's `gpu_name` and `compute_capability` ("8.0") are
added when a GPU is present. A record is *from this machine* when its CPU
model is this machine's; records written before these facts were kept have
none and count as from this machine (nothing says otherwise).
"""
from __future__ import annotations

import os
import platform
import sys
from functools import lru_cache

import tex
from autotune.targets import kind_of


@lru_cache(maxsize=1)
def host_cpu_model() -> str:
    """The CPU's marketing name, from /proc/cpuinfo's "model name" (Linux), else
    `platform.processor()`, else the machine's architecture."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def hardware_of(target) -> dict:
    """The facts about this machine and `target` (a `tex.target.Target`) to record."""
    cpu_target = target.host if target.host is not None else target
    facts = {"cpu_model": host_cpu_model(), "llvm_cpu": cpu_target.cpu,
             "features": sorted(cpu_target.enabled_features),
             "cores": os.cpu_count() or 1, "tex": tex.__version__}
    if kind_of(target).on_device:
        facts.update(_gpu_facts())
    return facts


@lru_cache(maxsize=1)
def _gpu_facts() -> dict:
    """{"gpu_name", "compute_capability"} of the first CUDA device, or {} without one."""
    if sys.platform == "linux" and not os.path.exists("/dev/nvidiactl"):
        return {}
    try:
        from cuda.bindings import driver
        if driver.cuInit(0)[0] != driver.CUresult.CUDA_SUCCESS:
            return {}
        _, device = driver.cuDeviceGet(0)
        _, name = driver.cuDeviceGetName(64, device)
        attrs = driver.CUdevice_attribute
        _, major = driver.cuDeviceGetAttribute(
            attrs.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, device)
        _, minor = driver.cuDeviceGetAttribute(
            attrs.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, device)
    except Exception:  # no cuda-python, no driver, no device
        return {}
    return {"gpu_name": name.split(b"\0", 1)[0].decode(errors="replace"),
            "compute_capability": f"{major}.{minor}"}


def from_this_machine(record) -> bool:
    """Whether `record` was measured on a CPU of this machine's model (True when the
    record does not say)."""
    model = record.hardware.get("cpu_model")
    return model is None or model == host_cpu_model()


def matching_records(records, match_hardware: bool = True) -> tuple[list, list]:
    """(records to use, records left out as measured on other hardware).

    With `match_hardware` False every record is used."""
    if not match_hardware:
        return list(records), []
    used, other = [], []
    for r in records:
        (used if from_this_machine(r) else other).append(r)
    return used, other


def other_hardware_note(other) -> str:
    """A sentence naming the CPU models of records left out, or '' when there are none."""
    if not other:
        return ""
    models = sorted({r.hardware.get("cpu_model", "?") for r in other})
    return (f"{len(other)} records measured on other hardware ({'; '.join(models)}) are "
            f"left out; this machine is {host_cpu_model()!r}")
