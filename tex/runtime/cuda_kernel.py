"""`CudaKernel`: a compiled CUDA module called with arrays.

    kernel(a, b, c)      # every parameter, destination passing; returns None
    c = kernel(a, b)     # inputs only: outputs are allocated and returned

Arguments are checked as `tex.runtime.kernel.Kernel` checks them, with the same
messages (dtype, rank, C-contiguity, shapes, size variables, outputs that are
read-only or overlap another argument), and before anything touches the GPU.
They may be host or device arrays, mixed (`tex.runtime.cuda_args` says which
and how each is taken). Called with its inputs only, a kernel returns NumPy
arrays if every input was on the host, else `DeviceArray`s.

Calls are asynchronous and stream-ordered:

    kernel(a, b, c, stream=s)    # queued on stream s; returns before the GPU is done
    kernel(a, b, c, sync=True)   # returns once the launches are done
    tex.synchronize()            # waits for all of tex's work

* The launches go to `stream` (a cuda-python CUstream, an int handle, or an
  object with `.cuda_stream`, as PyTorch's streams, or `.ptr`, as CuPy's);
  without one, to the first stream an argument names: PyTorch's current
  stream for a PyTorch tensor, the `stream` of `__cuda_array_interface__`
  (a `DeviceArray`'s pending writes included); else the legacy default stream.
  A DLPack producer is asked (`__dlpack__(stream=...)`) to make its data
  ready for that stream.
* A producer's writes pending on another stream are waited for on the
  device: an event recorded on its stream, waited for by the launch stream.
  The host never waits for them.
* With device arrays only, a call returns once its launches are queued. A
  `DeviceArray` it writes records the stream (`DeviceArray.stream`), which
  its `__cuda_array_interface__` gives to consumers. With host (NumPy)
  arguments the call copies them in on the stream, launches, copies the
  outputs back and waits for that stream only, then frees the copies.
  `sync=True` waits for the stream in any case.
* A CUDA error of an asynchronous launch surfaces at the next synchronizing
  call (`sync=True`, a host-array call on that stream, `DeviceArray.numpy()`,
  `tex.synchronize()`, a timing), as a `DeviceError` that names what tex
  queued last on the stream. An error that the launch itself returns names
  the kernel and launch.
* Only writes are tracked, as `__cuda_array_interface__` has it: before an
  array that a call on one stream reads is written on another, order the
  two (`sync=True`, `tex.synchronize()`, or an event of your own).
* Calls of one kernel from several threads queue their launches one at a time.

A call derives its launch plan once per distinct sizes of its arguments
(`tex.runtime.cuda_launch.LaunchPlan`: grid and block, their limits checked,
the parameters packed), so a later call with the same sizes only writes the
pointers; the device of a `__cuda_array_interface__` pointer is asked of the
driver once per address; the primary context is pushed only when it is not
current already (PyTorch and CuPy make it current). Calls whose arguments are
all DeviceArrays, or all `__cuda_array_interface__` objects (CuPy, Numba), of
shapes and layouts that passed the checks before skip them: a DeviceArray
call repeats none, an interface call only those that depend on the pointers
(writable outputs, alignment, device 0, no overlap).

Temporaries (global buffers the launches share) live in a workspace per stream
(`tex.runtime.cuda_launch.Workspaces`): calls on one stream share theirs, calls
on different streams never share one. A workspace grows when a call needs more
and is freed with the kernel, once its last work is done.

`time_calls(args, calls)` times back-to-back calls with CUDA events on the
launch stream; `time_evaluator` uses it.

Building a CudaKernel touches no GPU; the first call opens the device
(`tex.runtime.cuda_device`) and loads the module: its cubin on a device of the
target's architecture, else its PTX, which the driver compiles for the device;
either is checked first (a well-formed CUDA ELF file for the target's
architecture, PTX with its header: `nvrtc.check_output`), and a BuildError
naming the kernel says what is wrong instead of handing the driver a bad image.
A launch with dynamic shared memory (`CudaLaunch.shared_bytes`) raises its
function's limit to that size when the module is loaded. Without a GPU or its driver
a call raises `DeviceError`.
"""
from __future__ import annotations

import math
import sys
import threading
import weakref
from typing import Callable

import numpy as np

from tex.codegen.cuda import CudaLaunch, CudaModule
from tex.codegen.nvrtc import check_output
from tex.errors import ArgumentError, BuildError
from tex.expr import Var
from tex.ir import KernelInterface, LoweredFunc
from tex.runtime.cuda_args import ALIGNMENT, Arg, CallStreams, CudaParam
from tex.runtime.cuda_device import (Device, DeviceArray, Memory, copy_to_device, copy_to_host,
                                     release, require_device)
from tex.runtime.cuda_launch import LaunchPlan, Workspaces
from tex.runtime.cuda_stream import LEGACY, as_stream, is_torch_tensor
from tex.runtime import cuda_simulator
from tex.runtime.host_array import allocate
from tex.runtime.kernel import Signature
from tex.visitor import collect

SOURCE_FORMATS = ("tex", "cuda", "ptx")
_PLANS = 32  # launch plans (one per distinct sizes) a kernel keeps
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
        self._what = f"CUDA kernel {self.name}"
        self._purpose = f"running {self._what}"  # what needs the device, in its errors
        self._plans = {}  # tuple(env) -> LaunchPlan, the last _PLANS
        self._known = {}  # _device_array_key -> LaunchPlan, the last _PLANS
        self._known_interfaces = {}  # _interface_key -> (LaunchPlan, extents), the last _PLANS
        self._output_positions = [p.position for p in self._outputs]
        self._dtypes = [p.dtype for p in self._params]
        self._workspaces = Workspaces(self._what)

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

    def __call__(self, *args, stream=None, sync: bool = False):
        """Queue the kernel's launches on a stream and return (see the module docstring).
        `stream`: a cuda-python CUstream, an int handle, or an object with `.cuda_stream`
        (PyTorch), `.ptr` (CuPy) or `__cuda_stream__`; default: the stream the arguments
        name, else the legacy default stream. `sync`: wait for that stream before
        returning (a CUDA error of the launches is then raised here)."""
        key = self._device_array_key(args)
        plan = self._known.get(key) if key is not None else None
        if plan is not None:
            self._run_device_arrays(args, plan, stream, sync)
            return None
        interfaces, interface_key = self._interface_key(args) if key is None else ((), None)
        known = self._known_interfaces.get(interface_key)
        if known is not None:
            self._run_interfaces(interfaces, *known, stream, sync)
            return None
        streams = CallStreams.of_call(args, stream)

        def run(given, env, plan):
            self._run(given, plan, streams.launch, sync)
            if key is not None:
                _remember(self._known, key, plan)
            if interface_key is not None:
                _remember(self._known_interfaces, interface_key,
                          (plan, [_Extent(a.nbytes) for a in given]))
        return self._bind_and_run(args, run, streams)

    def simulate(self, *args, seed: int = 0):
        """Run the kernel on the CPU instead of a GPU, called as the kernel is (NumPy
        arrays only): its CUDA C compiled for the host, each GPU thread a fiber. Slow; for
        checking a schedule without a GPU. A barrier that some threads miss, a warp
        operation a lane never joins, or a write outside a buffer is a `DeviceError`.
        `seed` (not 0) shuffles the order of blocks and threads, to expose races. See
        `tex.runtime.cuda_simulator`."""
        def run(args, env, plan):
            cuda_simulator.run(self.name, self._module, self._params, args, self._values(env),
                               plan.dims, seed)
        return self._bind_and_run(args, run, None, host_outputs=True)

    def time_calls(self, args, calls: int, stream=None) -> float:
        """Seconds that `calls` back-to-back calls `self(*args, stream=...)` take on the
        GPU, timed by CUDA events recorded on the launch stream before the first and after
        the last; the host waits for the second only. Warm the kernel up first (the
        first call loads the module)."""
        launch = CallStreams.of_call(args, stream).launch
        device = self._device()
        what = f"timing CUDA kernel {self.name}"
        with device.active():
            start, end = (device.call("cuEventCreate", 0, what=what) for _ in range(2))
            try:
                device.call("cuEventRecord", start, launch, what=what)
                for _ in range(calls):
                    self(*args, stream=launch)
                device.call("cuEventRecord", end, launch, what=what)
                device.call("cuEventSynchronize", end, what=f"{what} (an error of its "
                                                             "launches shows here)")
                milliseconds = device.call("cuEventElapsedTime", start, end, what=what)
            finally:
                device.driver.cuEventDestroy(start)
                device.driver.cuEventDestroy(end)
        return float(milliseconds) / 1e3

    def _bind_and_run(self, args: tuple, run: Callable, streams: CallStreams | None,
                      host_outputs: bool = False):
        """Check `args` (every parameter, or the inputs only; device arguments are read
        with `streams`), then `run(args, env, plan)`; return the outputs allocated when
        only inputs came (on the host if `host_outputs` or every input is there, else on
        the device)."""
        context = () if streams is None else (streams,)
        if len(args) == len(self._params):
            given, env = self._check(self._params, args, *context)
            self._check_overlap(given, [a.address for a in given])
            self._check_runtime(env)
            run(given, env, self._plan(env))
            return None
        if len(args) == len(self._inputs):
            given, env = self._check(self._inputs, args, *context)
            self._check_runtime(env)
            shapes = [self._output_shape(p, env) for p in self._outputs]
            plan = self._plan(env)
            on_device = not host_outputs and any(a.host is None for a in given)
            outputs = self._new_outputs(shapes, on_device)
            arrays = [p.as_array(out) for p, out in zip(self._outputs, outputs)]
            run(self._in_param_order(given, arrays), env, plan)
            return outputs[0] if len(outputs) == 1 else tuple(outputs)
        raise self._arity_error(len(args))

    def _new_outputs(self, shapes: list, on_device: bool) -> list:
        if not on_device:
            return [allocate(shape, p.dtype) for p, shape in zip(self._outputs, shapes)]
        device = self._device()
        return [DeviceArray(device, shape, p.dtype) for p, shape in zip(self._outputs, shapes)]

    def _device(self) -> Device:
        return require_device(self._purpose, _NO_GPU_HINT)

    def _plan(self, env: list) -> LaunchPlan:
        """The launch plan for these sizes: made at the first call with them, kept for
        the last _PLANS distinct sizes."""
        key = tuple(env)
        plan = self._plans.get(key)
        if plan is None:
            plan = LaunchPlan(self, env)
            _remember(self._plans, key, plan)
        return plan

    def _device_array_key(self, args: tuple) -> tuple | None:
        """The shapes of `args` when they are every parameter, each a distinct DeviceArray
        of the parameter's dtype (it cannot overlap another: it owns its memory), else
        None. A call with such arguments that passed the checks once needs none again
        (`self._known`): the same shapes pass them, C-contiguous and aligned."""
        if len(args) != len(self._params):
            return None
        for a, dtype in zip(args, self._dtypes):
            if type(a) is not DeviceArray or a.dtype is not dtype and a.dtype != dtype:
                return None
        if len(set(map(id, args))) != len(args):
            return None
        return tuple([a.shape for a in args])

    def _run_device_arrays(self, arrays: tuple, plan: LaunchPlan, stream, sync: bool):
        """`_run` for distinct DeviceArrays (`_device_array_key`), checked before."""
        producers = [a.stream for a in arrays]
        stream = self._launch_known(plan, [a.pointer for a in arrays], producers, stream,
                                    sync)
        for k in self._output_positions:
            arrays[k].stream = stream

    def _interface_key(self, args: tuple) -> tuple[list, tuple | None]:
        """(the `__cuda_array_interface__` dicts of `args`, the key of what the checks
        read of them that no call changes: each one's shape, typestr, strides and mask)
        when `args` are every parameter, each an object with the interface that is not a
        PyTorch tensor (whose producer is PyTorch's current stream) nor a NumPy array;
        else ((), None). A call whose key passed the checks once repeats only those that
        depend on the pointers (`_run_interfaces`)."""
        if len(args) != len(self._params):
            return (), None
        interfaces = []
        for a in args:
            if isinstance(a, (np.ndarray, DeviceArray)) or is_torch_tensor(a):
                return (), None  # (a DeviceArray's stream is kept by the other paths)
            interface = getattr(a, "__cuda_array_interface__", None)
            if type(interface) is not dict:
                return (), None
            interfaces.append(interface)
        try:
            key = []
            for i in interfaces:
                data, strides = i["data"], i.get("strides")
                if not (isinstance(data, (tuple, list)) and len(data) == 2):
                    return (), None  # malformed: the full checks say how
                key.append((tuple(i["shape"]), i["typestr"],
                            None if strides is None else tuple(strides), i.get("mask") is None))
            return interfaces, tuple(key)
        except (KeyError, TypeError):  # malformed: the full checks say how
            return (), None

    def _run_interfaces(self, interfaces: list, plan: LaunchPlan, extents: list, stream,
                        sync: bool):
        """`_run` for arguments of a known `_interface_key`: their pointers checked (each
        output writable, each address aligned and on device 0, no output overlapping
        another argument) as `CudaParam` checks them, then the launches queued after each
        interface's `stream`."""
        addresses, producers = [], []
        device = self._device()
        for p, interface, extent in zip(self._params, interfaces, extents):
            address, read_only = interface["data"]
            address = address or 0
            if p.is_output and read_only:
                raise p.read_only_error()
            if extent.nbytes:
                ordinal = device.ordinal(address)
                if ordinal != 0:
                    p.check_ordinal(ordinal, address)
                if address % p.alignment:
                    raise p.alignment_error_at(address)
            addresses.append(address)
            producer = interface.get("stream")
            producers.append(None if producer is None else as_stream(
                producer, f"{p.label}: the stream of its __cuda_array_interface__"))
        self._check_overlap(extents, addresses)
        self._launch_known(plan, addresses, producers, stream, sync)

    def _launch_known(self, plan: LaunchPlan, addresses: list, producers: list, stream,
                      sync: bool) -> int:
        """Queue `plan` on `stream` (given, else the first producer's, else the legacy
        stream) for device arguments at `addresses`, after `producers`; the stream."""
        if stream is not None:
            stream = as_stream(stream)
        else:
            stream = next(filter(None, producers), LEGACY)
        device = self._device()
        pushed = device.enter()
        try:
            with self._lock:
                self._queue(device, plan, addresses, producers, stream)
            if sync:
                device.synchronize_stream(stream, self._what)
        finally:
            device.leave(pushed)
        return stream

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

    def _run(self, args: list[Arg], plan: LaunchPlan, stream: int, sync: bool):
        """Queue the launches of `plan` on `stream` after the producers' pending writes;
        with host arguments, copy them in and out and wait for `stream`."""
        device = self._device()
        what = self._what
        staged = []
        pushed = device.enter()
        try:
            with self._lock:
                addresses = self._addresses(device, args, stream, staged)
                self._queue(device, plan, addresses, [a.stream for a in args], stream)
            for p in self._outputs:
                arg = args[p.position]
                if arg.host is not None:
                    copy_to_host(device, arg.host, addresses[p.position], what, stream)
                elif type(arg.owner) is DeviceArray:
                    arg.owner.stream = stream
            if staged or sync:
                device.synchronize_stream(stream, what)
        finally:
            if staged and sys.exc_info()[0] is not None:
                device.driver.cuStreamSynchronize(stream)  # before freeing what it may use
            for memory in staged:
                memory.free()
            device.leave(pushed)

    def _addresses(self, device: Device, args: list[Arg], stream: int, staged: list) -> list:
        """Each argument's device address: its own, checked to be on device 0, or that of
        a copy of its host data made on `stream` (its memory added to `staged`)."""
        addresses = []
        for p, arg in zip(self._params, args):
            if arg.host is not None:
                memory = Memory(device, arg.nbytes, self._what)
                staged.append(memory)
                copy_to_device(device, memory.pointer, arg.host, self._what, stream)
                addresses.append(memory.pointer)
            else:
                p.check_location(device.ordinal, arg)
                addresses.append(arg.address)
        return addresses

    def _queue(self, device: Device, plan: LaunchPlan, addresses: list, producers: list,
               stream: int):
        """Queue the launches of `plan` on `stream`, after the writes pending on each of
        `producers` (a stream or None per argument). The kernel's lock is held."""
        waits = [p for p in producers if p is not None and p != stream]
        for producer in dict.fromkeys(waits):
            device.wait(stream, producer, self._what)
        functions = self._functions or self._load(device)
        workspace = 0
        if plan.workspace_bytes:
            workspace = self._workspaces.acquire(device, stream, plan.workspace_bytes)
        for launch in plan.launches:
            launch.pack(addresses, workspace)
            device.launch(functions[launch.name], launch.grid, launch.block,
                          launch.shared_bytes, stream, launch.params, launch.what)
        if plan.workspace_bytes:
            self._workspaces.done(device, stream)
        device.note(stream, self._what)

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
        the PTX (NUL-terminated), which the driver compiles for the device. Either is
        checked first (`nvrtc.check_output`): the driver trusts what it is given."""
        use_cubin = device.arch == self.target.arch.removesuffix("a")
        ptx = None if use_cubin else self._module.get_source("ptx")
        try:
            check_output(self._module.cubin if use_cubin else None, ptx, self.target.arch)
        except BuildError as err:
            raise BuildError(f"CUDA kernel {self.name} (built for {self.target}) is not "
                             f"loaded: {err}") from None
        return self._module.cubin if use_cubin else ptx.encode() + b"\0"

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


class _Extent:
    """What the overlap check reads of an argument: its size in bytes."""

    __slots__ = ("nbytes",)

    def __init__(self, nbytes: int):
        self.nbytes = nbytes


def _remember(cache: dict, key, value):
    """`cache[key] = value`, the oldest entry dropped beyond _PLANS."""
    if len(cache) >= _PLANS:
        cache.pop(next(iter(cache)), None)
    cache[key] = value


def _variables(exprs) -> list[Var]:
    return [v for e in exprs for v in collect(e, lambda n: isinstance(n, Var))]

