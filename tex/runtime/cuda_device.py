"""CUDA device 0 for tex's kernels: the driver and its context, streams, device memory.

* The driver is reached lazily: importing this module or building a kernel
  touches nothing; the first use (`gpu_available()`, a device array, a
  kernel call) initialises CUDA and retains the primary context of device 0.
  A use makes it current in its thread (`Device.active`) unless it is current
  already, and restores the caller's after. Without a GPU or its driver
  `gpu_available()` is False and any use raises `DeviceError`. A process
  forked after CUDA was initialised cannot use it (CUDA does not survive fork).
* Work is asynchronous: kernels are queued on streams (handles, read by
  `tex.runtime.cuda_stream`); `Device.wait` orders one stream after another on
  the device, `Device.synchronize_stream` and `synchronize()` (`tex.synchronize`)
  wait on the host, and a CUDA error found there names what tex last queued on
  the stream (`Device.note`).
* Device memory: `DeviceArray` (made by `device_array(ndarray)`, a copy, or
  `empty_device(shape, dtype)`), a C-contiguous array freed when
  garbage-collected, which knows the stream of tex's pending writes to it;
  `Memory`, the raw allocation under it and under a kernel's staged arguments
  and temporaries.

`tex.runtime.cuda_args` reads kernel arguments, and
`tex.runtime.cuda_kernel.CudaKernel` runs kernels on the device.
"""
from __future__ import annotations

import math
import os
import threading
import weakref
from contextlib import contextmanager

import numpy as np

from tex.dtype import array_layout
from tex.errors import ArgumentError, DeviceError
from tex.runtime.cuda_stream import LEGACY
from tex.runtime.host_array import allocate


# --- the driver -------------------------------------------------------------------------------
class Device:
    """The retained primary context of CUDA device 0, and driver calls that check results.

    It also keeps what asynchronous calls need: an event to order one stream after
    another (`wait`), the addresses already found to be memory of device 0
    (`ordinal`), and what tex last queued on each stream (`note`), which the error of a
    later synchronization names.
    """

    def __init__(self, driver):
        self.driver = driver
        self.pid = os.getpid()
        self._success = driver.CUresult.CUDA_SUCCESS
        self.handle = self.call("cuDeviceGet", 0)
        self.context = self.call("cuDevicePrimaryCtxRetain", self.handle)
        self._context_handle = int(self.context)
        self.no_timing = driver.CUevent_flags.CU_EVENT_DISABLE_TIMING  # cuEventCreate flags
        self._lock = threading.Lock()
        self._order_event = None  # the event of `wait`, made at its first use
        self._ordinals = {}  # address -> its device ordinal, the last _CHECKED_POINTERS
        self._queued = {}  # stream -> what tex last queued on it
        self._launch_kernel = driver.cuLaunchKernel
        self._arch = None

    @property
    def arch(self) -> str:
        """The device's architecture as a CUDA target names it ("sm_90")."""
        if self._arch is None:
            kinds = self.driver.CUdevice_attribute
            major, minor = (self.call("cuDeviceGetAttribute", getattr(
                kinds, f"CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_{part}"), self.handle)
                for part in ("MAJOR", "MINOR"))
            self._arch = f"sm_{major}{minor}"
        return self._arch

    def call(self, function: str, *args, what: str = "CUDA"):
        """`driver.<function>(*args)` without its CUresult; DeviceError naming `what` if
        that is an error. One result comes back bare, several as a tuple."""
        err, *results = getattr(self.driver, function)(*args)
        if err != self._success:
            raise DeviceError(f"{what}: {function} failed with {_describe(self.driver, err)}")
        return results[0] if len(results) == 1 else tuple(results)

    def launch(self, function, grid: tuple, block: tuple, shared_bytes: int, stream: int,
               params: int, what: str):
        """`cuLaunchKernel` of `function` on `stream` with `shared_bytes` of dynamic shared
        memory, its parameters at the address `params`; DeviceError naming `what` if the
        driver refuses it (an error of earlier asynchronous work may show here too)."""
        err, = self._launch_kernel(function, *grid, *block, shared_bytes, stream, params, 0)
        if err != self._success:
            raise DeviceError(f"{what}: cuLaunchKernel failed with "
                              f"{_describe(self.driver, err)}{self._last_queued([stream])}")

    def enter(self) -> bool:
        """Make the primary context current in this thread; whether it had to be pushed
        (if so, `leave(True)` pops it). Where it is current already (PyTorch and CuPy use
        it too), nothing changes."""
        err, current = self.driver.cuCtxGetCurrent()
        if err == self._success and current is not None and \
                int(current) == self._context_handle:
            return False
        self.call("cuCtxPushCurrent", self.context)
        return True

    def leave(self, pushed: bool):
        if pushed:
            self.driver.cuCtxPopCurrent()

    @contextmanager
    def active(self):
        """The primary context is current in this thread inside the block (the caller's after)."""
        pushed = self.enter()
        try:
            yield
        finally:
            self.leave(pushed)

    def wait(self, stream: int, producer: int, what: str):
        """Make the work queued next on `stream` wait, on the device, for the work queued so
        far on `producer`: an event recorded on `producer` that `stream` waits for. The
        host does not wait."""
        with self._lock:
            if self._order_event is None:
                self._order_event = self.call("cuEventCreate", self.no_timing, what=what)
            self.call("cuEventRecord", self._order_event, producer, what=what)
            self.call("cuStreamWaitEvent", stream, self._order_event, 0, what=what)

    def ordinal(self, address: int) -> int | str:
        """The ordinal of the device whose memory `address` is, or why it is not CUDA
        memory. Each address is asked of the driver once (the last _CHECKED_POINTERS
        answers are kept)."""
        known = self._ordinals.get(address)
        if known is not None:
            return known
        attribute = self.driver.CUpointer_attribute.CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL
        err, ordinal = self.driver.cuPointerGetAttribute(attribute, address)
        if err != self._success:
            return _describe(self.driver, err)
        with self._lock:
            if len(self._ordinals) >= _CHECKED_POINTERS:
                self._ordinals.pop(next(iter(self._ordinals)))
            self._ordinals[address] = int(ordinal)
        return int(ordinal)

    def note(self, stream: int, what: str):
        """Remember that `what` is the last work tex queued on `stream` (for the last
        _NOTED_STREAMS streams noted)."""
        queued = self._queued
        if queued.get(stream) is not what:
            queued.pop(stream, None)
            queued[stream] = what
            if len(queued) > _NOTED_STREAMS:
                queued.pop(next(iter(queued)), None)

    def synchronize_stream(self, stream: int, what: str):
        """Wait until the work queued on `stream` is done; a CUDA error, which may come from
        any earlier asynchronous work, is a DeviceError naming what tex queued there last."""
        err, = self.driver.cuStreamSynchronize(stream)
        if err != self._success:
            raise DeviceError(f"{what}: cuStreamSynchronize of stream {stream:#x} failed with "
                              f"{_describe(self.driver, err)}{self._last_queued([stream])}")

    def synchronize(self, what: str):
        """Wait until all work queued in the context is done (`cuCtxSynchronize`); errors
        as in `synchronize_stream`, naming what tex queued last on each stream."""
        err, = self.driver.cuCtxSynchronize()
        if err != self._success:
            raise DeviceError(f"{what}: cuCtxSynchronize failed with "
                              f"{_describe(self.driver, err)}{self._last_queued(self._queued)}")

    def _last_queued(self, streams) -> str:
        known = [(s, self._queued[s]) for s in list(streams) if s in self._queued]
        if not known:
            return ""
        return ("; it may come from earlier asynchronous work. Last queued by tex: "
                + "; ".join(f"{what} on stream {s:#x}" for s, what in known))


_CHECKED_POINTERS = 256  # addresses whose device ordinal Device.ordinal keeps
_NOTED_STREAMS = 16  # streams whose last work Device.note keeps


def _describe(driver, err) -> str:
    """A CUresult as `NAME (what it means)`."""
    _, name = driver.cuGetErrorName(err)
    _, text = driver.cuGetErrorString(err)
    name = name.decode() if name else getattr(err, "name", str(err))
    return f"{name} ({text.decode()})" if text else name


_opened: Device | str | None = None  # the device, why there is none, or not tried yet
_open_lock = threading.Lock()
_pid = os.getpid()  # this process's, kept up to date across forks


def _forked():
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_forked)


def _open() -> Device | str:
    """The device, opened at the first call, or the reason there is none."""
    global _opened
    with _open_lock:
        if _opened is None:
            _opened = _try_open()
        if isinstance(_opened, Device) and _opened.pid != os.getpid():
            return (f"CUDA was initialised in process {_opened.pid} before this one was forked "
                    "from it, and CUDA cannot be used after fork; start workers with 'spawn'")
        return _opened


def _try_open() -> Device | str:
    # Any exception is a reason: no cuda-python (ImportError), no libcuda (cuda.pathfinder's
    # DynamicLibNotFoundError at the first call), no device (DeviceError), ...
    try:
        from cuda.bindings import driver
        err, = driver.cuInit(0)
        if err != driver.CUresult.CUDA_SUCCESS:
            return f"cuInit failed with {_describe(driver, err)}"
        return Device(driver)
    except ImportError as err:
        return f"{err}; running CUDA kernels needs tex's cuda extra: pip install 'tex[cuda]'"
    except Exception as err:  # noqa: BLE001 - see above
        return f"{type(err).__name__}: {err}"


def gpu_available() -> bool:
    """Whether CUDA kernels can run here (a GPU, its driver, cuda-python). Never raises;
    the first call initialises CUDA, later ones are cheap."""
    return isinstance(_open(), Device)


def require_device(purpose: str, hint: str = "") -> Device:
    """The device, or DeviceError saying that `purpose` needs one."""
    opened = _opened
    if type(opened) is Device and opened.pid == _pid:
        return opened
    opened = _open()
    if isinstance(opened, str):
        raise DeviceError(f"{purpose} needs an NVIDIA GPU and its driver; none was found "
                          f"({opened}).{hint}")
    return opened


def synchronize():
    """Wait until all the work tex queued on the GPU is done (`cuCtxSynchronize`). A CUDA
    error of an earlier asynchronous launch is raised here, as a DeviceError naming what
    tex last queued on each stream. Does nothing where tex has not used the GPU.
    TVM: `dev.sync()`."""
    with _open_lock:
        opened = _opened
    if isinstance(opened, Device) and opened.pid == os.getpid():
        with opened.active():
            opened.synchronize("tex.synchronize")


# --- device memory ----------------------------------------------------------------------------
class Memory:
    """`nbytes` of device memory (address `pointer`, 0 for none), freed by `free()` or when
    garbage-collected. `cuMemFree` synchronizes with the device's work in flight before
    it frees (the cost CUDA's stream-ordered allocator exists to avoid), so memory that a
    queued launch uses is not reused under it."""

    def __init__(self, device: Device, nbytes: int, what: str):
        self.nbytes, self.pointer = nbytes, 0
        if nbytes:
            with device.active():
                self.pointer = int(device.call("cuMemAlloc", nbytes, what=what))
        self.free = weakref.finalize(self, release, device, "cuMemFree", self.pointer)
        self.free.atexit = False  # the process's exit frees it


def release(device: Device, function: str, handle):
    """Free a device allocation or unload a module (nothing in a forked child, or for none).
    The result is ignored: a finalizer cannot raise, and a free fails only in a context
    that has already failed, which was reported then."""
    if handle and device.pid == os.getpid():
        with device.active():
            getattr(device.driver, function)(handle)


def copy_to_device(device: Device, pointer: int, array: np.ndarray, what: str,
                   stream: int | None = None):
    """Copy `array` to `pointer`: queued on `stream`, or at once on the legacy default
    stream (cuMemcpyHtoD, which returns once pageable memory has been staged: the
    copy to the device may still be pending on that stream)."""
    if not array.nbytes:
        return
    if stream is None:
        device.call("cuMemcpyHtoD", pointer, array.ctypes.data, array.nbytes, what=what)
    else:
        device.call("cuMemcpyHtoDAsync", pointer, array.ctypes.data, array.nbytes, stream,
                    what=what)


def copy_to_host(device: Device, array: np.ndarray, pointer: int, what: str,
                 stream: int | None = None):
    """Copy to `array` from `pointer`: queued on `stream` (the caller synchronizes it before
    reading `array`), or on the legacy default stream, returning once done."""
    if not array.nbytes:
        return
    if stream is None:
        device.call("cuMemcpyDtoH", array.ctypes.data, pointer, array.nbytes, what=what)
    else:
        device.call("cuMemcpyDtoHAsync", array.ctypes.data, pointer, array.nbytes, stream,
                    what=what)


class DeviceArray:
    """A C-contiguous array in the memory of CUDA device 0, freed when garbage-collected.

    Made by `tex.device_array(ndarray)` (a copy) or `tex.empty_device(shape, dtype)`;
    `.numpy()` copies it back. `__cuda_array_interface__` (version 3) lets CuPy,
    PyTorch and Numba use its memory.

    `stream` is the stream on which tex may have left writes to it pending (its handle;
    `tex.runtime.cuda_stream.LEGACY`, 1, for the legacy default stream), or None when
    none may be: the copy of `device_array` and every kernel call that writes it set
    it. `__cuda_array_interface__` gives it as its `stream`, so that a consumer waits
    for those writes; a tex kernel reading the array waits for them on the device, and
    `.numpy()` on the host.
    """

    __slots__ = ("shape", "dtype", "stream", "pointer", "_memory", "_device")

    def __init__(self, device: Device, shape: tuple[int, ...], dtype: np.dtype):
        """Uninitialised memory; use `empty_device` or `device_array` to make one."""
        self.shape, self.dtype, self._device = shape, dtype, device
        self.stream = None
        self._memory = Memory(device, math.prod(shape) * dtype.itemsize, "tex.DeviceArray")
        self.pointer = self._memory.pointer  # the address of the first element (0: empty)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def nbytes(self) -> int:
        return self._memory.nbytes

    @property
    def __cuda_array_interface__(self) -> dict:
        return {"shape": self.shape, "typestr": self.dtype.str, "data": (self.pointer, False),
                "strides": None, "stream": self.stream, "version": 3}

    def numpy(self) -> np.ndarray:
        """A copy in host memory, once the writes pending on `stream` are done (a CUDA error
        of an earlier asynchronous launch is raised here)."""
        out = allocate(self.shape, self.dtype)
        with self._device.active():
            if self.stream is not None:
                self._device.synchronize_stream(self.stream, "DeviceArray.numpy")
                self.stream = None
            copy_to_host(self._device, out, self.pointer, "DeviceArray.numpy")
        return out

    asnumpy = numpy  # TVM's older name

    def __repr__(self):
        return f"DeviceArray(shape={self.shape}, dtype={self.dtype})"


def empty_device(shape, dtype="float32") -> DeviceArray:
    """A new, uninitialised C-contiguous array on the GPU (device 0); a vector dtype's
    lanes are one more, last, dimension."""
    shape, dtype = array_layout(_checked_shape(shape), dtype)
    dtype = _checked_dtype(dtype, "tex.empty_device")
    return DeviceArray(require_device("tex.empty_device"), shape, dtype)


def device_array(array) -> DeviceArray:
    """A copy on the GPU (device 0) of `array` (anything `np.asarray` takes)."""
    host = np.ascontiguousarray(array)
    _checked_dtype(host.dtype, "tex.device_array")
    device = require_device("tex.device_array")
    out = DeviceArray(device, host.shape, host.dtype)
    with device.active():
        copy_to_device(device, out.pointer, host, "tex.device_array")
    out.stream = LEGACY if host.nbytes else None
    return out


def _checked_shape(shape) -> tuple[int, ...]:
    dims = tuple(shape) if isinstance(shape, (tuple, list)) else (shape,)
    if not all(isinstance(d, (int, np.integer)) and d >= 0 for d in dims):
        raise ArgumentError(f"tex.empty_device: a shape is non-negative integers, got {shape!r}")
    return tuple(int(d) for d in dims)


def _checked_dtype(dtype: np.dtype, who: str) -> np.dtype:
    if dtype.kind not in "biuf":
        raise ArgumentError(f"{who}: dtype {dtype} is not one tex kernels take "
                            "(bool, integers, floats)")
    return dtype
