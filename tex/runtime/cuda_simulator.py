"""Running a CUDA kernel on the CPU, to check a GPU schedule where there is no GPU.

    kernel = tex.build(s, [A, B, C], target="cuda")
    kernel.simulate(a, b, c)         # NumPy arrays, destination passing
    c = kernel.simulate(a, b)        # or outputs allocated and returned

`CudaKernel.simulate` compiles the kernel's own CUDA C (`get_source("cuda")`) with
the host's C++ compiler ($CXX, else g++), after the header
`cuda_simulator_include/tex_cuda_simulator.h`, and runs its launches in order
as a call on the device would: the blocks one after another, the threads of a
block as fibers that take turns at each barrier and warp operation. The header
says what that models and what it reports (barriers some threads miss, warp
operations a lane never joins); this module adds one more check: every buffer
sits between guard bytes, and a launch that changes them (a write out of
bounds) is an error. Temporaries start as all-ones bytes (NaN), so a read of
something never written shows in the results.

Errors of a simulated launch are `DeviceError`s naming the kernel, the launch,
its grid and block, and the CUDA source line. It takes and returns NumPy
arrays only, and is slow (a context switch per thread at every barrier): it
is meant for tests and small sizes. Compiled simulators are entries of the
disk cache (`tex.disk_cache`, "simulator-<key>", counted in its size bound like
every entry), keyed by the source, the headers, the compiler and its flags.
At most `config.simulator_libraries()` (TEX_SIMULATOR_LIBRARIES, 32) stay
loaded; beyond that the least recently used is unloaded (`dlclose`), which
happens only between simulations: loading and running both hold `_lock`. The
libraries are built with `-fno-gnu-unique`, without which a C++ library may
never leave memory.
"""
from __future__ import annotations

import _ctypes
import collections
import ctypes
import functools
import hashlib
import math
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import numpy as np

from tex import config, disk_cache
from tex.arith import evaluate
from tex.errors import ArgumentError, BuildError, DeviceError

INCLUDE_DIR = Path(__file__).with_name("cuda_simulator_include")
_HEADER = INCLUDE_DIR / "tex_cuda_simulator.h"
_FLAGS = ("-std=c++20", "-O1", "-w", "-fPIC", "-shared", "-fno-strict-aliasing",
          "-fno-gnu-unique")
_GUARD = 256        # bytes of guard before and after each buffer (also its alignment)
_GUARD_BYTE = 0xA5
_UNSET_BYTE = 0xFF  # what a temporary holds before a launch writes it

#: key -> loaded simulator library, least recently used first (only under `_lock`)
_libraries: collections.OrderedDict[str, ctypes.CDLL] = collections.OrderedDict()
#: One simulation at a time (the header's scheduler is global state), and the loaded
#: libraries with it: none is unloaded while a launch runs.
_lock = threading.Lock()


def compiler() -> str | None:
    """The C++ compiler the simulator uses ($CXX, else g++), or None if there is none."""
    return shutil.which(os.environ.get("CXX", "g++"))


def run(name: str, module, params: list, args: list, sizes: dict, launches: list,
        seed: int = 0):
    """Run the `launches` (each (CudaLaunch, grid, block)) of kernel `name`'s CudaModule
    `module` on host copies of `args` (checked `Arg`s of its `params`, in order; `sizes`
    the size variables' values, {Var: int}), then copy the outputs back. `seed` 0 runs
    blocks and threads in index order; another seed shuffles both (see the header)."""
    if not isinstance(seed, int) or not 0 <= seed < 2 ** 32:
        raise ArgumentError(f"simulate: seed must be an int in [0, 2**32), got {seed!r}")
    for p, arg in zip(params, args):
        if arg.host is None:
            raise ArgumentError(f"{p.label}: the simulator takes NumPy arrays, not device "
                                "memory")
    memory = {p.buffer: _Guarded(arg.host) for p, arg in zip(params, args)}
    for buffer in module.temporaries:
        nbytes = math.prod(int(evaluate(e, sizes)) for e in buffer.shape) \
            * buffer.dtype.numpy.itemsize
        memory[buffer] = _Guarded(None, nbytes)
    with _lock:
        library = _library(module.source, [launch.name for launch in module.launches])
        for launch, grid, block in launches:
            values = [ctypes.c_longlong(sizes[var]) for var in launch.size_vars]
            pointers = [memory[b].address for b in launch.params] + \
                [ctypes.addressof(value) for value in values]
            argv = (ctypes.c_void_p * max(1, len(pointers)))(*pointers)
            dims = (ctypes.c_longlong * 6)(*grid, *block)
            where = (f"simulated CUDA kernel {name}, launch {launch.name} "
                     f"(grid {grid}, block {block})")
            error = getattr(library, "tex_sim_" + launch.name)(argv, dims, seed)
            if error:
                raise DeviceError(f"{where}: {error.decode()}")
            for buffer in launch.params:
                memory[buffer].check_guards(f"{where} wrote outside buffer {buffer.name}")
    for p, arg in zip(params, args):
        if p.is_output:
            memory[p.buffer].copy_to(arg.host)


class _Guarded:
    """A copy of an array's bytes (or `nbytes` unset bytes) between guard bytes."""

    def __init__(self, array: np.ndarray | None, nbytes: int = 0):
        if array is not None:
            nbytes = array.nbytes
        self.nbytes = nbytes
        self._raw = np.full(nbytes + 3 * _GUARD, _GUARD_BYTE, np.uint8)
        start = -self._raw.ctypes.data % _GUARD + _GUARD
        self._data = self._raw[start:start + nbytes]
        self._before = self._raw[:start]
        self._after = self._raw[start + nbytes:]
        if array is None:
            self._data[:] = _UNSET_BYTE
        else:
            self._data[:] = np.ascontiguousarray(array).reshape(-1).view(np.uint8)
        self.address = self._data.ctypes.data

    def check_guards(self, message: str):
        if (self._before != _GUARD_BYTE).any() or (self._after != _GUARD_BYTE).any():
            raise DeviceError(message)

    def copy_to(self, array: np.ndarray):
        np.copyto(array, self._data.view(array.dtype).reshape(array.shape))


def _wrappers(launch_names: list[str]) -> str:
    """A C entry point per launch: `tex_sim_<name>(args, dims, seed)` -> error or NULL."""
    return "".join(
        f'\nextern "C" const char* tex_sim_{name}(void** args, const long long* dims, '
        f"unsigned seed) {{\n  return tex_sim::launch({name}, args, dims, seed);\n}}\n"
        for name in launch_names)


def _library(source: str, launch_names: list[str]) -> ctypes.CDLL:
    """The simulator of `source`, compiled and loaded: from memory, the disk cache, or g++;
    the least recently used libraries past the bound are unloaded. The caller holds
    `_lock`."""
    cxx = compiler()
    if cxx is None:
        raise BuildError("simulating a CUDA kernel needs a C++ compiler: set CXX or install "
                         "g++")
    program = source + _wrappers(launch_names)
    key = hashlib.sha256("\0".join(
        [program, cxx, _version(cxx), *_FLAGS]
        + [p.read_text() for p in sorted(INCLUDE_DIR.iterdir())]).encode()).hexdigest()
    library = _libraries.get(key)
    if library is None:
        library = _libraries[key] = _load(_shared_object(program, key, cxx), key,
                                          launch_names)
    _libraries.move_to_end(key)
    while len(_libraries) > config.simulator_libraries():
        _unload(_libraries.popitem(last=False)[1])
    return library


def unload_all():
    """Unload every simulator library (between simulations)."""
    with _lock:
        while _libraries:
            _unload(_libraries.popitem()[1])


def _unload(library: ctypes.CDLL):
    """`dlclose` `library`, which nothing may call afterwards (the caller holds `_lock`
    and has dropped it from `_libraries`)."""
    _ctypes.dlclose(library._handle)


@functools.lru_cache(maxsize=None)
def _version(cxx: str) -> str:
    """The first line `cxx --version` prints (empty if it prints nothing)."""
    result = subprocess.run([cxx, "--version"], capture_output=True, text=True)
    return (result.stdout.splitlines() or [""])[0]


def _shared_object(program: str, key: str, cxx: str) -> bytes:
    """The shared library of `program`: a disk cache entry ("simulator"), else compiled
    (and then written to the disk cache)."""
    directory = config.cache_dir()
    path = disk_cache.entry_path(directory, key, "simulator-") if directory else None
    entry = disk_cache.read_entry(path, key) if path else None
    if entry is not None and entry.name != "simulator":
        disk_cache.discard_entry(path, f"it holds {entry.name!r}, not a simulator")
    elif entry is not None:
        return entry.object_code
    with tempfile.TemporaryDirectory(prefix="tex-simulator-") as work:
        source = Path(work) / "kernel.cu"
        source.write_text(program)
        built = Path(work) / "kernel.so"
        command = [cxx, *_FLAGS, "-I", str(INCLUDE_DIR), "-include", str(_HEADER),
                   "-x", "c++", str(source), "-o", str(built)]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise BuildError("the CPU simulator could not compile the kernel's CUDA C:\n"
                             + result.stderr[-4000:])
        data = built.read_bytes()
    if path:
        disk_cache.write_entry(path, disk_cache.Entry(key, "simulator", data, "", ""))
    return data


def _load(data: bytes, key: str, launch_names: list[str]) -> ctypes.CDLL:
    """`data` (a shared library) loaded from a file of this process's own, which is
    deleted at once: the loaded library stays mapped."""
    with tempfile.TemporaryDirectory(prefix="tex-simulator-") as work:
        path = Path(work) / f"{key}.so"
        path.write_bytes(data)
        library = ctypes.CDLL(str(path))
    for name in launch_names:
        function = getattr(library, "tex_sim_" + name)
        function.restype = ctypes.c_char_p
        function.argtypes = (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint)
    return library
