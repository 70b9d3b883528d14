"""Running compiled kernels: argument checking, the compile cache, the CUDA driver.

`build_kernel(func, target)` is the short way from a LoweredFunc to a callable
`Kernel`; `compile_cached` compiles each distinct program once. `CudaKernel`
runs a compiled CUDA module; `DeviceArray` (`device_array`, `empty_device`) is
GPU memory, `gpu_available()` says whether CUDA kernels can run here, and
`synchronize()` waits for the work CUDA kernel calls queued.
"""
from tex.runtime.cache import clear_cache, compile_cached
from tex.runtime.cuda_device import (DeviceArray, device_array, empty_device, gpu_available,
                                     synchronize)
from tex.runtime.cuda_kernel import CudaKernel
from tex.runtime.kernel import Kernel, build_kernel

__all__ = ["CudaKernel", "DeviceArray", "Kernel", "build_kernel", "clear_cache", "compile_cached",
           "device_array", "empty_device", "gpu_available", "synchronize"]
