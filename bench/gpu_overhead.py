"""Benchmark: the host's cost of a CUDA kernel call, with the driver's work taken away.

    python -m bench.gpu_overhead [--calls N] [--samples N]

Builds real CUDA kernels (NVRTC; no GPU needed) from bench/gpu_schedules.py,
then answers every driver call at once (`NoOpDriver`: no GPU, no copies, no
launches) and times calls of each kernel on device arrays: what tex itself
costs per call once a kernel has been called with those shapes (checks, the
cached launch plan, the packed parameters, stream bookkeeping). Printed: the
median over `samples` batches of `calls` calls, in microseconds per call, with
the primary context already current (as PyTorch and CuPy leave it), not
current (tex pushes and pops it), and with arguments given through
`__cuda_array_interface__` (each pointer's device asked of the driver once).
Each is the calling thread's CPU time (`time.thread_time`), which is the
host's cost whether or not other processes share the cores; the first is
also given by the wall clock, which on a busy machine counts the time the OS
gives to others. The goal is at most 10 us per call.
"""
from __future__ import annotations

import argparse
import statistics
import time

from cuda.bindings import driver as cuda

import tex
from bench import gpu_schedules as cases
from tex.runtime import cuda_device

GOAL_US = 10.0
_OK = (cuda.CUresult.CUDA_SUCCESS,)


class NoOpDriver:
    """The driver calls tex makes, each answered at once with success: allocations get
    fresh aligned addresses that are never touched, launches and copies do nothing."""

    CUresult = cuda.CUresult
    CUpointer_attribute = cuda.CUpointer_attribute
    CUevent_flags = cuda.CUevent_flags
    CUdevice_attribute = cuda.CUdevice_attribute
    CUfunction_attribute = cuda.CUfunction_attribute
    CONTEXT = 0xC0
    CAPABILITY = (8, 0)  # the architecture the kernels are built for (sm_80)

    def __init__(self):
        self.current = 0  # the context current in this thread
        self._next_address = 1 << 40

    def cuDeviceGet(self, ordinal):
        return *_OK, ordinal

    def cuDevicePrimaryCtxRetain(self, device):
        return *_OK, self.CONTEXT

    def cuDeviceGetAttribute(self, attribute, device):
        major = attribute == self.CUdevice_attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR
        return *_OK, self.CAPABILITY[0 if major else 1]

    def cuCtxGetCurrent(self):
        return *_OK, self.current

    def cuCtxPushCurrent(self, context):
        return _OK

    def cuCtxPopCurrent(self):
        return *_OK, self.CONTEXT

    def cuMemAlloc(self, size):
        address = self._next_address
        self._next_address += -(-size // 256) * 256
        return *_OK, address

    def cuPointerGetAttribute(self, attribute, address):
        return *_OK, 0

    def cuModuleLoadData(self, image):
        return *_OK, "module"

    def cuModuleGetFunction(self, module, name):
        return *_OK, name

    def cuEventCreate(self, flags):
        return *_OK, "event"

    def _nothing(self, *args):
        return _OK

    cuMemFree = cuModuleUnload = cuMemcpyHtoD = cuMemcpyHtoDAsync = cuLaunchKernel = _nothing
    cuEventRecord = cuStreamWaitEvent = cuEventDestroy = cuStreamSynchronize = _nothing
    cuFuncSetAttribute = _nothing


class Interface:
    """A device array seen only through `__cuda_array_interface__` (as CuPy's)."""

    def __init__(self, array):
        self.__cuda_array_interface__ = array.__cuda_array_interface__


def _cases() -> list:
    return [cases.elementwise(1 << 20), cases.matmul(1024, 1024, 1024),
            cases.softmax(4096, 1000), cases.row_reduce(4096, 1000, "atomic")]


def per_call_us(kernel, args, calls: int, samples: int, clock=time.thread_time) -> float:
    """Median microseconds per call of `kernel(*args)` over `samples` batches, by
    `clock`."""
    for _ in range(200):
        kernel(*args)
    times = []
    for _ in range(samples):
        start = clock()
        for _ in range(calls):
            kernel(*args)
        times.append((clock() - start) / calls)
    return 1e6 * statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--samples", type=int, default=25)
    options = parser.parse_args(argv)
    built = [(case, case.build("cuda -arch=sm_80")) for case in _cases()]
    driver = NoOpDriver()
    cuda_device._opened = cuda_device.Device(driver)
    print("host cost of a CUDA kernel call, driver calls answered at once (no GPU work); "
          f"median of {options.samples} x {options.calls} calls, us per call")
    print("DeviceArray arguments: context current (CPU time, wall clock), context not "
          "current (CPU);\n__cuda_array_interface__ arguments, context current (CPU)")
    print(f"{'kernel':22s} {'launches':>8s} {'current':>8s} {'(wall)':>8s} {'pushed':>8s} "
          f"{'interface':>10s}")
    for case, kernel in built:
        args = [tex.empty_device(shape, case.dtype) for shape in case.shapes]
        args.append(kernel(*args))  # the output, allocated once
        launches = len(next(iter(kernel._plans.values())).launches)
        driver.current = driver.CONTEXT
        current = per_call_us(kernel, args, options.calls, options.samples)
        wall = per_call_us(kernel, args, options.calls, options.samples, time.perf_counter)
        interface = per_call_us(kernel, [Interface(a) for a in args], options.calls,
                                options.samples)
        driver.current = 0
        pushed = per_call_us(kernel, args, options.calls, options.samples)
        print(f"{case.name:22s} {launches:8d} {current:8.2f} {wall:8.2f} {pushed:8.2f} "
              f"{interface:10.2f}")
    print(f"goal: at most {GOAL_US:g} us per call")


if __name__ == "__main__":
    main()
