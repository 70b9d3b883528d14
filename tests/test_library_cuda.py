"""export_library with CUDA kernels: their cubins and PTX carried in the library, and C
launchers that load the CUDA driver at run time. Without a GPU, the launchers run against
no driver and against a fake libcuda.so.1 (written here in C) that records what they ask
of it; with one, a C program runs a launcher on device memory."""
import ctypes.util
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

import tex
from bench import gpu_schedules as cases
from tex.arith import evaluate
from tex.codegen import object_file
from tex.codegen.nvrtc import compile_source
from tex.runtime.cuda_device import gpu_available

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler")
ARCHS = ["sm_90", "sm_80"]  # given out of order: the PTX is the lowest's
AXPY_N = (1000, 77)
CUDA_KERNELS = ("axpy", "matmul_f32", "matmul_f16_mma", "matmul_padded")


def axpy():
    """out = 2a + b over a symbolic n, 128 threads a block: its grid depends on n."""
    n = tex.var("n")
    a, b = tex.placeholder((n,), name="a"), tex.placeholder((n,), name="b")
    out = tex.compute((n,), lambda i: a[i] * 2.0 + b[i], name="out")
    s = tex.create_schedule(out.op)
    blocks, threads = s[out].split(out.op.axis[0], factor=128)
    s[out].bind(blocks, tex.thread_axis("blockIdx.x"))
    s[out].bind(threads, tex.thread_axis("threadIdx.x"))
    return tex.build(s, [a, b, out], target="cuda -arch=sm_80", name="axpy")


def twice_exp():
    n = tex.var("n")
    x = tex.placeholder((n,), "float64", name="x")
    y = tex.compute((n,), lambda i: tex.exp(x[i]) * 2.0, name="y")
    return tex.build(tex.create_schedule(y.op), [x, y], name="twice_exp")


@pytest.fixture(scope="module")
def built():
    """The exported kernels by name: a CPU one, an elementwise CUDA kernel over a symbolic
    size, a tiled matmul at sizes its 64 x 64 tiles do not divide, and a tensor-core
    matmul with 80 KB of dynamic shared memory, and one at sizes its tiles do not divide,
    which computes into a padded temporary and copies the result out."""
    padded = cases.matmul_mma(200, 264, 64)
    return {"twice_exp": twice_exp(), "axpy": axpy(),
            "matmul_f32": cases.matmul(100, 70, 50).build("cuda -arch=sm_80"),
            "matmul_f16_mma": cases.matmul_mma(256, 256, 64).build("cuda -arch=sm_80"),
            "matmul_padded": tex.build(padded.schedule, padded.args, target="cuda -arch=sm_80",
                                       name="matmul_padded")}


@pytest.fixture(scope="module")
def library(built, tmp_path_factory):
    path = tmp_path_factory.mktemp("culib") / "ops.so"
    return tex.export_library(list(built.values()), path, archs=ARCHS)


def manifest_of(path):
    data = path.read_bytes()
    at, size = object_file.symbol_extent(data, "tex_library_manifest")
    return json.loads(data[at:at + size].rstrip(b"\0"))


def test_header_and_manifest(library, built):
    header = library.with_suffix(".h").read_text()
    assert "int twice_exp(void **buffers, const int64_t *sizes);" in header
    for name in CUDA_KERNELS:
        assert f"int {name}(void **buffers, const int64_t *sizes, void *stream);" in header
    assert "CUDA kernel (cubins for sm_80, sm_90; PTX for later devices)" in header
    assert "#define TEX_ERROR_CUDA 3" in header
    manifest = manifest_of(library)
    assert manifest["format"] == 5 and manifest["devices"] == ["cpu", "cuda"]
    entries = {e["name"]: e for e in manifest["kernels"]}
    assert entries["twice_exp"]["device"] == "cpu"
    for name in CUDA_KERNELS:
        assert entries[name]["device"] == "cuda"
        assert entries[name]["archs"] == ["sm_80", "sm_90"] and entries[name]["ptx_arch"] == "sm_80"
        assert entries[name]["cuda"] == built[name].get_source("cuda")
    assert entries["matmul_f16_mma"]["launches"][0]["shared_bytes"] > 48 * 1024


def test_cubins_and_ptx_are_embedded(library, built):
    data = library.read_bytes()
    # the library and two cubins per CUDA kernel
    assert data.count(b"\x7fELF") >= 1 + 2 * len(CUDA_KERNELS)
    for name in CUDA_KERNELS:
        source = built[name].get_source("cuda")
        for arch in ARCHS:
            assert compile_source(source, arch) in data
        ptx = compile_source(source, "sm_80", "ptx")
        assert ".target sm_80" in ptx and ptx.encode() + b"\0" in data


def test_export_errors(tmp_path):
    with pytest.raises(tex.ArgumentError, match=r"archs is a list of CUDA architectures.*"
                                                r"got \['80'\]"):
        tex.export_library([axpy()], tmp_path / "t.so", archs=["80"])
    with pytest.raises(tex.ArgumentError, match=r"name one architecture twice"):
        tex.export_library([axpy()], tmp_path / "t.so", archs=["sm_90", "sm_80", "sm_90a"])


def test_library_of_cuda_kernels_only(built, tmp_path):
    path = tex.export_library([built["axpy"]], tmp_path / "only.so")
    assert manifest_of(path)["devices"] == ["cuda"]
    assert manifest_of(path)["kernels"][0]["archs"] == ["sm_80"]  # the kernel's target's
    lib = tex.load_library(path)
    assert lib.names == ("axpy",) and "axpy" in repr(lib.axpy)


def test_load_library_runs_cpu_kernels_and_takes_gpu_arrays_for_cuda_ones(library):
    lib = tex.load_library(library)
    x = np.random.default_rng(0).random(33)
    np.testing.assert_allclose(lib.twice_exp(x), 2 * np.exp(x), rtol=1e-12)
    assert lib.axpy.archs == ("sm_80", "sm_90") and "__global__" in lib.axpy.get_source("cuda")
    with pytest.raises(tex.ArgumentError, match=r"axpy of ops.so takes its 3 arrays \(a, b, "
                                                r"out\), outputs too"):
        lib.axpy(np.ones(3, "float32"), np.ones(3, "float32"))
    with pytest.raises(tex.ArgumentError, match=r"argument a \(#0\) is in host memory; a "
                                                r"library's CUDA kernel takes GPU arrays"):
        lib.axpy(*(np.ones(3, "float32") for _ in range(3)))


PROGRAM = r"""
#include <math.h>
#include <stdio.h>
#include "ops.h"

static void report(const char *what, int code) {
    printf("%s: %d %s\n", what, code, code ? tex_last_error() : "");
}

int main(void) {
    double x[50], y[50];
    for (int k = 0; k < 50; k++) x[k] = k / 50.0;
    void *cpu_buffers[2] = {x, y};
    int64_t n = 50;
    report("twice_exp", twice_exp(cpu_buffers, &n));
    double worst = 0;
    for (int k = 0; k < 50; k++) worst = fmax(worst, fabs(y[k] - 2 * exp(x[k])));
    printf("twice_exp error: %g\n", worst);
    void *buffers[3] = {(void *)0x10000, (void *)0x20000, (void *)0x30000};
    int64_t sizes[1] = {AXPY_N0};
    report("axpy", axpy(buffers, sizes, (void *)0x1234));
    sizes[0] = AXPY_N1;
    report("axpy", axpy(buffers, sizes, NULL));
    report("matmul_f32", matmul_f32(buffers, sizes, (void *)0x99));
    report("matmul_f16_mma", matmul_f16_mma(buffers, sizes, NULL));
    report("matmul_padded", matmul_padded(buffers, sizes, (void *)0x77));
    buffers[1] = NULL;
    report("null", axpy(buffers, sizes, NULL));
    buffers[1] = (void *)0x20000;
    sizes[0] = -3;
    report("negative", axpy(buffers, sizes, NULL));
    sizes[0] = 1LL << 40;
    report("huge", axpy(buffers, sizes, NULL));
    return 0;
}
"""

FAKE_DRIVER = r"""
/* A fake CUDA driver: each call appends a line to $FAKE_CUDA_LOG. $FAKE_CUDA_CC is the
   device's compute capability (80); $FAKE_CUDA_FAIL names a function that returns
   CUDA_ERROR_ILLEGAL_ADDRESS (700); with $FAKE_CUDA_NO_CONTEXT no context is current
   until cuCtxSetCurrent; with $FAKE_CUDA_SWITCH_AFTER=k, another context is current after
   k calls of cuCtxGetCurrent. $FAKE_CUDA_ARGS_<function> is a function's parameter count. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *current;

static void note(const char *format, ...) {
    FILE *log = fopen(getenv("FAKE_CUDA_LOG"), "a");
    va_list args;
    va_start(args, format);
    vfprintf(log, format, args);
    va_end(args);
    fputc('\n', log);
    fclose(log);
}

static int failing(const char *name) {
    const char *which = getenv("FAKE_CUDA_FAIL");
    return which && strcmp(which, name) == 0 ? 700 : 0;
}

int cuInit(unsigned flags) { note("cuInit %u", flags); return failing("cuInit"); }
int cuGetErrorName(int status, const char **name) {
    *name = status == 700 ? "CUDA_ERROR_ILLEGAL_ADDRESS" : "CUDA_ERROR_UNKNOWN";
    return 0;
}
int cuGetErrorString(int status, const char **text) {
    *text = status == 700 ? "an illegal memory access was encountered" : "unknown";
    return 0;
}
int cuCtxGetCurrent(void **context) {
    static int asked;
    const char *switch_after = getenv("FAKE_CUDA_SWITCH_AFTER");
    if (!asked++ && !getenv("FAKE_CUDA_NO_CONTEXT")) current = (void *)0xc0;
    if (switch_after && asked > atoi(switch_after)) current = (void *)0xc1;
    *context = current;
    note("cuCtxGetCurrent %p", *context);
    return failing("cuCtxGetCurrent");
}
int cuCtxSetCurrent(void *context) {
    note("cuCtxSetCurrent %p", context);
    current = context;
    return 0;
}
int cuCtxGetDevice(int *device) { *device = 0; note("cuCtxGetDevice"); return 0; }
int cuDeviceGet(int *device, int ordinal) {
    *device = ordinal;
    note("cuDeviceGet %d", ordinal);
    return 0;
}
int cuDevicePrimaryCtxRetain(void **context, int device) {
    *context = (void *)0xd0;
    note("cuDevicePrimaryCtxRetain %d", device);
    return 0;
}
int cuDeviceGetAttribute(int *value, int attribute, int device) {
    int cc = atoi(getenv("FAKE_CUDA_CC"));
    *value = attribute == 75 ? cc / 10 : cc % 10;
    note("cuDeviceGetAttribute %d %d", attribute, device);
    return 0;
}
int cuModuleLoadData(void **module, const void *image) {
    const unsigned char *bytes = image;
    if (memcmp(bytes, "\x7f" "ELF", 4) == 0) {
        uint64_t hash = 1469598103934665603ull;  /* FNV-1a of the ELF header */
        for (int k = 0; k < 64; k++) hash = (hash ^ bytes[k]) * 1099511628211ull;
        note("cuModuleLoadData cubin %016llx", (unsigned long long)hash);
    } else {
        const char *target = strstr(image, ".target ");
        note("cuModuleLoadData ptx %zu %.*s", strlen(image), 14, target ? target : "?");
    }
    *module = (void *)0xe0;
    return failing("cuModuleLoadData");
}
int cuModuleGetFunction(void **function, void *module, const char *name) {
    *function = strdup(name);
    note("cuModuleGetFunction %p %s", module, name);
    return 0;
}
int cuFuncSetAttribute(void *function, int attribute, int value) {
    note("cuFuncSetAttribute %s %d %d", (char *)function, attribute, value);
    return 0;
}
int cuMemAllocAsync(unsigned long long *pointer, size_t bytes, void *stream) {
    static unsigned long long next = 0x7000000;
    *pointer = next;
    next += 0x100000;
    note("cuMemAllocAsync %zu %p %llu", bytes, stream, *pointer);
    return failing("cuMemAllocAsync");
}
int cuMemFreeAsync(unsigned long long pointer, void *stream) {
    note("cuMemFreeAsync %llu %p", pointer, stream);
    return 0;
}
int cuPointerGetAttribute(void *data, int attribute, unsigned long long pointer) {
    /* below 0x1000: not CUDA memory; from 2^44 on: device 1's; else device 0's */
    note("cuPointerGetAttribute %d %llu", attribute, pointer);
    if (pointer < 0x1000) return 1;  /* CUDA_ERROR_INVALID_VALUE */
    *(int *)data = pointer >= (1ull << 44) ? 1 : 0;
    return 0;
}
int cuLaunchKernel(void *function, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                   unsigned by, unsigned bz, unsigned shared, void *stream, void **params,
                   void **extra) {
    char variable[256], line[4096];
    snprintf(variable, sizeof variable, "FAKE_CUDA_ARGS_%s", (char *)function);
    int count = atoi(getenv(variable)), at = 0;
    at += snprintf(line + at, sizeof line - at, "cuLaunchKernel %s grid %u %u %u block %u %u %u "
                   "shared %u stream %p extra %p args", (char *)function, gx, gy, gz, bx, by, bz,
                   shared, stream, (void *)extra);
    for (int k = 0; k < count; k++)
        at += snprintf(line + at, sizeof line - at, " %lld", *(long long *)params[k]);
    note("%s", line);
    return failing("cuLaunchKernel");
}
"""


@pytest.fixture(scope="module")
def program(library, tmp_path_factory):
    """The C program above, linked against the library; and a directory holding the fake
    libcuda.so.1."""
    work = tmp_path_factory.mktemp("culib_program")
    source = work / "program.c"
    source.write_text(PROGRAM.replace("AXPY_N0", str(AXPY_N[0]))
                      .replace("AXPY_N1", str(AXPY_N[1])))
    binary = work / "program"
    subprocess.run(["cc", "-O1", "-o", str(binary), str(source), f"-I{library.parent}",
                    str(library), f"-Wl,-rpath,{library.parent}", "-lm"], check=True)
    fake = work / "fake"
    fake.mkdir()
    (work / "fake.c").write_text(FAKE_DRIVER)
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(fake / "libcuda.so.1"),
                    str(work / "fake.c")], check=True)
    (work / "none").mkdir()
    return binary, fake, work


def run(program, library_dir, log=None, **env):
    environment = {"LD_LIBRARY_PATH": str(library_dir), "PATH": "/usr/bin:/bin",
                   **({"FAKE_CUDA_LOG": str(log)} if log else {}), **env}
    out = subprocess.run([str(program)], capture_output=True, text=True, env=environment,
                         check=True).stdout
    reports = [line.split(": ", 1) for line in out.splitlines()]
    log_lines = log.read_text().splitlines() if log and log.exists() else []
    return reports, log_lines


@pytest.mark.skipif(ctypes.util.find_library("cuda") is not None,
                    reason="a CUDA driver is installed")
def test_without_a_driver_cuda_kernels_fail_cleanly(program):
    binary, _, work = program
    reports, _ = run(binary, work / "none")
    results = dict(reports[:2])
    assert results["twice_exp"] == "0 " and float(results["twice_exp error"]) < 1e-12
    for name, text in reports[2:7]:
        assert text.startswith(f"3 {name}: the CUDA driver (libcuda.so.1) could not be "
                               "loaded: "), text
        assert "needs an NVIDIA GPU and its driver" in text
    assert reports[7][1] == "1 axpy: buffers[1] (b) is NULL"
    assert reports[8][1] == "2 axpy: sizes[0] (n) is -3; a size cannot be negative"
    assert reports[9][1] == "2 axpy: launch axpy_kernel0: grid dimension x is 8589934592, " \
        "above the limit 2147483647"


def fnv1a(data: bytes) -> str:
    value = 1469598103934665603
    for byte in data[:64]:
        value = ((value ^ byte) * 1099511628211) % 2**64
    return f"{value:016x}"


def arg_counts(built) -> dict:
    return {f"FAKE_CUDA_ARGS_{launch.name}": str(len(launch.params) + len(launch.size_vars))
            for kernel in built.values() if hasattr(kernel, "_module")
            for launch in kernel._module.launches}


def launch_lines(log, name):
    return [line.split() for line in log if line.startswith(f"cuLaunchKernel {name} ")]


def test_fake_driver_sees_the_launches_cuda_kernel_would_make(program, built, tmp_path):
    binary, fake, _ = program
    reports, log = run(binary, fake, tmp_path / "log", FAKE_CUDA_CC="90", **arg_counts(built))
    assert [code for _, code in reports[2:7]] == ["0 "] * 5
    cubins = {fnv1a(compile_source(built[name].get_source("cuda"), arch)): (name, arch)
              for name in CUDA_KERNELS for arch in ARCHS}
    assert len(cubins) == 2 * len(CUDA_KERNELS)  # the ELF headers tell the images apart
    loads = [cubins[line.split()[2]] for line in log if line.startswith("cuModuleLoadData")]
    # one load per kernel (axpy's two calls share one), each the sm_90 cubin
    assert loads == [(name, "sm_90") for name in CUDA_KERNELS]
    assert log.count("cuInit 0") == 1 and "cuDevicePrimaryCtxRetain 0" not in log
    axpy_launches = launch_lines(log, "axpy_kernel0")
    (launch,) = built["axpy"]._module.launches
    n = built["axpy"].size_vars[0]
    for words, size, stream in zip(axpy_launches, AXPY_N, ("0x1234", "(nil)")):
        grid = [int(evaluate(e, {n: size})) for e in launch.grid]
        block = [int(evaluate(e, {n: size})) for e in launch.block]
        assert words[2:10] == ["grid", *map(str, grid), "block", *map(str, block)]
        assert words[10:16] == ["shared", "0", "stream", stream, "extra", "(nil)"]
        assert words[17:] == [str(0x10000), str(0x20000), str(0x30000), str(size)]
    assert len(axpy_launches) == 2  # the calls with bad sizes launch nothing
    assert [code[0] for _, code in reports[7:]] == ["1", "2", "2"]
    (mm,) = built["matmul_f32"]._module.launches
    (words,) = launch_lines(log, mm.name)
    assert words[3:6] == [str(int(evaluate(e, {}))) for e in mm.grid] == ["2", "2", "1"]
    assert words[13] == "0x99"
    (mma,) = built["matmul_f16_mma"]._module.launches
    (words,) = launch_lines(log, mma.name)
    assert words[11] == str(mma.shared_bytes)
    assert f"cuFuncSetAttribute {mma.name} 8 {mma.shared_bytes}" in log
    assert not any(line.startswith(f"cuFuncSetAttribute {mm.name}") for line in log)


CALLER = r"""
import sys
import tex


class GpuArray:  # what CuPy or PyTorch shows of CUDA memory, at a made-up address
    def __init__(self, n, address, typestr="<f4"):
        self.__cuda_array_interface__ = {"shape": (n,), "typestr": typestr, "version": 3,
                                         "data": (address, False), "stream": None}


axpy = tex.load_library(sys.argv[1]).axpy
n = int(sys.argv[2])
a, b, out = GpuArray(n, 0x10000), GpuArray(n, 0x20000), GpuArray(n, 0x30000)
for stream in (0x1234, None):
    try:
        print("result:", axpy(a, b, out, stream=stream))
    except tex.DeviceError as err:
        print("failed:", err)
for bad in (GpuArray(n + 1, 0x30000), GpuArray(n, 0x30000, "<f8"), GpuArray(n, 0x800),
            GpuArray(n, 1 << 44)):
    try:
        axpy(a, b, bad)
    except tex.ArgumentError as err:
        print("refused:", err)
"""


def test_python_calls_a_library_cuda_kernel_through_its_launcher(library, program, built,
                                                                 tmp_path):
    """load_library's CudaEntry under the fake driver: the launch its C launcher makes for a
    Python call, the checks before it, and a driver error raised with its message."""
    _, fake, _ = program
    (tmp_path / "caller.py").write_text(CALLER)
    log = tmp_path / "log"
    env = {**__import__("os").environ, "LD_LIBRARY_PATH": str(fake), "FAKE_CUDA_LOG": str(log),
           "FAKE_CUDA_CC": "90", "FAKE_CUDA_FAIL": "", **arg_counts(built)}
    out = subprocess.run([sys.executable, str(tmp_path / "caller.py"), str(library),
                          str(AXPY_N[0])], capture_output=True, text=True, env=env,
                         cwd=str(tmp_path), check=True).stdout.splitlines()
    assert out[:2] == ["result: None"] * 2
    assert out[2].startswith("refused: argument out (#2): dimension 0 is n = 1001, but "
                             "argument a (#0) dimension 0 set n = 1000")
    assert out[3] == "refused: argument out (#2): expected dtype float32, got float64; " \
        "tex does not cast, use .astype('float32')"
    assert out[4].startswith("refused: argument out (#2): its __cuda_array_interface__ "
                             "address 0x800 is not CUDA memory (")
    assert out[5] == "refused: argument out (#2) lives on CUDA device 1; tex runs CUDA " \
        "kernels on device 0"
    (launch,) = built["axpy"]._module.launches
    n = built["axpy"].size_vars[0]
    grid = [int(evaluate(e, {n: AXPY_N[0]})) for e in launch.grid]
    block = [int(evaluate(e, {n: AXPY_N[0]})) for e in launch.block]
    (words, second) = launch_lines(log.read_text().splitlines(), "axpy_kernel0")
    assert words[2:10] == ["grid", *map(str, grid), "block", *map(str, block)]
    # the legacy default stream (CU_STREAM_LEGACY) when neither the call nor an array names one
    assert words[12:14] == ["stream", "0x1234"] and second[12:14] == ["stream", "0x1"]
    assert words[17:] == [str(0x10000), str(0x20000), str(0x30000), str(AXPY_N[0])]
    env["FAKE_CUDA_FAIL"] = "cuLaunchKernel"
    out = subprocess.run([sys.executable, str(tmp_path / "caller.py"), str(library), "5"],
                         capture_output=True, text=True, env=env, cwd=str(tmp_path),
                         check=True).stdout.splitlines()
    assert out[0] == "failed: axpy: cuLaunchKernel (launch axpy_kernel0) failed: " \
        "CUDA_ERROR_ILLEGAL_ADDRESS (700): an illegal memory access was encountered"


def test_fake_driver_unknown_device_gets_ptx_and_no_context_gets_primary(program, built,
                                                                          tmp_path):
    binary, fake, _ = program
    reports, log = run(binary, fake, tmp_path / "log", FAKE_CUDA_CC="120",
                       FAKE_CUDA_NO_CONTEXT="1", **arg_counts(built))
    assert [code for _, code in reports[2:7]] == ["0 "] * 5
    loads = [line.split() for line in log if line.startswith("cuModuleLoadData")]
    assert [words[1] for words in loads] == ["ptx"] * len(CUDA_KERNELS)
    assert all(words[3:5] == [".target", "sm_80"] for words in loads)
    ptx = compile_source(built["axpy"].get_source("cuda"), "sm_80", "ptx")
    assert loads[0][2] == str(len(ptx))
    at = log.index("cuDevicePrimaryCtxRetain 0")
    assert log[at + 1] == "cuCtxSetCurrent 0xd0" and log.count("cuDevicePrimaryCtxRetain 0") == 1


def test_fake_driver_module_loaded_again_in_another_context(program, built, tmp_path):
    binary, fake, _ = program
    _, log = run(binary, fake, tmp_path / "log", FAKE_CUDA_CC="80", FAKE_CUDA_SWITCH_AFTER="1",
                 **arg_counts(built))
    functions = [line.split()[2] for line in log if line.startswith("cuModuleGetFunction")]
    assert functions == ["axpy_kernel0", "axpy_kernel0", "matmul_f32_kernel0",
                         "matmul_f16_mma_kernel0", "matmul_padded_kernel0",
                         "matmul_padded_kernel1"]
    assert log.count("cuCtxGetCurrent 0xc0") == 1


def test_fake_driver_temporaries_allocated_and_freed_on_the_stream(program, built, tmp_path):
    binary, fake, _ = program
    _, log = run(binary, fake, tmp_path / "log", FAKE_CUDA_CC="80", **arg_counts(built))
    kernel = built["matmul_padded"]
    (temporary,) = kernel._module.temporaries
    nbytes = int(np.prod([int(evaluate(e, {})) for e in temporary.shape])) * 4
    (alloc,) = [i for i, line in enumerate(log) if line.startswith("cuMemAllocAsync")]
    size, stream, pointer = log[alloc].split()[1:]
    assert (int(size), stream) == (nbytes, "0x77")
    first, second = kernel._module.launches
    assert [p.name for p in first.params] == ["A", "B", temporary.name]
    assert [p.name for p in second.params] == ["C", temporary.name]
    (words,) = launch_lines(log, first.name)
    assert words[17:] == [str(0x10000), str(0x20000), pointer]
    (words,) = launch_lines(log, second.name)
    assert words[17:] == [str(0x30000), pointer]
    launched = max(i for i, line in enumerate(log) if line.startswith("cuLaunchKernel"))
    assert log[launched + 1:] == [f"cuMemFreeAsync {pointer} 0x77"]  # after its launches


@pytest.mark.parametrize("function", ["cuLaunchKernel", "cuModuleLoadData", "cuInit"])
def test_fake_driver_errors_become_codes(program, built, tmp_path, function):
    binary, fake, _ = program
    reports, log = run(binary, fake, tmp_path / "log", FAKE_CUDA_CC="80",
                       FAKE_CUDA_FAIL=function, **arg_counts(built))
    code, text = reports[2][1].split(" ", 1)
    assert code == "3"
    if function == "cuInit":
        assert text == "axpy: the CUDA driver did not start (cuInit): CUDA_ERROR_ILLEGAL_ADDRESS " \
            "(700): an illegal memory access was encountered"
    else:
        what = " (launch axpy_kernel0)" if function == "cuLaunchKernel" else " (cubin for sm_80)"
        assert text == f"axpy: {function}{what} failed: CUDA_ERROR_ILLEGAL_ADDRESS (700): an " \
            "illegal memory access was encountered"
    assert reports[3][1].startswith("3 axpy: ")  # the second call fails too, as cleanly
    if function == "cuLaunchKernel":  # a failed launch still frees the temporaries
        assert reports[6][1].startswith("3 matmul_padded: cuLaunchKernel (launch "
                                        "matmul_padded_kernel0) failed")
        alloc, launch, free = log[-3:]
        pointer = alloc.split()[3]
        assert launch.startswith("cuLaunchKernel matmul_padded_kernel0 ")
        assert free == f"cuMemFreeAsync {pointer} 0x77"


def test_fake_driver_allocation_error(program, built, tmp_path):
    binary, fake, _ = program
    reports, log = run(binary, fake, tmp_path / "log", FAKE_CUDA_CC="80",
                       FAKE_CUDA_FAIL="cuMemAllocAsync", **arg_counts(built))
    assert reports[6][1] == "3 matmul_padded: cuMemAllocAsync (a temporary) failed: " \
        "CUDA_ERROR_ILLEGAL_ADDRESS (700): an illegal memory access was encountered"
    assert not launch_lines(log, "matmul_padded_kernel0")


GPU_PROGRAM = r"""
/* gpu LIB KERNEL NSIZES SIZE... NBUFFERS FILE...: copies each FILE (a parameter's bytes,
   outputs too) to device memory on device 0's primary context, runs KERNEL of LIB on the
   default stream, waits, and writes each buffer back to FILE.out. */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static void *symbol(void *library, const char *name) {
    void *found = dlsym(library, name);
    if (!found) { fprintf(stderr, "%s\n", dlerror()); exit(2); }
    return found;
}

int main(int argc, char **argv) {
    void *cuda = dlopen("libcuda.so.1", RTLD_NOW), *library = dlopen(argv[1], RTLD_NOW);
    if (!cuda || !library) { fprintf(stderr, "%s\n", dlerror()); return 2; }
    int (*init)(unsigned) = symbol(cuda, "cuInit");
    int (*device_get)(int *, int) = symbol(cuda, "cuDeviceGet");
    int (*retain)(void **, int) = symbol(cuda, "cuDevicePrimaryCtxRetain");
    int (*set_current)(void *) = symbol(cuda, "cuCtxSetCurrent");
    int (*alloc)(unsigned long long *, size_t) = symbol(cuda, "cuMemAlloc_v2");
    int (*to_device)(unsigned long long, const void *, size_t) =
        symbol(cuda, "cuMemcpyHtoD_v2");
    int (*to_host)(void *, unsigned long long, size_t) = symbol(cuda, "cuMemcpyDtoH_v2");
    int (*synchronize)(void) = symbol(cuda, "cuCtxSynchronize");
    int (*kernel)(void **, const int64_t *, void *) = symbol(library, argv[2]);
    const char *(*last_error)(void) = symbol(library, "tex_last_error");
    int device;
    void *context;
    if (init(0) || device_get(&device, 0) || retain(&context, device) || set_current(context))
        return 4;
    int at = 3, nsizes = atoi(argv[at++]);
    int64_t sizes[16];
    for (int k = 0; k < nsizes; k++) sizes[k] = atoll(argv[at++]);
    int nbuffers = atoi(argv[at++]);
    void *host[16], *buffers[16];
    long bytes[16];
    for (int k = 0; k < nbuffers; k++) {
        FILE *f = fopen(argv[at + k], "rb");
        fseek(f, 0, SEEK_END);
        bytes[k] = ftell(f);
        fseek(f, 0, SEEK_SET);
        host[k] = malloc((size_t)bytes[k]);
        if (fread(host[k], 1, (size_t)bytes[k], f) != (size_t)bytes[k]) return 2;
        fclose(f);
        unsigned long long pointer;
        if (alloc(&pointer, (size_t)bytes[k]) || to_device(pointer, host[k], (size_t)bytes[k]))
            return 5;
        buffers[k] = (void *)pointer;
    }
    if (kernel(buffers, sizes, NULL)) { fprintf(stderr, "%s\n", last_error()); return 3; }
    if (synchronize()) return 6;
    char path[4096];
    for (int k = 0; k < nbuffers; k++) {
        if (to_host(host[k], (unsigned long long)buffers[k], (size_t)bytes[k])) return 7;
        snprintf(path, sizeof path, "%s.out", argv[at + k]);
        FILE *f = fopen(path, "wb");
        fwrite(host[k], 1, (size_t)bytes[k], f);
        fclose(f);
    }
    return 0;
}
"""


@pytest.mark.skipif(not gpu_available(), reason="needs an NVIDIA GPU")
def test_cuda_kernels_of_a_library_run_on_the_gpu(library, tmp_path):
    """axpy over a size the block does not divide, and the tensor-core matmul that
    computes into a padded temporary, on device memory, against NumPy."""
    (tmp_path / "gpu.c").write_text(GPU_PROGRAM)
    subprocess.run(["cc", "-o", str(tmp_path / "gpu"), str(tmp_path / "gpu.c"), "-ldl"],
                   check=True)
    rng = np.random.default_rng(0)

    def run_on_gpu(name, sizes, arrays):
        files = []
        for k, array in enumerate(arrays):
            files.append(tmp_path / f"{name}{k}.bin")
            files[-1].write_bytes(np.ascontiguousarray(array).tobytes())
        subprocess.run([str(tmp_path / "gpu"), str(library), name, str(len(sizes)),
                        *map(str, sizes), str(len(files)), *map(str, files)], check=True)
        return [np.frombuffer(f.with_suffix(".bin.out").read_bytes(), a.dtype).reshape(a.shape)
                for f, a in zip(files, arrays)]

    n = 1000
    a, b = rng.random(n, dtype=np.float32), rng.random(n, dtype=np.float32)
    out = run_on_gpu("axpy", [n], [a, b, np.zeros(n, np.float32)])[2]
    np.testing.assert_allclose(out, 2 * a + b, rtol=1e-6)
    case = cases.matmul_mma(200, 264, 64)
    x, y = case.inputs()
    c = run_on_gpu("matmul_padded", [], [x, y, np.zeros((200, 264), np.float32)])[2]
    np.testing.assert_allclose(c, case.reference(x, y), rtol=1e-2, atol=1e-2)
