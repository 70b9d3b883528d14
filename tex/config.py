"""Every environment variable tex reads, in one place.

| variable                 | default      | effect                                               |
|--------------------------|--------------|------------------------------------------------------|
| TEX_VERIFY               | 0            | 1: run the loop-IR verifier after every pass         |
| TEX_PRINT_AFTER          | (none)       | comma-separated pass names (or `all`): print the     |
|                          |              | program after each of them to stderr                 |
| TEX_FUZZ_EXAMPLES        | 40           | how many random programs the fuzzer test tries       |
| TEX_FUZZ_SEED            | 0            | the fuzzer's first seed                              |
| TEX_CACHE_DIR            | ~/.cache/tex | where compiled kernels are kept between processes    |
|                          |              | (`$XDG_CACHE_HOME/tex` when XDG_CACHE_HOME is set);  |
|                          |              | `off` or empty: no disk cache                        |
| TEX_CACHE_MAX_MB         | 1024         | the disk cache's size bound in megabytes (fractions  |
|                          |              | allowed); least recently used entries are deleted    |
|                          |              | beyond it (`tex/disk_cache.py`); 0: no bound         |
| TEX_CACHE_MEMORY_KERNELS | 256          | compiled kernels each in-memory cache keeps (by      |
|                          |              | fingerprint, by program); the least recently used    |
|                          |              | are dropped beyond it, and their machine code freed  |
|                          |              | once no kernel uses it (`tex/runtime/cache.py`)      |
| TEX_SIMULATOR_LIBRARIES  | 32           | compiled CUDA simulators kept loaded (at least 1);   |
|                          |              | the least recently used are unloaded beyond it       |
|                          |              | (`tex/runtime/cuda_simulator.py`)                    |
| TEX_LLVM_CLAIMS          | 1            | 0: strip what tex's LLVM IR promises (`nsw`, `nuw`,  |
|                          |              | `inbounds`, `noalias`, `!range`..., alignment beyond |
|                          |              | a byte: `llvm_jit.CLAIM_TOKENS`) before compiling,   |
|                          |              | to check that no result depends on a promise broken  |
| TEX_BUILD_TIMEOUT        | (none)       | seconds: LLVM builds run in a helper process and one |
|                          |              | that takes longer is stopped with a BuildError       |
|                          |              | (`tex/codegen/build_worker.py`); unset: in process   |
| TEX_NUM_THREADS          | usable CPUs  | threads that run a parallel loop, the caller         |
|                          |              | included (1: no worker threads); read once, when the |
|                          |              | thread pool is compiled (the first parallel kernel)  |

Each is read when it is used, so a change takes effect at the next build
(TEX_NUM_THREADS excepted).
"""
from __future__ import annotations

import math
import os
from pathlib import Path

from tex.errors import ConfigError


def verify_enabled() -> bool:
    return os.environ.get("TEX_VERIFY", "0") not in ("", "0")


def print_after() -> set[str]:
    value = os.environ.get("TEX_PRINT_AFTER", "")
    return {name.strip() for name in value.split(",") if name.strip()}


def fuzz_examples() -> int:
    return int(os.environ.get("TEX_FUZZ_EXAMPLES", "40"))


def fuzz_seed() -> int:
    return int(os.environ.get("TEX_FUZZ_SEED", "0"))


def cache_dir() -> Path | None:
    """The disk cache's directory (it may not exist yet), or None when it is turned off."""
    value = os.environ.get("TEX_CACHE_DIR")
    if value is None:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
        return Path(base).expanduser() / "tex"
    if value.strip() == "" or value.strip().lower() == "off":
        return None
    return Path(value).expanduser()


def cache_max_bytes() -> int | None:
    """TEX_CACHE_MAX_MB (default 1024) in bytes, or None when it is 0 (no bound)."""
    value = os.environ.get("TEX_CACHE_MAX_MB", "").strip() or "1024"
    try:
        megabytes = float(value)
    except ValueError:
        megabytes = math.nan
    if not math.isfinite(megabytes):
        raise ConfigError(f"TEX_CACHE_MAX_MB is a number of megabytes, got {value!r}")
    return None if megabytes <= 0 else int(megabytes * 2**20)


def cache_memory_kernels() -> int:
    """TEX_CACHE_MEMORY_KERNELS (default 256): how many compiled kernels each in-memory
    cache keeps (0: none)."""
    value = os.environ.get("TEX_CACHE_MEMORY_KERNELS", "").strip() or "256"
    try:
        count = int(value)
    except ValueError:
        count = -1
    if count < 0:
        raise ConfigError(f"TEX_CACHE_MEMORY_KERNELS is a whole number of kernels (0 or "
                          f"more), got {value!r}")
    return count


def simulator_libraries() -> int:
    """TEX_SIMULATOR_LIBRARIES (default 32): how many compiled CUDA simulators stay loaded
    (at least 1: the one running)."""
    value = os.environ.get("TEX_SIMULATOR_LIBRARIES", "").strip() or "32"
    try:
        count = int(value)
    except ValueError:
        count = 0
    if count < 1:
        raise ConfigError(f"TEX_SIMULATOR_LIBRARIES is a whole number of libraries (1 or "
                          f"more), got {value!r}")
    return count


def llvm_claims() -> bool:
    """False when TEX_LLVM_CLAIMS is 0: compile without nsw/inbounds/noalias/alignment..."""
    value = os.environ.get("TEX_LLVM_CLAIMS", "1").strip()
    if value not in ("0", "1"):
        raise ConfigError(f"TEX_LLVM_CLAIMS is 0 or 1, got {value!r}")
    return value == "1"


def build_timeout() -> float | None:
    """TEX_BUILD_TIMEOUT in seconds (> 0), or None when it is unset or empty."""
    value = os.environ.get("TEX_BUILD_TIMEOUT", "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not (seconds > 0 and math.isfinite(seconds)):
        raise ConfigError(f"TEX_BUILD_TIMEOUT is a positive number of seconds, got {value!r}")
    return seconds


def num_threads() -> int:
    """TEX_NUM_THREADS (at least 1), else the number of CPUs this process may run on."""
    value = os.environ.get("TEX_NUM_THREADS", "").strip()
    if value:
        try:
            return max(1, int(value))
        except ValueError:
            raise ConfigError(f"TEX_NUM_THREADS is a whole number of threads, got "
                              f"{value!r}") from None
    return len(os.sched_getaffinity(0))
