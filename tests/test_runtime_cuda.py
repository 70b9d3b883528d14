"""CudaKernel and DeviceArray: argument checks and errors on any machine; runs on a GPU.

The kernels are written by hand in CUDA C and compiled with NVRTC here, so these
tests need neither the lowering nor the CUDA emitter. Tests that launch are
marked `needs_gpu`; without a GPU the rest check that every argument error comes
before the device is needed and that a call then says a GPU is missing, and the
GPU tests run again on a host stand-in for the driver (at the end of the file).
Objects that only pretend to be on the GPU (host memory behind
`__cuda_array_interface__` or a kDLCUDA `__dlpack__`) never reach a launch on a
machine with a GPU.
"""
import ctypes
import enum
import gc
import inspect

import numpy as np
import pytest
from numpy.lib.stride_tricks import as_strided
from cuda.bindings import nvrtc

from tex.runtime import cuda_device
from tex import dtype as dt
from tex.codegen.cuda import CudaLaunch, CudaModule
from tex.dtype import INDEX
from tex.errors import ArgumentError, BuildError, DeviceError
from tex.expr import Binary, Const, Var
from tex.ir import Buffer, For, Load, LoweredFunc, Store
from tex.runtime.cuda_device import DeviceArray, device_array, empty_device, gpu_available
from tex.runtime.cuda_kernel import CudaKernel
from tex.target import Target

needs_gpu = pytest.mark.skipif(not gpu_available(), reason="needs an NVIDIA GPU")
without_gpu = pytest.mark.skipif(gpu_available(), reason="checks a machine without a GPU")
RNG = np.random.default_rng(5)
TARGET = Target("cuda")  # the architecture of the GPU present, else sm_80

ADD_ROWS = """
extern "C" __global__ void add_rows_kernel0(const float* __restrict__ A,
        const float* __restrict__ B, float* __restrict__ C, long long n, long long m) {
    long long k = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (k < n * m) C[k] = A[k] + B[k % m];
}
"""

TWICE_THEN_ADD = """
extern "C" __global__ void twice(const float* __restrict__ A, float* __restrict__ T,
        long long n, long long m) {
    long long k = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (k < n * m) T[k] = 2.0f * A[k];
}
extern "C" __global__ void add_row(const float* __restrict__ T, const float* __restrict__ B,
        float* __restrict__ C, long long n, long long m) {
    long long k = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (k < n * m) C[k] = T[k] + B[k % m];
}
"""


def cubin(source: str) -> bytes:
    """`source` compiled by NVRTC for TARGET's architecture."""
    err, program = nvrtc.nvrtcCreateProgram(source.encode(), b"test.cu", 0, [], [])
    assert err == nvrtc.nvrtcResult.NVRTC_SUCCESS
    err, = nvrtc.nvrtcCompileProgram(program, 1, [f"-arch={TARGET.arch}".encode()])
    assert err == nvrtc.nvrtcResult.NVRTC_SUCCESS, source
    _, size = nvrtc.nvrtcGetCUBINSize(program)
    code = b" " * size
    nvrtc.nvrtcGetCUBIN(program, code)
    nvrtc.nvrtcDestroyProgram(program)
    return code


class Module(CudaModule):
    """A CudaModule whose sources say which format was asked for."""

    def get_source(self, fmt):
        return f"{fmt} source of {self.launches[0].name}"


def i64(value):
    return Const(INDEX, value)


def add_rows_program():
    """C[i, j] = A[i, j] + B[j] for A, C of shape (n, m), B of shape (m,)."""
    n, m = Var("n"), Var("m")
    A, B = Buffer("A", dt.float32, (n, m)), Buffer("B", dt.float32, (m,))
    C = Buffer("C", dt.float32, (n, m))
    i, j = Var("i"), Var("j")
    at = Binary("add", Binary("mul", i, m), j)
    body = For(i, i64(0), n, "serial", For(j, i64(0), m, "serial", Store(
        C, Binary("add", Load(A, (at,)), Load(B, (j,))), (at,))))
    return LoweredFunc("add_rows", (A, B, C), (n, m), body, (C,)), (n, m)


def blocks_of(n, m, threads=128):
    """One thread per element: the grid (ceil(n*m / threads), 1, 1)."""
    total = Binary("mul", n, m)
    return (Binary("floordiv", Binary("add", total, i64(threads - 1)), i64(threads)),
            i64(1), i64(1))


def add_rows_kernel(grid=blocks_of, block=(128, 1, 1), alignments=(), shared_bytes=0):
    """add_rows in one launch of `grid(n, m)` blocks of `block` threads."""
    func, (n, m) = add_rows_program()
    A, B, C = func.params
    launch = CudaLaunch("add_rows_kernel0", grid(n, m), tuple(i64(b) for b in block),
                        (A, B, C), (n, m), alignments, shared_bytes)
    return CudaKernel(func, Module(TARGET, ADD_ROWS, cubin(ADD_ROWS), (launch,), ()))


def twice_then_add_kernel():
    """C = 2 * A + B[None, :] in two launches through a temporary T."""
    func, (n, m) = add_rows_program()
    A, B, C = func.params
    T = Buffer("T", dt.float32, (n, m))
    block = (i64(128), i64(1), i64(1))
    launches = (CudaLaunch("twice", blocks_of(n, m), block, (A, T), (n, m)),
                CudaLaunch("add_row", blocks_of(n, m), block, (T, B, C), (n, m)))
    module = Module(TARGET, TWICE_THEN_ADD, cubin(TWICE_THEN_ADD), launches, (T,))
    return CudaKernel(func, module)


@pytest.fixture(scope="module")
def kernel():
    return add_rows_kernel()


def data(n=37, m=5):
    return RNG.random((n, m), dtype=np.float32), RNG.random(m, dtype=np.float32)


class CudaArrayInterface:
    """What a CuPy array looks like to the runtime: `__cuda_array_interface__` over the
    memory of `owner` (host memory in tests without a GPU), with `changes` to its fields."""

    def __init__(self, owner, **changes):
        self.owner = owner
        if isinstance(owner, np.ndarray):
            interface = {"shape": owner.shape, "typestr": owner.dtype.str, "strides": None,
                         "data": (owner.ctypes.data, False), "version": 3}
        else:
            interface = owner.__cuda_array_interface__
        self.__cuda_array_interface__ = {**interface, **changes}


def without_field(value: CudaArrayInterface, field: str) -> CudaArrayInterface:
    del value.__cuda_array_interface__[field]
    return value


class CudaDLPack:
    """What a CUDA tensor looks like through DLPack only: `array`'s capsule, on `device`."""

    def __init__(self, array, device=(2, 0)):
        self.array, self.device, self.streams = array, device, []

    def __dlpack__(self, stream=None):
        self.streams.append(stream)
        return self.array.__dlpack__()

    def __dlpack_device__(self):
        return self.device


# --- building ---------------------------------------------------------------------------------
def test_sources_and_attributes(kernel):
    func = kernel.func
    assert kernel.name == "add_rows" and kernel.target == TARGET
    assert kernel.get_source("tex") == kernel.get_source() == str(func)
    assert kernel.get_source("cuda") == "cuda source of add_rows_kernel0"
    assert kernel.get_source("ptx") == "ptx source of add_rows_kernel0"
    with pytest.raises(ArgumentError, match=r"unknown source format 'll'.*'tex', 'cuda', 'ptx'"):
        kernel.get_source("ll")
    assert repr(kernel) == f"<tex.CudaKernel add_rows for {TARGET}>"


def test_a_launch_of_an_unknown_buffer_is_a_build_error():
    func, (n, m) = add_rows_program()
    stray = Buffer("S", dt.float32, (n,))
    launch = CudaLaunch("k", blocks_of(n, m), (i64(1),) * 3, (stray,), ())
    with pytest.raises(BuildError, match="takes buffer S, which is neither a parameter nor"):
        CudaKernel(func, Module(TARGET, "", b"", (launch,), ()))


def test_alignments_for_each_buffer_or_none():
    func, (n, m) = add_rows_program()
    launch = CudaLaunch("k", blocks_of(n, m), (i64(1),) * 3, func.params, (n, m), (4, 4))
    with pytest.raises(BuildError, match="CUDA kernel k of add_rows gives 2 alignments for 3 "
                                         "buffers"):
        CudaKernel(func, Module(TARGET, "", b"", (launch,), ()))


def test_a_temporary_sized_by_an_unknown_variable_is_a_build_error():
    func, (n, m) = add_rows_program()
    T = Buffer("T", dt.float32, (Var("k"),))
    launch = CudaLaunch("k", blocks_of(n, m), (i64(1),) * 3, (T,), (n,))
    with pytest.raises(BuildError, match="temporary T of add_rows uses k, which is not a size"):
        CudaKernel(func, Module(TARGET, "", b"", (launch,), (T,)))


# --- argument errors, before any device is needed ------------------------------------------
def test_wrong_number_of_arguments(kernel):
    a, b = data()
    with pytest.raises(ArgumentError, match=r"takes 3 arguments \(A, B, C\) or its 2 inputs "
                                            r"\(A, B\).*got 1"):
        kernel(a)


def test_wrong_dtype_whatever_the_array(kernel):
    a, b = data()
    wrong = a.astype("float64")
    for value in (wrong, CudaArrayInterface(wrong), CudaDLPack(wrong)):
        with pytest.raises(ArgumentError, match=r"argument A \(#0\): expected dtype float32, "
                                                r"got float64"):
            kernel(value, b)


def test_wrong_rank(kernel):
    a, b = data()
    with pytest.raises(ArgumentError, match=r"argument B \(#1\): expected 1 dimension.*got 2"):
        kernel(a, CudaArrayInterface(a))


def test_disagreeing_size_variable_names_both_arguments(kernel):
    a, b = data(37, 5)
    for short_b in (b[:4], CudaArrayInterface(b[:4]), CudaDLPack(b[:4])):
        with pytest.raises(ArgumentError, match=r"argument B \(#1\): dimension 0 is m = 4, but "
                                                r"argument A \(#0\) dimension 1 set m = 5"):
            kernel(a, short_b)
    with pytest.raises(ArgumentError, match=r"argument C \(#2\): dimension 0 is n = 36"):
        kernel(a, b, CudaArrayInterface(np.empty((36, 5), "float32")))


def test_device_arrays_must_be_c_contiguous(kernel):
    a, b = data(37, 10)
    fortran = np.asfortranarray(a)
    with pytest.raises(ArgumentError, match=r"argument A \(#0\) is not C-contiguous \(strides "
                                            r"\(4, 148\)\); pass a C-contiguous copy"):
        kernel(CudaArrayInterface(fortran, strides=fortran.strides), b[:10])
    with pytest.raises(ArgumentError, match=r"argument A \(#0\) is not C-contiguous"):
        kernel(CudaDLPack(a.T.copy().T), b[:10])


def test_device_arrays_must_be_aligned_as_the_kernel_accesses_them(kernel):
    a, b = data(37, 5)
    a4, b4 = (CudaArrayInterface(x, data=(x.ctypes.data + 4, False)) for x in (a, b))
    with pytest.raises(ArgumentError, match=rf"argument A \(#0\): its data at "
                                            rf"0x{a.ctypes.data + 4:x} is not aligned to 16 "
                                            r"bytes \(the kernel accesses 16 bytes at once\)"):
        kernel(a4, b)  # the launch does not say: 16 bytes
    scalar_a = add_rows_kernel(alignments=(4, 8, 16))
    with pytest.raises(ArgumentError, match=r"argument B \(#1\): .* not aligned to 8 bytes"):
        scalar_a(a4, b4)


def test_read_only_device_output(kernel):
    a, b = data()
    c = np.empty_like(a)
    with pytest.raises(ArgumentError, match=r"argument C \(#2\) is an output but .*read-only"):
        kernel(a, b, CudaArrayInterface(c, data=(c.ctypes.data, True)))


def test_output_must_not_overlap_an_input(kernel):
    a, b = data()
    with pytest.raises(ArgumentError, match=r"output argument C \(#2\) overlaps argument A"):
        kernel(CudaArrayInterface(a), b, CudaArrayInterface(a))


def test_devices_other_than_cuda_device_0(kernel):
    a, b = data()
    with pytest.raises(ArgumentError, match=r"argument B \(#1\) lives on CUDA device 1; tex "
                                            r"runs CUDA kernels on device 0"):
        kernel(a, CudaDLPack(b, device=(2, 1)))
    with pytest.raises(ArgumentError, match=r"argument B \(#1\) lives on DLPack device \(8, 0\)"):
        kernel(a, CudaDLPack(b, device=(8, 0)))


def test_non_array_argument(kernel):
    a, b = data()
    with pytest.raises(ArgumentError, match=r"argument B \(#1\): expected a numpy.ndarray, a "
                                            r"tex.DeviceArray or an object with "
                                            r"__cuda_array_interface__ or __dlpack__, got list"):
        kernel(a, list(b))


def test_malformed_cuda_array_interface(kernel):
    a, b = data()
    with pytest.raises(ArgumentError, match=r"argument A \(#0\): malformed "
                                            r"__cuda_array_interface__ \(KeyError\('typestr'\)"):
        kernel(without_field(CudaArrayInterface(a), "typestr"), b)


def test_launch_dimensions_are_checked_against_the_target():
    a, b = data(37, 5)
    with pytest.raises(ArgumentError, match=rf"CUDA kernel add_rows_kernel0 of add_rows \(for "
                                            rf"n = 37, m = 5\): block dimension x is 2048, "
                                            rf"above the limit 1024 of {TARGET}"):
        add_rows_kernel(block=(2048, 1, 1))(a, b)
    with pytest.raises(ArgumentError, match=r"a block of 32 x 32 x 2 = 2048 threads, above "
                                            r"the limit 1024"):
        add_rows_kernel(block=(32, 32, 2))(a, b)
    rows = add_rows_kernel(grid=lambda n, m: (i64(1), n, i64(1)))
    with pytest.raises(ArgumentError, match=r"grid dimension y is 70000, above the limit 65535"):
        rows(np.zeros((70000, 1), "float32"), np.zeros(1, "float32"))


def test_device_array_arguments_are_checked():
    with pytest.raises(ArgumentError, match=r"tex.empty_device: a shape is non-negative "
                                            r"integers, got \(3, -1\)"):
        empty_device((3, -1))
    with pytest.raises(ArgumentError, match=r"tex.device_array: dtype complex128 is not one"):
        device_array(np.zeros(3, complex))


# --- without a GPU ----------------------------------------------------------------------------
@without_gpu
def test_a_call_without_a_gpu_raises_device_error(kernel):
    assert gpu_available() is False
    a, b = data()
    message = (r"running CUDA kernel add_rows needs an NVIDIA GPU and its driver; none was "
               r"found \(.+\)\. Building works without one: kernel.get_source\('cuda'\)")
    with pytest.raises(DeviceError, match=message):
        kernel(a, b)
    with pytest.raises(DeviceError, match=message):
        kernel(a, b, np.empty_like(a))


@without_gpu
def test_well_formed_device_objects_pass_the_checks_then_need_the_gpu(kernel):
    a, b = data()
    c = np.empty_like(a)
    tensor = CudaDLPack(b)
    for args in ((CudaArrayInterface(a), tensor, CudaArrayInterface(c)),
                 (CudaArrayInterface(a), tensor),  # outputs would be DeviceArrays
                 # a dimension of size 1 may have any stride
                 (CudaDLPack(as_strided(a, (1, 5), (4000, 4))), CudaDLPack(b))):
        with pytest.raises(DeviceError, match="running CUDA kernel add_rows needs an NVIDIA"):
            kernel(*args)
    assert tensor.streams == [1, 1]  # the legacy default stream


@without_gpu
def test_device_arrays_need_a_gpu():
    with pytest.raises(DeviceError, match=r"tex.device_array needs an NVIDIA GPU"):
        device_array(np.zeros(3))
    with pytest.raises(DeviceError, match=r"tex.empty_device needs an NVIDIA GPU"):
        empty_device((2, 3), "int32")


# --- on a GPU ---------------------------------------------------------------------------------
@needs_gpu
def test_numpy_arrays_in_and_out(kernel):
    a, b = data(300, 7)
    c = np.full_like(a, np.nan)
    assert kernel(a, b, c) is None
    np.testing.assert_array_equal(c, a + b)
    out = kernel(a, b)
    assert isinstance(out, np.ndarray) and out.shape == (300, 7)
    np.testing.assert_array_equal(out, a + b)


@needs_gpu
def test_device_array_round_trip():
    a = RNG.integers(-100, 100, (4, 33)).astype("int16")
    d = device_array(a)
    assert isinstance(d, DeviceArray)
    assert d.shape == (4, 33) and d.dtype == np.int16 and d.nbytes == a.nbytes
    interface = d.__cuda_array_interface__
    assert interface["version"] == 3 and interface["typestr"] == "<i2"
    assert interface["data"][0] % 16 == 0 and interface["strides"] is None
    np.testing.assert_array_equal(d.numpy(), a)
    empty = empty_device((0, 5))
    assert empty.nbytes == 0 and empty.numpy().shape == (0, 5)


@needs_gpu
def test_device_arrays_in_and_out(kernel):
    a, b = data(1000, 3)
    da, db, dc = device_array(a), device_array(b), empty_device(a.shape, "float32")
    assert kernel(da, db, dc) is None
    np.testing.assert_array_equal(dc.numpy(), a + b)
    out = kernel(da, db)
    assert isinstance(out, DeviceArray) and out.shape == (1000, 3)
    np.testing.assert_array_equal(out.numpy(), a + b)


@needs_gpu
def test_host_and_device_arrays_mix(kernel):
    a, b = data(64, 9)
    out = kernel(a, device_array(b))
    assert isinstance(out, DeviceArray)
    np.testing.assert_array_equal(out.numpy(), a + b)
    c = np.empty_like(a)
    kernel(device_array(a), b, c)
    np.testing.assert_array_equal(c, a + b)


@needs_gpu
def test_cuda_array_interface_of_device_memory(kernel):
    a, b = data(50, 4)
    dc = empty_device(a.shape)
    kernel(CudaArrayInterface(device_array(a)), device_array(b), CudaArrayInterface(dc))
    np.testing.assert_array_equal(dc.numpy(), a + b)


@needs_gpu
def test_an_empty_launch_is_skipped(kernel):
    a, b = data(0, 5)
    out = kernel(a, b)
    assert out.shape == (0, 5)
    assert kernel(device_array(a), device_array(b)).shape == (0, 5)


@needs_gpu
def test_temporaries_between_launches():
    k = twice_then_add_kernel()
    for n, m in ((10, 3), (500, 17), (20, 2)):  # the workspace grows, then is reused
        a, b = data(n, m)
        np.testing.assert_allclose(k(a, b), 2 * a + b, rtol=1e-6)
        dc = empty_device((n, m))
        k(device_array(a), device_array(b), dc)
        np.testing.assert_allclose(dc.numpy(), 2 * a + b, rtol=1e-6)


@needs_gpu
def test_cupy_arrays(kernel):
    cp = pytest.importorskip("cupy")
    a, b = data(200, 8)
    ca, cb = cp.asarray(a), cp.asarray(b)
    cc = cp.empty_like(ca)
    kernel(ca, cb, cc)
    np.testing.assert_array_equal(cp.asnumpy(cc), a + b)
    np.testing.assert_array_equal(kernel(ca, cb).numpy(), a + b)


@needs_gpu
def test_torch_tensors(kernel):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA")
    a, b = data(200, 8)
    ta, tb = torch.from_numpy(a).cuda(), torch.from_numpy(b).cuda()
    tc = torch.empty_like(ta)
    kernel(ta, tb, tc)  # through __cuda_array_interface__
    np.testing.assert_array_equal(tc.cpu().numpy(), a + b)

    class OnlyDLPack:
        def __init__(self, tensor):
            self.tensor = tensor

        def __dlpack__(self, **kwargs):
            return self.tensor.__dlpack__(**kwargs)

        def __dlpack_device__(self):
            return self.tensor.__dlpack_device__()

    tc.zero_()
    kernel(OnlyDLPack(ta), OnlyDLPack(tb), OnlyDLPack(tc))
    np.testing.assert_array_equal(tc.cpu().numpy(), a + b)


@needs_gpu
def test_host_memory_behind_cuda_array_interface_is_refused(kernel):
    # Last in the file: were the check to fail, the launch would break the CUDA context.
    a, b = data()
    with pytest.raises(ArgumentError, match=r"argument A \(#0\): its __cuda_array_interface__ "
                                            r"address 0x[0-9a-f]+ is not CUDA memory"):
        kernel(CudaArrayInterface(a), b)


# --- the GPU tests on a host stand-in for the driver (machines without a GPU) ----------------
# Like Numba's CUDA simulator: the calls CudaKernel and DeviceArray make, answered from host
# memory, with the checks the real driver would make (a current context, int pointers and
# sizes, copies within allocations, launches of at least one block). A launch runs the NumPy
# equivalent of the CUDA C above. This checks staging, copies, launch arguments, temporaries,
# skipped launches, errors and freeing wherever the tests run; the GPU checks the rest.
def floats(address: int, count: int) -> np.ndarray:
    return np.ctypeslib.as_array((ctypes.c_float * count).from_address(address)) \
        if count else np.zeros(0, np.float32)


def run_add_rows(A, B, C, n, m):
    floats(C, n * m)[:] = floats(A, n * m) + np.tile(floats(B, m), n)


def run_twice(A, T, n, m):
    floats(T, n * m)[:] = 2 * floats(A, n * m)


class HostDriver:
    """Enough of `cuda.bindings.driver`, in host memory, for the kernels of this file.

    Work runs when it is queued; `calls` records each call's name and arguments, so that
    tests can check which stream work went to and what was waited for."""

    class CUresult(enum.IntEnum):
        CUDA_SUCCESS = 0
        CUDA_ERROR_INVALID_VALUE = 1
        CUDA_ERROR_LAUNCH_FAILED = 719

    class CUpointer_attribute(enum.IntEnum):
        CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL = 9

    class CUevent_flags(enum.IntEnum):
        CU_EVENT_DEFAULT = 0
        CU_EVENT_DISABLE_TIMING = 2

    class CUdevice_attribute(enum.IntEnum):
        CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75
        CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76

    class CUfunction_attribute(enum.IntEnum):
        CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8

    CUstream = int
    CONTEXT = 0xC0
    KERNELS = {"add_rows_kernel0": run_add_rows, "twice": run_twice, "add_row": run_add_rows}
    OK = (CUresult.CUDA_SUCCESS,)

    def __init__(self):
        self.allocations = {}  # address -> (buffer, size)
        self.contexts = []  # the thread's context stack
        self.events = set()
        self.launches, self.fail_launches, self.calls = [], False, []
        self.failing = set()  # the functions that fail (CUDA_ERROR_LAUNCH_FAILED)
        self.elapsed_ms = 0.0  # what cuEventElapsedTime answers
        digits = TARGET.arch.removeprefix("sm_").removesuffix("a")
        self.capability = (int(digits[:-1]), int(digits[-1]))  # the target's, unless changed
        self.images, self.function_attributes, self.shared_bytes = [], {}, []

    @property
    def depth(self):
        return len(self.contexts)

    def called(self, *names) -> list:
        """The recorded calls of the functions `names`, as (name, *arguments)."""
        return [c for c in self.calls if c[0] in names]

    def __getattribute__(self, name):
        value = object.__getattribute__(self, name)
        if name.startswith("cu") and callable(value):
            def record(*args):
                self.calls.append((name, *args))
                if name in self.failing:
                    return (self.CUresult.CUDA_ERROR_LAUNCH_FAILED,)
                return value(*args)
            return record
        return value

    def cuDeviceGet(self, ordinal):
        return *self.OK, ordinal

    def cuDevicePrimaryCtxRetain(self, device):
        return *self.OK, self.CONTEXT

    def cuCtxGetCurrent(self):
        return *self.OK, self.contexts[-1] if self.contexts else 0

    def cuCtxPushCurrent(self, context):
        self.contexts.append(context)
        return self.OK

    def cuCtxPopCurrent(self):
        return *self.OK, self.contexts.pop()

    def cuMemAlloc(self, size):
        assert self.depth and type(size) is int and size > 0
        buffer = ctypes.create_string_buffer(size + 255)
        address = -(-ctypes.addressof(buffer) // 256) * 256
        self.allocations[address] = (buffer, size)
        return *self.OK, address

    def cuMemFree(self, address):
        assert self.depth
        del self.allocations[address]
        return self.OK

    def allocated(self, address, size) -> bool:
        return any(a <= address and address + size <= a + n
                   for a, (_, n) in self.allocations.items())

    def cuMemcpyHtoD(self, device, host, size):
        assert self.depth and self.allocated(device, size)
        ctypes.memmove(device, host, size)
        return self.OK

    def cuMemcpyDtoH(self, host, device, size):
        assert self.depth and self.allocated(device, size)
        ctypes.memmove(host, device, size)
        return self.OK

    def cuMemcpyHtoDAsync(self, device, host, size, stream):
        return self.cuMemcpyHtoD(device, host, size)

    def cuMemcpyDtoHAsync(self, host, device, size, stream):
        return self.cuMemcpyDtoH(host, device, size)

    def cuPointerGetAttribute(self, attribute, address):
        if self.allocated(address, 1):
            return *self.OK, 0
        return self.CUresult.CUDA_ERROR_INVALID_VALUE, None

    def cuDeviceGetAttribute(self, attribute, device):
        kinds = self.CUdevice_attribute
        major = attribute == kinds.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR
        return *self.OK, self.capability[0 if major else 1]

    def cuModuleLoadData(self, image):
        assert self.depth and (image[:4] == b"\x7fELF"  # a cubin, or NUL-terminated PTX
                               or image.endswith(b"\0"))
        self.images.append(image)
        return *self.OK, "module"

    def cuFuncSetAttribute(self, function, attribute, value):
        self.function_attributes[function, attribute] = value
        return self.OK

    def cuModuleGetFunction(self, module, name):
        return *self.OK, name.decode()

    def cuModuleUnload(self, module):
        return self.OK

    def cuLaunchKernel(self, function, gx, gy, gz, bx, by, bz, shared, stream, params, extra):
        assert self.depth and min(gx, gy, gz, bx, by, bz) >= 1 and type(stream) is int
        count = len(inspect.signature(self.KERNELS[function]).parameters)
        pointers = (ctypes.c_void_p * count).from_address(params)
        values = [ctypes.c_int64.from_address(p).value for p in pointers]
        assert gx * bx >= values[-2] * values[-1]  # a thread per element
        self.launches.append(function)
        self.shared_bytes.append(shared)
        if self.fail_launches:
            return (self.CUresult.CUDA_ERROR_LAUNCH_FAILED,)
        self.KERNELS[function](*values)
        return self.OK

    def cuEventCreate(self, flags):
        assert self.depth
        event = f"event{len(self.events)}"
        self.events.add(event)
        return *self.OK, event

    def cuEventDestroy(self, event):
        self.events.remove(event)
        return self.OK

    def cuEventRecord(self, event, stream):
        assert self.depth and event in self.events and type(stream) is int
        return self.OK

    def cuStreamWaitEvent(self, stream, event, flags):
        assert self.depth and event in self.events and type(stream) is int
        return self.OK

    def cuEventSynchronize(self, event):
        return self.OK

    def cuEventElapsedTime(self, start, end):
        return *self.OK, self.elapsed_ms

    def cuCtxSynchronize(self):
        return self.OK

    def cuStreamSynchronize(self, stream):
        assert type(stream) is int
        return self.OK

    def cuGetErrorName(self, err):
        return *self.OK, err.name.encode()

    def cuGetErrorString(self, err):
        return *self.OK, b"what it means"


@pytest.fixture
def host_driver(monkeypatch):
    """The stand-in as the device; on leaving, every allocation has been freed."""
    driver = HostDriver()
    monkeypatch.setattr(cuda_device, "_opened", cuda_device.Device(driver))
    yield driver
    gc.collect()
    assert driver.allocations == {} and driver.depth == 0


@without_gpu
@pytest.mark.parametrize("test", [
    test_numpy_arrays_in_and_out, test_device_array_round_trip, test_device_arrays_in_and_out,
    test_host_and_device_arrays_mix, test_cuda_array_interface_of_device_memory,
    test_an_empty_launch_is_skipped, test_temporaries_between_launches,
    test_host_memory_behind_cuda_array_interface_is_refused], ids=lambda test: test.__name__)
def test_on_the_host_stand_in(test, host_driver):
    if "kernel" in inspect.signature(test).parameters:
        test(add_rows_kernel())
    else:
        test()
    assert gpu_available()


@without_gpu
def test_a_failed_launch_is_a_device_error_and_frees_the_call_memory(host_driver):
    k = add_rows_kernel()
    a, b = data()
    host_driver.fail_launches = True
    with pytest.raises(DeviceError, match=r"CUDA kernel add_rows, launch add_rows_kernel0: "
                                          r"cuLaunchKernel failed with CUDA_ERROR_LAUNCH_FAILED"):
        k(a, b)
    assert host_driver.launches == ["add_rows_kernel0"]
    assert host_driver.allocations == {} and host_driver.depth == 0


@without_gpu
@pytest.mark.parametrize("capability", ["target's", (9, 9)])
def test_a_device_of_another_architecture_loads_the_ptx(host_driver, capability):
    if capability != "target's":
        host_driver.capability = capability
    a, b = data()
    np.testing.assert_allclose(add_rows_kernel()(a, b), a + b[None, :], rtol=1e-6)
    (image,) = host_driver.images
    if capability == "target's":
        assert image == cubin(ADD_ROWS)
    else:
        assert image == b"ptx source of add_rows_kernel0\0"  # the module's get_source("ptx")


@without_gpu
def test_dynamic_shared_memory_is_opted_in_and_passed(host_driver):
    a, b = data()
    add_rows_kernel(shared_bytes=100_000)(a, b)
    attribute = HostDriver.CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
    assert host_driver.function_attributes == {("add_rows_kernel0", attribute): 100_000}
    assert host_driver.shared_bytes == [100_000]
    add_rows_kernel()(a, b)
    assert len(host_driver.function_attributes) == 1 and host_driver.shared_bytes[-1] == 0
