"""`CudaKernel`: a compiled CUDA module called with arrays.

    kernel(a, b, c)      # every parameter, destination passing; returns None
    c = kernel(a, b)     # inputs only: outputs are allocated and returned

Arguments are checked as `tex.runtime.kernel.Kernel` checks them, with the same
messages (dtype, rank, C-contiguity, shapes, size variables, outputs that are
read-only or overlap another argument), and before anything touches the GPU.
They may be host or device arrays, mixed (`tex.runtime.cuda_device` says which
and how each is taken). Called with its inputs only, a kernel returns NumPy
arrays if every input was on the host, else `DeviceArray`s.

Calls are synchronous. A producer's pending writes are waited for, the
launches go to the legacy default stream, and the call returns once they are
done (`cuCtxSynchronize`): results are ready, and a CUDA error is a
`DeviceError` raised by the call that caused it. Calls of one kernel from
several threads run one at a time.

Temporaries (global buffers the launches share) live in one workspace per
kernel, allocated by the first call, grown when a call needs more and freed
with the kernel.

Building a CudaKernel touches no GPU; the first call opens the device
(`tex.runtime.cuda_device`) and loads the module: its cubin on a device of the
target's architecture, else its PTX, which the driver compiles for the device.
A launch with dynamic shared memory (`CudaLaunch.shared_bytes`) raises its
function's limit to that size when the module is loaded. Without a GPU or its driver
a call raises `DeviceError`.
"""
from __future__ import annotations

import ctypes
import itertools
import math
import threading
import weakref
from typing import Callable

from tex.arith import evaluate
from tex.codegen.cuda import CudaLaunch, CudaModule
from tex.errors import ArgumentError, BuildError
from tex.expr import Var
from tex.ir import KernelInterface, LoweredFunc
from tex.runtime.cuda_device import (ALIGNMENT, Arg, CudaParam, Device, DeviceArray, Memory,
                                     copy_to_device, copy_to_host, release, require_device)
from tex.runtime import cuda_simulator
from tex.runtime.host_array import allocate
from tex.runtime.kernel import Signature
from tex.visitor import collect

SOURCE_FORMATS = ("tex", "cuda", "ptx")
_TEMPORARY_ALIGNMENT = 256  # bytes between temporaries in a workspace, as cuMemAlloc aligns
_NO_GPU_HINT = (" Building works without one: kernel.get_source('cuda') and "
                "get_source('ptx') show the code, and kernel.simulate(...) runs it on the "
                "CPU.")


class CudaKernel(Signature):
    """A compiled CUDA module, called like a `Kernel` (see the module docstring).

    `func` is the LoweredFunc it was built from (lowered when first asked for if the
    module came from the disk cache), `target` its Target.
    """

    device_kind = "cuda"

    def __init__(self, func: LoweredFunc | KernelInterface, module: CudaModule, *,
                 lower: Callable[[], LoweredFunc] | None = None, tex_source: str | None = None):
        """`func` is the LoweredFunc of `module`, or, for a module read from the disk
        cache, the KernelInterface its launches name, with `lower` giving the LoweredFunc
        when asked for and `tex_source` its printed form."""
        if not isinstance(func, LoweredFunc) and lower is None:
            raise BuildError("a CudaKernel made from a KernelInterface needs `lower`")
        super().__init__(func, CudaParam)
        self.target = module.target
        self._func = func if isinstance(func, LoweredFunc) else None
        self._lower = lower
        self._tex_source = tex_source
        self._module = module
        self._check_module()
        alignments = self._alignments()
        for p in self._params:
            p.alignment = alignments.get(p.buffer, 1)
        self._lock = threading.Lock()
        self._functions = None  # {launch name: CUfunction}, once the module is loaded
        self._workspace = None  # the Memory of the temporaries

    @property
    def func(self) -> LoweredFunc:
        """The loop program this kernel was compiled from (lowered now if it came from disk)."""
        if self._func is None:
            self._func = self._lower()
        return self._func

    def _check_module(self):
        params = {p.buffer for p in self._params}
        temporaries = set(self._module.temporaries)
        for launch in self._module.launches:
            for buffer in launch.params:
                if buffer not in params and buffer not in temporaries:
                    raise BuildError(f"CUDA kernel {launch.name} of {self.name} takes buffer "
                                     f"{buffer.name}, which is neither a parameter nor a "
                                     "temporary")
            if launch.alignments and len(launch.alignments) != len(launch.params):
                raise BuildError(f"CUDA kernel {launch.name} of {self.name} gives "
                                 f"{len(launch.alignments)} alignments for "
                                 f"{len(launch.params)} buffers")
            self._check_sizes_known(launch.size_vars, f"CUDA kernel {launch.name}")
            self._check_sizes_known(_variables(launch.grid + launch.block),
                                    f"the launch dimensions of {launch.name}")
        for buffer in self._module.temporaries:
            self._check_sizes_known(_variables(buffer.shape), f"temporary {buffer.name}")

    def _alignments(self) -> dict:
        """The byte alignment each buffer's address needs: the most any launch asks for
        (`CudaLaunch.alignments`; ALIGNMENT for a launch that does not say)."""
        needs = {}
        for launch in self._module.launches:
            given = launch.alignments or (ALIGNMENT,) * len(launch.params)
            for buffer, alignment in zip(launch.params, given):
                needs[buffer] = max(needs.get(buffer, 1), alignment)
        return needs

    def _check_sizes_known(self, variables, user: str):
        for var in variables:
            if var not in self._slots:
                raise BuildError(f"{user} of {self.name} uses {var.name}, which is not a size "
                                 "variable of the kernel")

    def __call__(self, *args):
        return self._bind_and_run(args, self._run)

    def simulate(self, *args, seed: int = 0):
        """Run the kernel on the CPU instead of a GPU, called as the kernel is (NumPy
        arrays only): its CUDA C compiled for the host, each GPU thread a fiber. Slow; for
        checking a schedule without a GPU. A barrier that some threads miss, a warp
        operation a lane never joins, or a write outside a buffer is a `DeviceError`.
        `seed` (not 0) shuffles the order of blocks and threads, to expose races. See
        `tex.runtime.cuda_simulator`."""
        def run(args, env, launches):
            cuda_simulator.run(self.name, self._module, self._params, args, self._values(env),
                               launches, seed)
        return self._bind_and_run(args, run, host_outputs=True)

    def _bind_and_run(self, args: tuple, run: Callable, host_outputs: bool = False):
        """Check `args` (every parameter, or the inputs only), then `run(args, env,
        launches)`; return the outputs allocated when only inputs came (on the host if
        `host_outputs` or every input is there, else on the device)."""
        if len(args) == len(self._params):
            given, env = self._check(self._params, args)
            self._check_overlap(given, [a.address for a in given])
            run(given, env, self._launch_dims(env))
            return None
        if len(args) == len(self._inputs):
            given, env = self._check(self._inputs, args)
            shapes = [self._output_shape(p, env) for p in self._outputs]
            launches = self._launch_dims(env)
            on_device = not host_outputs and any(a.host is None for a in given)
            outputs = self._new_outputs(shapes, on_device)
            arrays = [p.as_array(out) for p, out in zip(self._outputs, outputs)]
            run(self._in_param_order(given, arrays), env, launches)
            return outputs[0] if len(outputs) == 1 else tuple(outputs)
        raise self._arity_error(len(args))

    def _new_outputs(self, shapes: list, on_device: bool) -> list:
        if not on_device:
            return [allocate(shape, p.dtype) for p, shape in zip(self._outputs, shapes)]
        device = self._device()
        return [DeviceArray(device, shape, p.dtype) for p, shape in zip(self._outputs, shapes)]

    def _device(self) -> Device:
        return require_device(f"running CUDA kernel {self.name}", _NO_GPU_HINT)

    def _launch_dims(self, env: list) -> list[tuple[CudaLaunch, tuple, tuple]]:
        """Each launch with its grid and block for these sizes, checked against the
        target's limits; a launch with an empty grid or block is left out."""
        values = self._values(env)
        launches = []
        for launch in self._module.launches:
            grid = tuple(int(evaluate(e, values)) for e in launch.grid)
            block = tuple(int(evaluate(e, values)) for e in launch.block)
            self._check_limits(launch, grid, block, values)
            if 0 not in grid and 0 not in block:
                launches.append((launch, grid, block))
        return launches

    def _check_limits(self, launch: CudaLaunch, grid: tuple, block: tuple, values: dict):
        t = self.target
        sizes = ", ".join(f"{var.name} = {value}" for var, value in values.items())
        where = f"CUDA kernel {launch.name} of {self.name}" + (f" (for {sizes})" if sizes else "")
        for kind, dims, limits in (("grid", grid, t.max_grid), ("block", block, t.max_block)):
            for axis, size, limit in zip("xyz", dims, limits):
                if size < 0:
                    raise ArgumentError(f"{where}: {kind} dimension {axis} is {size}; it "
                                        "cannot be negative")
                if size > limit:
                    raise ArgumentError(f"{where}: {kind} dimension {axis} is {size}, above "
                                        f"the limit {limit} of {t}")
        threads = math.prod(block)
        if threads > t.max_threads_per_block:
            raise ArgumentError(f"{where}: a block of {' x '.join(map(str, block))} = "
                                f"{threads} threads, above the limit "
                                f"{t.max_threads_per_block} of {t}")

    def _run(self, args: list[Arg], env: list, launches: list):
        device = self._device()
        what = f"CUDA kernel {self.name}"
        staged = []
        with self._lock, device.active():
            try:
                functions = self._load(device)
                pointers = {}
                for p, arg in zip(self._params, args):
                    p.check_location(device, arg)
                    if arg.stream is not None:
                        device.call("cuStreamSynchronize", arg.stream, what=what)
                    pointers[p.buffer] = self._device_address(device, arg, staged, what)
                pointers.update(self._temporaries(device, self._values(env)))
                for launch, grid, block in launches:
                    self._launch(device, functions[launch.name], launch, grid, block,
                                 pointers, env)
                device.call("cuCtxSynchronize", what=what)
                for p in self._outputs:
                    if args[p.position].host is not None:
                        copy_to_host(device, args[p.position].host, pointers[p.buffer], what)
            finally:
                for memory in staged:
                    memory.free()

    def _device_address(self, device, arg: Arg, staged: list, what: str) -> int:
        """Where `arg` is on the device: its own address, or a copy of its host data
        (whose memory is added to `staged`)."""
        if arg.host is None:
            return arg.address
        memory = Memory(device, arg.nbytes, what)
        staged.append(memory)
        copy_to_device(device, memory.pointer, arg.host, what)
        return memory.pointer

    def _temporaries(self, device: Device, values: dict) -> dict:
        """The device address of each temporary, in the workspace (grown if too small)."""
        if not self._module.temporaries:
            return {}
        sizes = [_round_up(math.prod(int(evaluate(e, values)) for e in b.shape)
                           * b.dtype.numpy.itemsize) for b in self._module.temporaries]
        if self._workspace is None or self._workspace.nbytes < sum(sizes):
            if self._workspace is not None:
                self._workspace.free()
                self._workspace = None
            self._workspace = Memory(device, sum(sizes), f"CUDA kernel {self.name}")
        offsets = itertools.accumulate(sizes[:-1], initial=0)
        return {b: self._workspace.pointer + offset
                for b, offset in zip(self._module.temporaries, offsets)}

    def _load(self, device: Device) -> dict:
        """The module's functions by launch name; the module is loaded at the first call and
        unloaded with this kernel."""
        if self._functions is None:
            what = f"CUDA kernel {self.name} (built for {self.target})"
            module = device.call("cuModuleLoadData", self._image(device), what=what)
            weakref.finalize(self, release, device, "cuModuleUnload", module).atexit = False
            self._functions = {launch.name: device.call("cuModuleGetFunction", module,
                                                        launch.name.encode(), what=what)
                               for launch in self._module.launches}
            for launch in self._module.launches:  # dynamic shared memory past 48 KB: opt in
                if launch.shared_bytes:
                    attribute = device.driver.CUfunction_attribute
                    device.call("cuFuncSetAttribute", self._functions[launch.name],
                                attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                                launch.shared_bytes, what=what)
        return self._functions

    def _image(self, device: Device) -> bytes:
        """What the driver loads: the cubin on a device of the target's architecture, else
        the PTX (NUL-terminated), which the driver compiles for the device."""
        if device.arch == self.target.arch.removesuffix("a"):
            return self._module.cubin
        return self._module.get_source("ptx").encode() + b"\0"

    def _launch(self, device, function, launch: CudaLaunch, grid, block, pointers, env):
        values = tuple(pointers[b] for b in launch.params) + \
            tuple(env[self._slots[var]] for var in launch.size_vars)
        types = (ctypes.c_void_p,) * len(launch.params) + \
            (ctypes.c_longlong,) * len(launch.size_vars)
        device.call("cuLaunchKernel", function, *grid, *block, launch.shared_bytes,
                    device.stream, (values, types), 0,
                    what=f"CUDA kernel {self.name}, launch {launch.name}")

    @property
    def imported_modules(self) -> list[CudaModule]:
        """The device code: one module, whose `get_source()` is the CUDA C.
        TVM: `f.imported_modules[0].get_source()`."""
        return [self._module]

    def get_source(self, fmt: str = "tex") -> str:
        """The kernel as text: "tex" (the loop program), "cuda" (CUDA C), "ptx"."""
        if fmt == "tex":
            return self._tex_source if self._tex_source is not None else str(self.func)
        if fmt in ("cuda", "ptx"):
            return self._module.get_source(fmt)
        raise ArgumentError(f"unknown source format {fmt!r}; expected one of {SOURCE_FORMATS}")

    def __repr__(self):
        return f"<tex.CudaKernel {self.name} for {self.target}>"


def _variables(exprs) -> list[Var]:
    return [v for e in exprs for v in collect(e, lambda n: isinstance(n, Var))]


def _round_up(nbytes: int) -> int:
    return -(-nbytes // _TEMPORARY_ALIGNMENT) * _TEMPORARY_ALIGNMENT
