"""The arguments of a CUDA kernel call: what each is, where its data is, which stream.

`CudaParam.as_array` turns what a kernel is called with into an `Arg`, checked
as `tex.runtime.kernel.Param` checks an ndarray, with the same messages (dtype,
rank, C-contiguity, read-only outputs). An argument may be

- a NumPy array, or a CPU object with `__dlpack__`: host data, which the
  kernel copies to the GPU before its launches and back after (outputs,
  which are also copied in, so that elements a kernel leaves alone keep
  their values). Convenient and slow: such a call allocates, copies, waits
  for its stream and frees.
- GPU memory, used in place: a `DeviceArray`, an object with
  `__cuda_array_interface__` (CuPy, PyTorch, Numba) or one with `__dlpack__`
  on a CUDA device. It must be on device 0, C-contiguous, and aligned as the
  kernels' vector accesses need (`CudaLaunch.alignments`; ALIGNMENT, 16 bytes,
  where a launch does not say).

`CallStreams` holds a call's streams: the launch stream (given, or the first
one an argument names) and PyTorch's current stream. An `Arg` keeps the
stream of its producer's pending writes (a DeviceArray's `stream`, the
`stream` of `__cuda_array_interface__`, PyTorch's current stream for a
tensor), which the call waits for on the device; `__dlpack__` is asked to
make its data ready for the launch stream.
"""
from __future__ import annotations

import ctypes
import math
from dataclasses import dataclass

import numpy as np

from tex import dtype as dt
from tex.errors import ArgumentError
from tex.runtime.cuda_device import DeviceArray
from tex.runtime.cuda_stream import LEGACY, as_stream, is_torch_tensor, torch_stream
from tex.runtime.kernel import Param

ALIGNMENT = 16  # bytes of the widest access (float4, tex_float16x8): what a launch may need


@dataclass(slots=True)
class Arg:
    """One checked argument of a call: what `Signature` checks (`shape`, `nbytes`) and
    where the data is: `host` (copied in for the call) or device memory at `address`."""

    shape: tuple[int, ...]
    nbytes: int
    address: int  # the data's address: in host memory when `host` is set, else on the device
    host: np.ndarray | None
    owner: object  # what keeps the memory alive during the call (a DLPack capsule, say)
    stream: int | None = None  # the stream of the producer's pending writes, to wait for
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
_TYPESTRS = {}  # __cuda_array_interface__ typestr -> np.dtype, as met
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


class CallStreams:
    """The streams of one kernel call: `launch`, where its work is queued, and PyTorch's
    current stream, read once for the call's tensors (`torch`)."""

    __slots__ = ("launch", "_torch")

    def __init__(self, launch: int = LEGACY):
        self.launch, self._torch = launch, None

    @classmethod
    def of_call(cls, args, stream) -> CallStreams:
        """The streams of a call with `args` and `stream=`: the launch stream is `stream`
        (see `tex.runtime.cuda_stream.as_stream`) if given, else the first stream that an
        argument names (`named_by`), else the legacy default stream."""
        streams = cls()
        if stream is not None:
            streams.launch = as_stream(stream)
            return streams
        for value in args:
            named = streams.named_by(value)
            if named is not None:
                streams.launch = named
                break
        return streams

    def named_by(self, value) -> int | None:
        """The stream on which `value` may have pending writes, as it says: a DeviceArray's
        `stream`, PyTorch's current stream for a CUDA tensor, the `stream` of
        `__cuda_array_interface__`; None for anything else (an unreadable interface is
        reported when the argument is read)."""
        if isinstance(value, DeviceArray):
            return value.stream
        if isinstance(value, np.ndarray):
            return None
        if is_torch_tensor(value):
            return self.torch(value)
        try:
            stream = value.__cuda_array_interface__.get("stream")
            return None if stream is None else as_stream(stream)
        except Exception:  # noqa: BLE001 - the argument's own check reports it
            return None

    def torch(self, tensor) -> int:
        if self._torch is None:
            self._torch = torch_stream(tensor)
        return self._torch


class CudaParam(Param):
    """A parameter of a CUDA kernel: `as_array` takes host and device arrays (an `Arg`)."""

    alignment = ALIGNMENT  # bytes its device address must be a multiple of (see CudaKernel)

    def as_array(self, value, streams: CallStreams | None = None) -> Arg:
        """`value` as an `Arg`; `streams` are the call's (the launch stream is the one a
        DLPack producer is asked to make its data ready on; default: the legacy one)."""
        if isinstance(value, DeviceArray):
            return self._device_arg(value, value.shape, value.dtype, value.pointer,
                                    stream=value.stream)
        if isinstance(value, np.ndarray):
            return self._host_arg(value)
        streams = streams or CallStreams()
        producer = streams.torch(value) if is_torch_tensor(value) else None
        try:
            interface = getattr(value, "__cuda_array_interface__", None)
        except (RuntimeError, TypeError, ValueError) as err:  # torch: a tensor needing grad
            raise ArgumentError(f"{self.label}: cannot read its __cuda_array_interface__: "
                                f"{err}") from None
        if interface is not None:
            return self._interface_arg(value, interface, producer)
        if hasattr(value, "__dlpack__"):
            device = tuple(getattr(value, "__dlpack_device__", lambda: (_KDLCPU, 0))())
            if device[0] == _KDLCUDA:
                return self._dlpack_arg(value, device[1], streams.launch, producer)
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

    def _interface_arg(self, value, interface: dict, producer: int | None) -> Arg:
        """An array of `__cuda_array_interface__`: writes pending on its `stream`, if it
        names one, else on `producer` (PyTorch's current stream for a tensor)."""
        try:
            shape = tuple(map(int, interface["shape"]))
            typestr = interface["typestr"]
            dtype = _TYPESTRS.get(typestr) or _TYPESTRS.setdefault(typestr, np.dtype(typestr))
            address, read_only = interface["data"]
            strides = interface.get("strides")
        except (KeyError, TypeError, ValueError) as err:
            raise ArgumentError(f"{self.label}: malformed __cuda_array_interface__ "
                                f"({err!r})") from None
        if interface.get("mask") is not None:
            raise ArgumentError(f"{self.label}: masked arrays are not supported (its "
                                "__cuda_array_interface__ has a mask)")
        stream = interface.get("stream")
        if stream is not None:
            stream = as_stream(stream, f"{self.label}: the stream of its "
                                       "__cuda_array_interface__")
        return self._device_arg(value, shape, dtype, address or 0, strides=strides,
                                read_only=read_only, stream=producer if stream is None
                                else stream, ask_device=True)

    def _dlpack_arg(self, value, device_id: int, consumer: int, producer: int | None) -> Arg:
        """A CUDA array of `__dlpack__`, asked to be ready for work on `consumer` (the
        launch stream), as DLPack's stream exchange has it. A PyTorch tensor's writes may
        be pending on `producer` still."""
        if device_id != 0:
            raise ArgumentError(f"{self.label} lives on CUDA device {device_id}; tex runs "
                                "CUDA kernels on device 0")
        try:
            capsule = value.__dlpack__(stream=consumer)
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
                                strides=strides, stream=producer)

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
            raise self.alignment_error_at(address)
        return Arg(shape, nbytes, address, None, owner, stream, ask_device)

    def alignment_error_at(self, address: int) -> ArgumentError:
        return ArgumentError(f"{self.label}: its data at 0x{address:x} is not aligned to "
                             f"{self.alignment} bytes (the kernel accesses {self.alignment} "
                             "bytes at once); pass a copy, not a view at an offset")

    def check_location(self, ordinal_of, arg: Arg):
        """Raise unless `arg`'s memory is on device 0, for pointers that do not say where
        they are (those of `__cuda_array_interface__`). `ordinal_of(address)` is the
        ordinal of the device the memory is on, or why it is not CUDA memory
        (`Device.ordinal`, or a library's `tex_cuda_pointer_device`)."""
        if arg.ask_device and arg.nbytes:
            self.check_ordinal(ordinal_of(arg.address), arg.address)

    def check_ordinal(self, ordinal: int | str, address: int):
        """Raise unless `ordinal` (of `check_location`'s `ordinal_of`) is device 0."""
        if isinstance(ordinal, str):
            raise ArgumentError(f"{self.label}: its __cuda_array_interface__ address "
                                f"0x{address:x} is not CUDA memory ({ordinal})")
        if ordinal != 0:
            raise ArgumentError(f"{self.label} lives on CUDA device {ordinal}; tex runs "
                                "CUDA kernels on device 0")
