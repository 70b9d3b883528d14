"""CUDA device 0 for tex's kernels: the driver and its context, device memory, arguments.

* The driver is reached lazily: importing this module or building a kernel
  touches nothing; the first use (`gpu_available()`, a device array, a
  kernel call) initialises CUDA and retains the primary context of device 0,
  which is made current only for the duration of each use (`Device.active`).
  Without a GPU or its driver `gpu_available()` is False and any use raises
  `DeviceError`. A process forked after CUDA was initialised cannot use it
  (CUDA does not survive fork).
* Device memory: `DeviceArray` (made by `device_array(ndarray)`, a copy, or
  `empty_device(shape, dtype)`), a C-contiguous array freed when
  garbage-collected; `Memory`, the raw allocation under it and under a
  kernel's staged arguments and temporaries.
* Arguments: `CudaParam.as_array` turns what a kernel is called with into an
  `Arg`, checked as `tex.runtime.kernel.Param` checks an ndarray, with the
  same messages (dtype, rank, C-contiguity, read-only outputs). An argument
  may be

  - a NumPy array, or a CPU object with `__dlpack__`: host data, which the
    kernel copies to the GPU before its launches and back after (outputs,
    which are also copied in, so that elements a kernel leaves alone keep
    their values). Convenient and slow: every call allocates, copies and
    frees.
  - GPU memory, used in place: a `DeviceArray`, an object with
    `__cuda_array_interface__` (CuPy, PyTorch, Numba) or one with
    `__dlpack__` on a CUDA device. It must be on device 0, C-contiguous, and
    aligned as the kernels' vector accesses need (`CudaLaunch.alignments`;
    ALIGNMENT, a float4, where a launch does not say). A producer's pending
    writes are waited for: the `stream` of `__cuda_array_interface__` is
    kept to be synchronized, `__dlpack__` is asked for the legacy default
    stream.

`tex.runtime.cuda_kernel.CudaKernel` runs kernels on it.
"""
from __future__ import annotations

import ctypes
import math
import os
import threading
import weakref
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from tex import dtype as dt
from tex.errors import ArgumentError, DeviceError
from tex.runtime.host_array import allocate
from tex.runtime.kernel import Param

ALIGNMENT = 16  # bytes of the widest access (float4): the alignment a launch may need
_LEGACY_STREAM = 1  # the legacy default stream, in __dlpack__(stream=...) terms


# --- the driver -------------------------------------------------------------------------------
class Device:
    """The retained primary context of CUDA device 0, and driver calls that check results."""

    def __init__(self, driver):
        self.driver = driver
        self.pid = os.getpid()
        self.handle = self.call("cuDeviceGet", 0)
        self.context = self.call("cuDevicePrimaryCtxRetain", self.handle)
        self.stream = driver.CUstream(0)  # the legacy default stream
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
        if err != self.driver.CUresult.CUDA_SUCCESS:
            raise DeviceError(f"{what}: {function} failed with {_describe(self.driver, err)}")
        return results[0] if len(results) == 1 else tuple(results)

    @contextmanager
    def active(self):
        """The primary context is current in this thread inside the block (the caller's after)."""
        self.call("cuCtxPushCurrent", self.context)
        try:
            yield
        finally:
            self.driver.cuCtxPopCurrent()


def _describe(driver, err) -> str:
    """A CUresult as `NAME (what it means)`."""
    _, name = driver.cuGetErrorName(err)
    _, text = driver.cuGetErrorString(err)
    name = name.decode() if name else getattr(err, "name", str(err))
    return f"{name} ({text.decode()})" if text else name


_opened: Device | str | None = None  # the device, why there is none, or not tried yet
_open_lock = threading.Lock()


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
    opened = _open()
    if isinstance(opened, str):
        raise DeviceError(f"{purpose} needs an NVIDIA GPU and its driver; none was found "
                          f"({opened}).{hint}")
    return opened


# --- device memory ----------------------------------------------------------------------------
class Memory:
    """`nbytes` of device memory (address `pointer`, 0 for none), freed by `free()` or when
    garbage-collected."""

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


def copy_to_device(device: Device, pointer: int, array: np.ndarray, what: str):
    if array.nbytes:
        device.call("cuMemcpyHtoD", pointer, array.ctypes.data, array.nbytes, what=what)


def copy_to_host(device: Device, array: np.ndarray, pointer: int, what: str):
    if array.nbytes:
        device.call("cuMemcpyDtoH", array.ctypes.data, pointer, array.nbytes, what=what)


class DeviceArray:
    """A C-contiguous array in the memory of CUDA device 0, freed when garbage-collected.

    Made by `tex.device_array(ndarray)` (a copy) or `tex.empty_device(shape, dtype)`;
    `.numpy()` copies it back. `__cuda_array_interface__` (version 3) lets CuPy,
    PyTorch and Numba use its memory.
    """

    __slots__ = ("shape", "dtype", "_memory", "_device")

    def __init__(self, device: Device, shape: tuple[int, ...], dtype: np.dtype):
        """Uninitialised memory; use `empty_device` or `device_array` to make one."""
        self.shape, self.dtype, self._device = shape, dtype, device
        self._memory = Memory(device, math.prod(shape) * dtype.itemsize, "tex.DeviceArray")

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def nbytes(self) -> int:
        return self._memory.nbytes

    @property
    def pointer(self) -> int:
        """The device address of the first element (0 when empty)."""
        return self._memory.pointer

    @property
    def __cuda_array_interface__(self) -> dict:
        # stream None: no writes are pending, since every tex call waits for its kernels.
        return {"shape": self.shape, "typestr": self.dtype.str, "data": (self.pointer, False),
                "strides": None, "stream": None, "version": 3}

    def numpy(self) -> np.ndarray:
        """A copy in host memory."""
        out = allocate(self.shape, self.dtype)
        with self._device.active():
            copy_to_host(self._device, out, self.pointer, "DeviceArray.numpy")
        return out

    asnumpy = numpy  # TVM's older name

    def __repr__(self):
        return f"DeviceArray(shape={self.shape}, dtype={self.dtype})"


def empty_device(shape, dtype="float32") -> DeviceArray:
    """A new, uninitialised C-contiguous array on the GPU (device 0)."""
    shape, dtype = _checked_shape(shape), _checked_dtype(np.dtype(dtype), "tex.empty_device")
    return DeviceArray(require_device("tex.empty_device"), shape, dtype)


def device_array(array) -> DeviceArray:
    """A copy on the GPU (device 0) of `array` (anything `np.asarray` takes)."""
    host = np.ascontiguousarray(array)
    _checked_dtype(host.dtype, "tex.device_array")
    device = require_device("tex.device_array")
    out = DeviceArray(device, host.shape, host.dtype)
    with device.active():
        copy_to_device(device, out.pointer, host, "tex.device_array")
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


# --- arguments --------------------------------------------------------------------------------
@dataclass(slots=True)
class Arg:
    """One checked argument of a call: what `Signature` checks (`shape`, `nbytes`) and
    where the data is: `host` (copied in for the call) or device memory at `address`."""

    shape: tuple[int, ...]
    nbytes: int
    address: int  # the data's address: in host memory when `host` is set, else on the device
    host: np.ndarray | None
    owner: object  # what keeps the memory alive during the call (a DLPack capsule, say)
    stream: int | None = None  # the producer's stream to wait for (__cuda_array_interface__)
    ask_device: bool = False  # whether the driver must say which device `address` is on


class _DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class _DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class _DLTensor(ctypes.Structure):
    """The head of DLPack's DLManagedTensor, which a "dltensor" capsule points to."""

    _fields_ = [("data", ctypes.c_void_p), ("device", _DLDevice), ("ndim", ctypes.c_int32),
                ("dtype", _DLDataType), ("shape", ctypes.POINTER(ctypes.c_int64)),
                ("strides", ctypes.POINTER(ctypes.c_int64)), ("byte_offset", ctypes.c_uint64)]


_capsule_pointer = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.py_object, ctypes.c_char_p)(
    ("PyCapsule_GetPointer", ctypes.pythonapi))
_KDLCPU, _KDLCUDA = 1, 2
_DLPACK_DTYPES = {  # (type code, bits, lanes) -> dtype
    (0, 8, 1): dt.int8, (0, 16, 1): dt.int16, (0, 32, 1): dt.int32, (0, 64, 1): dt.int64,
    (1, 8, 1): dt.uint8, (1, 16, 1): dt.uint16, (1, 32, 1): dt.uint32, (1, 64, 1): dt.uint64,
    (2, 16, 1): dt.float16, (2, 32, 1): dt.float32, (2, 64, 1): dt.float64,
    (4, 16, 1): dt.bfloat16, (6, 8, 1): dt.bool_,
}


def _c_contiguous(shape: tuple, strides, itemsize: int) -> bool:
    """Whether `strides` (bytes; None: compact) lay `shape` out in C order. Dimensions of
    size 1 may have any stride, and an empty array is contiguous (as NumPy has it)."""
    if strides is None or 0 in shape:
        return True
    if len(strides) != len(shape):
        return False
    expected = itemsize
    for size, stride in zip(reversed(shape), reversed(strides)):
        if size != 1 and stride != expected:
            return False
        expected *= size
    return True


class CudaParam(Param):
    """A parameter of a CUDA kernel: `as_array` takes host and device arrays (an `Arg`)."""

    alignment = ALIGNMENT  # bytes its device address must be a multiple of (see CudaKernel)

    def as_array(self, value) -> Arg:
        if isinstance(value, DeviceArray):
            return self._device_arg(value, value.shape, value.dtype, value.pointer)
        if isinstance(value, np.ndarray):
            return self._host_arg(value)
        try:
            interface = getattr(value, "__cuda_array_interface__", None)
        except (RuntimeError, TypeError, ValueError) as err:  # torch: a tensor needing grad
            raise ArgumentError(f"{self.label}: cannot read its __cuda_array_interface__: "
                                f"{err}") from None
        if interface is not None:
            return self._interface_arg(value, interface)
        if hasattr(value, "__dlpack__"):
            device = tuple(getattr(value, "__dlpack_device__", lambda: (_KDLCPU, 0))())
            if device[0] == _KDLCUDA:
                return self._dlpack_arg(value, device[1])
            if device[0] != _KDLCPU:
                raise ArgumentError(f"{self.label} lives on DLPack device {device}; CUDA "
                                    "kernels take host (kDLCPU) or CUDA (kDLCUDA) arrays")
            return self._host_arg(value)
        raise ArgumentError(f"{self.label}: expected a numpy.ndarray, a tex.DeviceArray or "
                            "an object with __cuda_array_interface__ or __dlpack__, got "
                            f"{type(value).__name__}")

    def _host_arg(self, value) -> Arg:
        array = super().as_array(value)
        return Arg(array.shape, array.nbytes, array.ctypes.data, array, value)

    def _interface_arg(self, value, interface: dict) -> Arg:
        try:
            shape = tuple(int(d) for d in interface["shape"])
            dtype = np.dtype(interface["typestr"])
            address, read_only = interface["data"]
            strides = interface.get("strides")
        except (KeyError, TypeError, ValueError) as err:
            raise ArgumentError(f"{self.label}: malformed __cuda_array_interface__ "
                                f"({err!r})") from None
        if interface.get("mask") is not None:
            raise ArgumentError(f"{self.label}: masked arrays are not supported (its "
                                "__cuda_array_interface__ has a mask)")
        return self._device_arg(value, shape, dtype, address or 0, strides=strides,
                                read_only=read_only, stream=interface.get("stream"),
                                ask_device=True)

    def _dlpack_arg(self, value, device_id: int) -> Arg:
        if device_id != 0:
            raise ArgumentError(f"{self.label} lives on CUDA device {device_id}; tex runs "
                                "CUDA kernels on device 0")
        try:
            capsule = value.__dlpack__(stream=_LEGACY_STREAM)
            t = _DLTensor.from_address(_capsule_pointer(capsule, b"dltensor"))
        except (BufferError, RuntimeError, TypeError, ValueError) as err:
            raise ArgumentError(f"{self.label}: cannot read it through __dlpack__: "
                                f"{err}") from None
        key = (t.dtype.code, t.dtype.bits, t.dtype.lanes)
        if key not in _DLPACK_DTYPES:
            raise ArgumentError(f"{self.label}: its DLPack dtype (code {key[0]}, {key[1]} bits, "
                                f"{key[2]} lanes) is not one tex kernels take")
        dtype = _DLPACK_DTYPES[key].numpy
        shape = tuple(t.shape[k] for k in range(t.ndim))
        strides = tuple(t.strides[k] * dtype.itemsize for k in range(t.ndim)) \
            if t.strides else None
        return self._device_arg((value, capsule), shape, dtype, (t.data or 0) + t.byte_offset,
                                strides=strides)

    def _device_arg(self, owner, shape, dtype, address, *, strides=None, read_only=False,
                    stream=None, ask_device=False) -> Arg:
        """Device memory at `address`, checked as `Param.as_array` checks an ndarray, and
        for alignment. `strides` are in bytes."""
        if dtype != self.dtype:
            raise self.dtype_error(dtype)
        if len(shape) != self.ndim:
            raise self.rank_error(shape)
        if not _c_contiguous(shape, strides, dtype.itemsize):
            raise self.layout_error(strides, "pass a C-contiguous copy of it "
                                             "(x.contiguous(), cupy.ascontiguousarray(x))")
        if self.is_output and read_only:
            raise self.read_only_error()
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes and address % self.alignment:
            raise ArgumentError(f"{self.label}: its data at 0x{address:x} is not aligned to "
                                f"{self.alignment} bytes (the kernel accesses "
                                f"{self.alignment} bytes at once); pass a copy, not a view at "
                                "an offset")
        return Arg(shape, nbytes, address, None, owner, stream, ask_device)

    def check_location(self, device: Device, arg: Arg):
        """Raise unless `arg`'s memory is on device 0, for pointers that do not say where
        they are (those of `__cuda_array_interface__`)."""
        if not arg.ask_device or not arg.nbytes:
            return
        attribute = device.driver.CUpointer_attribute.CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL
        err, ordinal = device.driver.cuPointerGetAttribute(attribute, arg.address)
        if err != device.driver.CUresult.CUDA_SUCCESS:
            raise ArgumentError(f"{self.label}: its __cuda_array_interface__ address "
                                f"0x{arg.address:x} is not CUDA memory "
                                f"({_describe(device.driver, err)})")
        if int(ordinal) != 0:
            raise ArgumentError(f"{self.label} lives on CUDA device {int(ordinal)}; tex runs "
                                "CUDA kernels on device 0")
