"""What a `CudaKernel` call needs besides its pointers, derived once per argument shapes.

* `LaunchPlan`: for one binding of the size variables, each launch's grid and
  block (evaluated from the module's expressions and checked against the
  target's limits), its parameters packed as `cuLaunchKernel` reads them (an
  array of pointers to 8-byte values: the size variables filled in once, the
  buffer addresses written by each call), and where each temporary lies in the
  workspace. Calls with the same sizes share a plan; only pointers change.
* `Workspaces`: the memory of a kernel's temporaries, one workspace per stream,
  made safe for calls that return before their launches are done (see the
  class).
"""
from __future__ import annotations

import ctypes
import itertools
import math
import os
import weakref

from tex.arith import evaluate
from tex.codegen.cuda import CudaLaunch
from tex.runtime.cuda_device import Device, Memory

_TEMPORARY_ALIGNMENT = 256  # bytes between temporaries in a workspace, as cuMemAlloc aligns
_WORD = 2**64  # kernel parameters are 8 bytes: pointers and long long sizes


class PackedLaunch:
    """One launch of a plan: `name`, `grid`, `block`, its dynamic shared memory
    (`shared_bytes`), and its parameter array at `params` (an address for
    `cuLaunchKernel`'s kernelParams). `pack` writes a call's buffer addresses into it."""

    __slots__ = ("name", "grid", "block", "shared_bytes", "params", "what", "_values",
                 "_pointers", "_buffers")

    def __init__(self, launch: CudaLaunch, grid: tuple, block: tuple, places: dict,
                 sizes: tuple, what: str):
        """`places[buffer]` is ("param", position) or ("temporary", offset); `sizes` are
        the values of `launch.size_vars`; `what` names the launch in errors."""
        self.name, self.grid, self.block, self.what = launch.name, grid, block, what
        self.shared_bytes = launch.shared_bytes
        count = len(launch.params) + len(sizes)
        self._values = (ctypes.c_uint64 * max(count, 1))()
        base = ctypes.addressof(self._values)
        self._pointers = (ctypes.c_void_p * max(count, 1))(*(base + 8 * k for k in range(count)))
        self.params = ctypes.addressof(self._pointers)
        for slot, size in enumerate(sizes, start=len(launch.params)):
            self._values[slot] = size % _WORD
        self._buffers = tuple((slot, *places[b]) for slot, b in enumerate(launch.params))

    def pack(self, addresses: list, workspace: int):
        """Write the buffers' addresses: parameters from `addresses` (by position),
        temporaries at their offsets in the workspace at `workspace`."""
        values = self._values
        for slot, kind, where in self._buffers:
            values[slot] = addresses[where] if kind == "param" else workspace + where


class LaunchPlan:
    """The launches of a call for one binding of the size variables (module docstring).

    `dims` is each launch with its grid and block, as `(CudaLaunch, grid, block)`;
    `launches` the same launches packed; `workspace_bytes` the temporaries' total size.
    A launch with an empty grid or block is left out.
    """

    __slots__ = ("dims", "launches", "workspace_bytes")

    def __init__(self, kernel, env: list):
        """`kernel` is the CudaKernel (its module, target, parameters and size variables)."""
        values = kernel._values(env)
        module = kernel._module
        sizes = [_round_up(math.prod(int(evaluate(e, values)) for e in b.shape)
                           * b.dtype.numpy.itemsize) for b in module.temporaries]
        offsets = itertools.accumulate(sizes[:-1], initial=0)
        places = {b: ("temporary", offset) for b, offset in zip(module.temporaries, offsets)}
        places.update({p.buffer: ("param", p.position) for p in kernel._params})
        self.workspace_bytes = sum(sizes)
        self.dims, self.launches = [], []
        for launch in module.launches:
            grid = tuple(int(evaluate(e, values)) for e in launch.grid)
            block = tuple(int(evaluate(e, values)) for e in launch.block)
            kernel._check_limits(launch, grid, block, values)
            if 0 in grid or 0 in block:
                continue
            self.dims.append((launch, grid, block))
            sizes = tuple(env[kernel._slots[var]] for var in launch.size_vars)
            what = f"CUDA kernel {kernel.name}, launch {launch.name}"
            self.launches.append(PackedLaunch(launch, grid, block, places, sizes, what))


def _round_up(nbytes: int) -> int:
    return -(-nbytes // _TEMPORARY_ALIGNMENT) * _TEMPORARY_ALIGNMENT


class Workspaces:
    """The temporaries' memory of one kernel: a workspace per stream.

    Calls on one stream are ordered by it, so they share that stream's workspace;
    calls on different streams never share one, and may run at the same time. The
    last `STREAMS` streams used keep theirs (the least recently used is given back
    first). A workspace grows when a call needs more.

    Each workspace has an event, recorded on its stream after a call's launches
    (`done`); the next call that uses it first makes its stream wait for that event
    (`acquire`), which costs the device nothing on the same stream and orders the
    calls if a stream was destroyed and its handle given to a new one. A workspace
    given back (outgrown, evicted, or freed with its kernel) waits on the host for its
    event before its memory is freed. Callers hold the kernel's lock.
    """

    STREAMS = 4

    def __init__(self, what: str):
        self._what = what
        self._by_stream = {}  # stream -> _Workspace, least recently used first

    def acquire(self, device: Device, stream: int, nbytes: int) -> int:
        """The address of a workspace of at least `nbytes` for work queued on `stream`."""
        workspace = self._by_stream.pop(stream, None)
        if workspace is not None and workspace.memory.nbytes < nbytes:
            workspace.give_back()
            workspace = None
        if workspace is None:
            while len(self._by_stream) >= self.STREAMS:
                self._by_stream.pop(next(iter(self._by_stream))).give_back()
            workspace = _Workspace(device, nbytes, self._what)
        self._by_stream[stream] = workspace
        device.call("cuStreamWaitEvent", stream, workspace.event, 0, what=self._what)
        return workspace.memory.pointer

    def done(self, device: Device, stream: int):
        """Mark the end of the work just queued on `stream` in its workspace."""
        device.call("cuEventRecord", self._by_stream[stream].event, stream, what=self._what)


class _Workspace:
    """`nbytes` of device memory and the event after the last work queued in it."""

    def __init__(self, device: Device, nbytes: int, what: str):
        self.memory = Memory(device, nbytes, what)
        with device.active():
            self.event = device.call("cuEventCreate", device.no_timing, what=what)
        self.give_back = weakref.finalize(self, _give_back, device, self.event, self.memory)
        self.give_back.atexit = False  # the process's exit frees it


def _give_back(device: Device, event, memory: Memory):
    """Wait for the last work queued in `memory`, then free it and its event (results are
    ignored, as `tex.runtime.cuda_device.release` says why)."""
    if device.pid == os.getpid():
        with device.active():
            device.driver.cuEventSynchronize(event)
            memory.free()
            device.driver.cuEventDestroy(event)
