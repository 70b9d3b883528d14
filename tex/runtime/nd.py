"""TVM's devices and `tvm.nd` arrays, for TE code that runs its kernels that way.

    dev = tex.cpu(0)                        # or tex.cuda(0), tex.device("cuda", 0)
    a = tex.nd.array(np_a, dev)             # a copy on the device
    c = tex.nd.empty((n, m), "float32", dev)
    f(a, b, c)
    c.numpy()                               # or c.asnumpy(): a NumPy copy

On the CPU, an array is an `NDArray`: a NumPy array (a subclass, its data on
a cache line as `tex.empty` places it) that also answers TVM's `numpy()`,
`asnumpy()`, `copyfrom`, `copyto` and `device`. On a GPU it is a `tex.DeviceArray`. Kernels take
both like any other array; tex kernels take plain NumPy arrays as well.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tex.codegen.packed_func import PackedArray
from tex.errors import ArgumentError, DeviceError
from tex.runtime.cuda_device import (DeviceArray, device_array, empty_device, gpu_available,
                                     synchronize)
from tex.runtime.host_array import allocate
from tex.runtime.host_array import empty as host_empty

__all__ = ["Device", "DeviceArray", "NDArray", "array", "cpu", "cuda", "device", "empty"]

#: Device kinds by name, with their DLPack device type (TVM's `device_type`).
_KINDS = {"cpu": 1, "llvm": 1, "cuda": 2, "gpu": 2}


@dataclass(frozen=True)
class Device:
    """Where arrays live and kernels run: `kind` "cpu" or "cuda", and `index` (tex runs
    CUDA kernels on GPU 0). TVM: `tvm.runtime.Device`, made by `tvm.cpu(0)`."""

    kind: str
    index: int = 0

    @property
    def device_type(self) -> int:
        """The DLPack device type: 1 for the CPU, 2 for CUDA."""
        return _KINDS[self.kind]

    @property
    def device_id(self) -> int:
        return self.index

    @property
    def exist(self) -> bool:
        """Whether this device is present (a GPU: tex uses GPU 0, if there is one)."""
        return self.kind == "cpu" or (self.index == 0 and gpu_available())

    def sync(self):
        """Wait for the device's pending work: on a GPU, all the work tex queued
        (`tex.synchronize()`); a CPU has none, its calls being synchronous."""
        if self.kind == "cuda":
            synchronize()

    def __str__(self):
        return f"{self.kind}({self.index})"


def device(kind: str, index: int = 0) -> Device:
    """The device `kind` ("cpu", "cuda"; "llvm" and "gpu" too) number `index`.
    TVM: `tvm.device("cuda", 0)`."""
    if kind not in _KINDS:
        raise ArgumentError(f"unknown device kind {kind!r}; expected one of {sorted(_KINDS)}")
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or index < 0:
        raise ArgumentError(f"a device index is a non-negative int, got {index!r}")
    return Device("cpu" if _KINDS[kind] == 1 else "cuda", int(index))


def cpu(index: int = 0) -> Device:
    """The CPU. TVM: `tvm.cpu(0)`."""
    return device("cpu", index)


def cuda(index: int = 0) -> Device:
    """CUDA GPU number `index` (tex runs kernels on GPU 0). TVM: `tvm.cuda(0)`."""
    return device("cuda", index)


class NDArray(PackedArray):
    """A NumPy array with TVM's `numpy()`, `asnumpy()`, `copyfrom`, `copyto` and `device`
    (the CPU)."""

    @property
    def device(self) -> Device:
        return cpu(0)

    def copyto(self, target):
        """Copy into `target`, an array of this shape (returned), or onto the device
        `target` (a new array). TVM: `NDArray.copyto`."""
        if isinstance(target, Device):
            return array(self, target)
        return super().copyto(target)


def array(source, device: Device | None = None):
    """A copy of `source` (anything `np.asarray` takes) on `device` (default: the CPU), as
    an `NDArray` or, on a GPU, a `DeviceArray`. TVM: `tvm.nd.array(x, dev)`."""
    dev = _checked_device(device, "tex.nd.array")
    host = np.asarray(source)
    if dev.kind == "cuda":
        return device_array(host)
    out = allocate(host.shape, host.dtype)
    out[...] = host
    return out.view(NDArray)


def empty(shape, dtype="float32", device: Device | None = None):
    """An uninitialised array on `device` (default: the CPU). TVM: `tvm.nd.empty`."""
    dev = _checked_device(device, "tex.nd.empty")
    if dev.kind == "cuda":
        return empty_device(shape, str(dtype))
    return host_empty(shape, dtype).view(NDArray)


def _checked_device(dev, who: str) -> Device:
    if dev is None:
        return cpu(0)
    if not isinstance(dev, Device):
        raise ArgumentError(f"{who}: expected a device such as tex.cpu(0) or tex.cuda(0), "
                            f"got {type(dev).__name__} {dev!r}")
    if dev.kind == "cuda" and dev.index != 0:
        raise DeviceError(f"{who}: tex runs CUDA kernels on GPU 0, got {dev}")
    return dev

