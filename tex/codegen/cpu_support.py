"""Whether this process may run a compiled module's instructions: AMX, for now.

Building never needs the instructions (LLVM compiles for any feature set);
running does. Intel AMX has two gates: the CPU must have the units (CPUID
`amx-tile`, `amx-int8`, ...), and Linux hands a process the large tile state
only after it asks, `arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`;
without that, the first tile instruction kills the process with SIGILL.
`unavailable(ll)` looks at the optimised IR of a module for AMX intrinsics,
asks Linux once per process when it finds some, and says what is missing;
`tex.runtime.kernel.Kernel` turns that into a `DeviceError` on every call
instead of running the code.
"""
from __future__ import annotations

import ctypes
import platform
import re
import sys
from functools import lru_cache

import llvmlite.binding as llvm

# AMX intrinsics, `.internal` forms included; the dot products need a feature each.
_AMX_CALL = re.compile(r"@llvm\.x86\.(tdp\w+|tile\w+)")
_FEATURE = {"tdpbf16ps": "amx-bf16", "tdpfp16ps": "amx-fp16"}  # else tdpb[su][su]d: amx-int8
_SYS_ARCH_PRCTL = 158            # x86-64 Linux
_ARCH_REQ_XCOMP_PERM = 0x1023
_XFEATURE_XTILEDATA = 18


def runs_on_this_machine(target) -> bool:
    """Whether code for the CPU target `target` is this machine's kind (x86_64, aarch64)."""
    return target.machine == platform.machine()


def cannot_run(target, ll: str) -> str | None:
    """Why a module compiled for `target`, whose optimised IR is `ll`, cannot run in this
    process (another machine, CPU features this one lacks, AMX it may not use), or None."""
    if not runs_on_this_machine(target):
        return f"it was compiled for {target.machine} ({target.triple}, -mcpu={target.cpu}), " \
            f"and this machine is {platform.machine()}"
    lacking = missing_features(sorted(target.enabled_features))
    if lacking:
        return f"it was compiled for -mcpu={target.cpu} with {', '.join(lacking)}, which " \
            "this CPU lacks"
    return unavailable(ll)


def unavailable(ll: str) -> str | None:
    """Why the module whose optimised IR is `ll` cannot run in this process because of the
    AMX instructions it uses, or None."""
    needed = set()
    for name in _AMX_CALL.findall(ll):
        needed.add("amx-tile")
        if name.startswith("tdp"):
            needed.add(_FEATURE.get(name, "amx-int8"))
    return amx_unavailable(tuple(sorted(needed))) if needed else None


def amx_unavailable(features=("amx-int8", "amx-tile")) -> str | None:
    """Why this process cannot run AMX instructions that need `features`, or None when it
    can (asking Linux for the tile data the first time)."""
    lacking = [f for f in features if f not in _host_features()]
    if lacking:
        return f"it uses Intel AMX ({', '.join(features)}), and this CPU lacks " \
            f"{', '.join(lacking)}"
    return amx_permission()


def missing_features(features) -> list[str]:
    """The CPU features among `features` (LLVM's names: "avx2", "avx512f", ...) that this
    machine's CPU lacks (none when LLVM cannot read the host's features)."""
    host = _host_features()
    return [f for f in features if host and f not in host]


@lru_cache(maxsize=1)
def _host_features() -> frozenset[str]:
    try:
        flat = llvm.get_host_cpu_features().flatten()
    except RuntimeError:  # LLVM cannot read the host's features here
        return frozenset()
    return frozenset(f[1:] for f in flat.split(",") if f.startswith("+"))


@lru_cache(maxsize=1)
def amx_permission() -> str | None:
    """Ask Linux (once per process) to let this process use AMX tile data; None when it
    may, else why not."""
    if sys.platform != "linux" or platform.machine() != "x86_64":
        return f"AMX tile data needs x86-64 Linux to grant it, this is " \
            f"{sys.platform} on {platform.machine()}"
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(_SYS_ARCH_PRCTL, _ARCH_REQ_XCOMP_PERM, _XFEATURE_XTILEDATA) != 0:
        errno = ctypes.get_errno()
        return f"Linux refused this process AMX tile data (arch_prctl(ARCH_REQ_XCOMP_PERM, " \
            f"XFEATURE_XTILEDATA) failed: errno {errno}, the kernel may be older than 5.16)"
    return None
