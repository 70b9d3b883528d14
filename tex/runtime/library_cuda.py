"""The CUDA kernels of a library that `tex.export_library` writes: their fat binaries and
C launchers.

    int NAME(void **buffers, const int64_t *sizes, void *stream);   /* 0: queued */

A CUDA kernel is carried as data in the library: a cubin per architecture asked for
(`export_library(..., archs=["sm_80", "sm_90"])`; default: the kernel's target
architecture), compiled from its CUDA C by NVRTC at export, and the PTX of the lowest
of them, which the driver compiles for a device of a later architecture. Its entry
point NAME (the launcher):

* checks `buffers` and `sizes` as a CPU entry point does (`library_abi.argument_checks`:
  no NULL pointer, sizes that fit their dtypes and give every dimension a value), then
  each launch's grid and block, evaluated from the sizes as `CudaKernel` evaluates
  them (`library_abi.c_expr` of `CudaLaunch.grid` and `block`), against the limits of
  the kernel's target (TEX_ERROR_SIZE); a launch with an empty grid or block is left
  out, as `CudaKernel` leaves it out;
* loads the CUDA driver at its first use, `dlopen("libcuda.so.1")` and the few
  functions it calls: the library is not linked against libcuda and needs neither
  NVRTC, Python nor tex at run time (it needs a driver of CUDA 11.2 or later, for
  stream-ordered allocation); no driver, or a driver without a GPU, is
  TEX_ERROR_CUDA with a message that says so;
* takes the calling thread's current CUDA context; a thread without one gets the
  primary context of device 0, retained (for the life of the process) and made
  current on that thread (cuDevicePrimaryCtxRetain, cuCtxSetCurrent);
* loads its module once per context (a table, under a mutex, of the contexts it
  has run in; a call in a context past the first `CONTEXTS` is TEX_ERROR_CUDA): the
  cubin whose architecture is the device's compute capability, else the PTX; raises
  the function's MAX_DYNAMIC_SHARED_SIZE_BYTES to a launch's dynamic shared memory
  (`CudaLaunch.shared_bytes`) past 48 KB;
* allocates the module's temporaries (global buffers its launches share, their sizes
  evaluated from `sizes`) on `stream` (cuMemAllocAsync), queues the launches in order
  on `stream` (a CUstream; NULL: the default stream) with cuLaunchKernel, each passed
  the device pointers of its parameters and temporaries and the values of its size
  variables (8 bytes each, as `sizes` holds them), frees the temporaries in stream
  order after them (cuMemFreeAsync), and returns without waiting for them. A CUDA
  error is TEX_ERROR_CUDA with the driver's name and description of it in
  `tex_last_error()`; an error of the kernel itself shows at the caller's next
  synchronizing call, as with any asynchronous launch.

The buffers are device pointers on the current context's device, C-contiguous, aligned
as `CudaLaunch.alignments` asks (16 bytes, the alignment of cudaMalloc, is enough).
"""
from __future__ import annotations

import re

from tex.codegen.nvrtc import compile_source
from tex.errors import ArgumentError, BuildError
from tex.printer import to_text
from tex.runtime import library_abi

#: Contexts a launcher keeps its module loaded in; a call in one more is TEX_ERROR_CUDA.
CONTEXTS = 16
#: The shared memory a block may take without opting in (MAX_DYNAMIC_SHARED_SIZE_BYTES).
_STATIC_SHARED_LIMIT = 48 * 1024

_DRIVER = r"""
/* The CUDA driver, loaded at first use (no CUDA header or libcuda needed to build). */
#include <dlfcn.h>
#include <pthread.h>
#include <stddef.h>

typedef int CUresult;
typedef int CUdevice;
typedef void *CUcontext;
typedef void *CUmodule;
typedef void *CUfunction;
typedef void *CUstream;
typedef unsigned long long CUdeviceptr;
#define TEX_CU_COMPUTE_MAJOR 75
#define TEX_CU_COMPUTE_MINOR 76
#define TEX_CU_MAX_DYNAMIC_SHARED 8
#define TEX_CU_POINTER_DEVICE_ORDINAL 9
#define TEX_CONTEXTS @CONTEXTS@

static struct {
    CUresult (*cuInit)(unsigned);
    CUresult (*cuGetErrorName)(CUresult, const char **);
    CUresult (*cuGetErrorString)(CUresult, const char **);
    CUresult (*cuCtxGetCurrent)(CUcontext *);
    CUresult (*cuCtxSetCurrent)(CUcontext);
    CUresult (*cuCtxGetDevice)(CUdevice *);
    CUresult (*cuDeviceGet)(CUdevice *, int);
    CUresult (*cuDeviceGetAttribute)(int *, int, CUdevice);
    CUresult (*cuDevicePrimaryCtxRetain)(CUcontext *, CUdevice);
    CUresult (*cuModuleLoadData)(CUmodule *, const void *);
    CUresult (*cuModuleGetFunction)(CUfunction *, CUmodule, const char *);
    CUresult (*cuFuncSetAttribute)(CUfunction, int, int);
    CUresult (*cuLaunchKernel)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned,
                               unsigned, unsigned, CUstream, void **, void **);
    CUresult (*cuMemAllocAsync)(CUdeviceptr *, size_t, CUstream);
    CUresult (*cuMemFreeAsync)(CUdeviceptr, CUstream);
    CUresult (*cuPointerGetAttribute)(void *, int, CUdeviceptr);
} tex_cu;

static const char *const tex_cu_names[] = {
    "cuInit", "cuGetErrorName", "cuGetErrorString", "cuCtxGetCurrent", "cuCtxSetCurrent",
    "cuCtxGetDevice", "cuDeviceGet", "cuDeviceGetAttribute", "cuDevicePrimaryCtxRetain",
    "cuModuleLoadData", "cuModuleGetFunction", "cuFuncSetAttribute", "cuLaunchKernel",
    "cuMemAllocAsync", "cuMemFreeAsync", "cuPointerGetAttribute"};

static pthread_once_t tex_cu_once = PTHREAD_ONCE_INIT;
static char tex_cu_failure[400];  /* why the driver cannot be used; "" once it can */

static void tex_cu_describe(CUresult status, char *text, size_t size) {
    const char *name = NULL, *description = NULL;
    if (tex_cu.cuGetErrorName) tex_cu.cuGetErrorName(status, &name);
    if (tex_cu.cuGetErrorString) tex_cu.cuGetErrorString(status, &description);
    snprintf(text, size, "%s (%d): %s", name ? name : "CUDA error", status,
             description ? description : "no description");
}

static void tex_cu_load(void) {
    void *library = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!library) {
        const char *why = dlerror();
        snprintf(tex_cu_failure, sizeof tex_cu_failure, "the CUDA driver (libcuda.so.1) "
                 "could not be loaded: %s; a CUDA kernel needs an NVIDIA GPU and its driver",
                 why ? why : "not found");
        return;
    }
    void **slots = (void **)&tex_cu;
    for (size_t k = 0; k < sizeof tex_cu_names / sizeof tex_cu_names[0]; k++) {
        slots[k] = dlsym(library, tex_cu_names[k]);
        if (!slots[k]) {
            snprintf(tex_cu_failure, sizeof tex_cu_failure,
                     "the CUDA driver (libcuda.so.1) lacks %s", tex_cu_names[k]);
            return;
        }
    }
    CUresult status = tex_cu.cuInit(0);
    if (status) {
        char text[256];
        tex_cu_describe(status, text, sizeof text);
        snprintf(tex_cu_failure, sizeof tex_cu_failure,
                 "the CUDA driver did not start (cuInit): %s", text);
    }
}

static int tex_cu_fail(const char *kernel, const char *call, const char *what, CUresult status) {
    char text[256];
    tex_cu_describe(status, text, sizeof text);
    return fail(TEX_ERROR_CUDA, "%s: %s%s failed: %s", kernel, call, what, text);
}

/* What a launcher loads: images (a cubin per architecture), the PTX, its functions. */
struct tex_cu_module {
    const char *kernel;
    int images;
    const int *archs;                         /* 80 for sm_80 */
    const unsigned char *const *cubins;
    const unsigned char *ptx;                 /* NUL-terminated */
    int count;                                /* functions */
    const char *const *names;
    const int *shared_bytes;
    pthread_mutex_t *lock;
    int *loaded;                              /* contexts in the table */
    CUcontext *contexts;                      /* [TEX_CONTEXTS] */
    CUfunction *functions;                    /* [TEX_CONTEXTS][count] */
};

/* The context of the calling thread; without one, device 0's primary context, made current. */
static int tex_cu_context(const char *kernel, CUcontext *context) {
    CUresult status = tex_cu.cuCtxGetCurrent(context);
    if (status) return tex_cu_fail(kernel, "cuCtxGetCurrent", "", status);
    if (*context) return 0;
    CUdevice device;
    if ((status = tex_cu.cuDeviceGet(&device, 0)))
        return tex_cu_fail(kernel, "cuDeviceGet", " (device 0)", status);
    if ((status = tex_cu.cuDevicePrimaryCtxRetain(context, device)))
        return tex_cu_fail(kernel, "cuDevicePrimaryCtxRetain", " (device 0)", status);
    if ((status = tex_cu.cuCtxSetCurrent(*context)))
        return tex_cu_fail(kernel, "cuCtxSetCurrent", " (device 0's primary context)", status);
    return 0;
}

/* Loads `m` into `context` (the cubin of the device's architecture, else the PTX). */
static int tex_cu_load_module(const struct tex_cu_module *m, CUfunction *functions) {
    CUdevice device;
    int major, minor;
    CUresult status = tex_cu.cuCtxGetDevice(&device);
    if (status) return tex_cu_fail(m->kernel, "cuCtxGetDevice", "", status);
    if ((status = tex_cu.cuDeviceGetAttribute(&major, TEX_CU_COMPUTE_MAJOR, device)) ||
        (status = tex_cu.cuDeviceGetAttribute(&minor, TEX_CU_COMPUTE_MINOR, device)))
        return tex_cu_fail(m->kernel, "cuDeviceGetAttribute", " (compute capability)", status);
    const void *image = m->ptx;
    char what[64];
    snprintf(what, sizeof what, " (PTX, for sm_%d%d)", major, minor);
    for (int k = 0; k < m->images; k++)
        if (m->archs[k] == major * 10 + minor) {
            image = m->cubins[k];
            snprintf(what, sizeof what, " (cubin for sm_%d%d)", major, minor);
        }
    CUmodule module;
    if ((status = tex_cu.cuModuleLoadData(&module, image)))
        return tex_cu_fail(m->kernel, "cuModuleLoadData", what, status);
    for (int k = 0; k < m->count; k++) {
        if ((status = tex_cu.cuModuleGetFunction(&functions[k], module, m->names[k])))
            return tex_cu_fail(m->kernel, "cuModuleGetFunction", "", status);
        if (m->shared_bytes[k] > @STATIC_LIMIT@ &&
            (status = tex_cu.cuFuncSetAttribute(functions[k], TEX_CU_MAX_DYNAMIC_SHARED,
                                            m->shared_bytes[k])))
            return tex_cu_fail(m->kernel, "cuFuncSetAttribute", " (dynamic shared memory)",
                           status);
    }
    return 0;
}

/* The functions of `m` in the calling thread's context, its module loaded there once. */
static int tex_cu_functions(const struct tex_cu_module *m, CUfunction **functions) {
    pthread_once(&tex_cu_once, tex_cu_load);
    if (tex_cu_failure[0]) return fail(TEX_ERROR_CUDA, "%s: %s", m->kernel, tex_cu_failure);
    CUcontext context;
    int code = tex_cu_context(m->kernel, &context);
    if (code) return code;
    pthread_mutex_lock(m->lock);
    for (int k = 0; k < *m->loaded; k++)
        if (m->contexts[k] == context) {
            *functions = m->functions + k * m->count;
            pthread_mutex_unlock(m->lock);
            return 0;
        }
    if (*m->loaded == TEX_CONTEXTS) {
        pthread_mutex_unlock(m->lock);
        return fail(TEX_ERROR_CUDA, "%s: called in more than %d CUDA contexts", m->kernel,
                    TEX_CONTEXTS);
    }
    CUfunction *slot = m->functions + *m->loaded * m->count;
    code = tex_cu_load_module(m, slot);
    if (!code) {
        m->contexts[(*m->loaded)++] = context;
        *functions = slot;
    }
    pthread_mutex_unlock(m->lock);
    return code;
}

/* Allocates the `count` temporaries of `bytes` on `stream` (freed in stream order by
   tex_cu_free); on an error, frees those it allocated. */
static int tex_cu_allocate(const char *kernel, CUdeviceptr *temporaries, const int64_t *bytes,
                           int count, CUstream stream) {
    for (int k = 0; k < count; k++) {
        CUresult status = tex_cu.cuMemAllocAsync(&temporaries[k],
                                                 (size_t)(bytes[k] ? bytes[k] : 1), stream);
        if (status) {
            while (k--) tex_cu.cuMemFreeAsync(temporaries[k], stream);
            return tex_cu_fail(kernel, "cuMemAllocAsync", " (a temporary)", status);
        }
    }
    return 0;
}

/* Frees the `count` temporaries once the work queued on `stream` is done; returns `code`,
   or the error of a free. */
static int tex_cu_free(const char *kernel, CUdeviceptr *temporaries, int count,
                       CUstream stream, int code) {
    for (int k = 0; k < count; k++) {
        CUresult status = tex_cu.cuMemFreeAsync(temporaries[k], stream);
        if (status && !code) code = tex_cu_fail(kernel, "cuMemFreeAsync", "", status);
    }
    return code;
}

/* The ordinal of the device whose memory `pointer` is, in *ordinal; TEX_ERROR_CUDA (with
   the driver's reason) when it is not CUDA memory or there is no driver. Exported for
   callers that must check pointers before a launch (tex.load_library's Python calls). */
TEX_EXPORT int tex_cuda_pointer_device(const void *pointer, int *ordinal) {
    pthread_once(&tex_cu_once, tex_cu_load);
    if (tex_cu_failure[0]) return fail(TEX_ERROR_CUDA, "%s", tex_cu_failure);
    CUresult status = tex_cu.cuPointerGetAttribute(ordinal, TEX_CU_POINTER_DEVICE_ORDINAL,
                                                   (CUdeviceptr)pointer);
    if (status) {
        char text[256];
        tex_cu_describe(status, text, sizeof text);
        return fail(TEX_ERROR_CUDA, "%p is not CUDA memory: %s", pointer, text);
    }
    return 0;
}

/* Checks launch dimensions `dims` (grid, then block) against the target's limits. */
static int tex_cu_check_dims(const char *kernel, const char *launch, const int64_t *dims,
                         int bad, const int64_t *limits, int64_t max_threads) {
    static const char *const kinds[2] = {"grid", "block"};
    if (bad)
        return fail(TEX_ERROR_SIZE, "%s: the grid or block of launch %s overflows or divides "
                    "by zero for these sizes", kernel, launch);
    for (int d = 0; d < 6; d++) {
        if (dims[d] < 0)
            return fail(TEX_ERROR_SIZE, "%s: launch %s: %s dimension %c is %lld; it cannot be "
                        "negative", kernel, launch, kinds[d / 3], "xyz"[d % 3],
                        (long long)dims[d]);
        if (dims[d] > limits[d])
            return fail(TEX_ERROR_SIZE, "%s: launch %s: %s dimension %c is %lld, above the "
                        "limit %lld", kernel, launch, kinds[d / 3], "xyz"[d % 3],
                        (long long)dims[d], (long long)limits[d]);
    }
    if (dims[3] * dims[4] * dims[5] > max_threads)
        return fail(TEX_ERROR_SIZE, "%s: launch %s: a block of %lld threads, above the limit "
                    "%lld", kernel, launch, (long long)(dims[3] * dims[4] * dims[5]),
                    (long long)max_threads);
    return 0;
}
""".replace("@CONTEXTS@", str(CONTEXTS)).replace("@STATIC_LIMIT@", str(_STATIC_SHARED_LIMIT))


def arch_number(arch: str) -> int:
    """80 for "sm_80" (and "sm_90a": 90, the device it runs on)."""
    return int(re.fullmatch(r"sm_(\d+)a?", arch)[1])


def check_archs(archs) -> list[str] | None:
    """`archs` as export_library takes it: None, or a list of "sm_NN" names."""
    if archs is None:
        return None
    if isinstance(archs, str) or not all(isinstance(a, str) and re.fullmatch(r"sm_\d+a?", a)
                                         for a in archs) or not archs:
        raise ArgumentError(f"export_library: archs is a list of CUDA architectures such as "
                            f"['sm_80', 'sm_90'], or None for each kernel's own; got {archs!r}")
    numbers = [arch_number(a) for a in archs]
    if len(set(numbers)) < len(numbers):
        raise ArgumentError(f"export_library: archs {archs!r} name one architecture twice; a "
                            "launcher loads the cubin of the device's, so give each once")
    return list(archs)


def kernel_archs(kernel, archs: list[str] | None) -> list[str]:
    """The architectures the library carries `kernel`'s cubins for, lowest first."""
    return sorted(archs or [kernel.target.arch], key=arch_number)


def check_exportable(kernel, which: str):
    """ArgumentError unless the launcher can run the CUDA kernel `kernel` (`which` names it):
    launch dimensions and temporaries' shapes the C code can evaluate."""
    module = kernel._module
    slots = {var: k for k, var in enumerate(kernel.size_vars)}
    dimensions = [(f"launch {launch.name}", e) for launch in module.launches
                  for e in launch.grid + launch.block]
    dimensions += [(f"temporary {b.name}", e) for b in module.temporaries for e in b.shape]
    for user, e in dimensions:
        try:
            library_abi.c_expr(e, slots, "&bad")
        except BuildError:
            raise ArgumentError(f"export_library: {which}: {user} has the dimension "
                                f"{to_text(e)}, which its C launcher cannot evaluate") from None


def images(kernel, archs: list[str]) -> tuple[list[bytes], str]:
    """The cubins of `kernel` for each of `archs` (lowest first) and the PTX of the first."""
    source = kernel.get_source("cuda")
    return [compile_source(source, arch) for arch in archs], \
        compile_source(source, archs[0], "ptx")


def describe(kernel, archs: list[str]) -> dict:
    """The manifest's fields for the CUDA kernel `kernel` beyond its interface."""
    return {"device": "cuda", "archs": archs, "ptx_arch": archs[0],
            "target": str(kernel.target), "tex": kernel.get_source("tex"),
            "cuda": kernel.get_source("cuda"),
            "launches": [{"name": launch.name, "shared_bytes": launch.shared_bytes}
                         for launch in kernel._module.launches]}


def launchers_source(kernels: list, archs: list[str] | None) -> str:
    """The C source of the launchers of the CUDA `kernels` (after `library_abi`'s
    `checks_source`, whose helpers they use): the driver's loader, each kernel's images
    as data, and its entry point."""
    if not kernels:
        return ""
    return _DRIVER + "".join(_launcher(k, kernel_archs(k, archs), index)
                             for index, k in enumerate(kernels))


def _bytes(name: str, data: bytes) -> list[str]:
    """A C array `name` holding `data`, aligned for the driver's ELF reader."""
    lines = [f"static const unsigned char {name}[{len(data)}] __attribute__((aligned(64))) = {{"]
    for at in range(0, len(data), 24):
        lines.append("    " + ",".join(str(b) for b in data[at:at + 24]) + ",")
    return lines + ["};"]


def _launcher(kernel, archs: list[str], index: int) -> str:
    """The images, module table and entry point of the CUDA kernel `kernel`, the
    library's CUDA kernel #`index` (its data's names start with tex_cuda_`index`_)."""
    name = kernel.name
    own = f"tex_cuda_{index}"
    module = kernel._module
    launches = module.launches
    count = len(launches)
    cubins, ptx = images(kernel, archs)
    lines = [""]
    for arch, cubin in zip(archs, cubins):
        lines += _bytes(f"{own}_{arch}", cubin)
    lines += _bytes(f"{own}_ptx", ptx.encode() + b"\0")
    strings = ", ".join(library_abi.c_string(launch.name) for launch in launches)
    lines += [
        f"static const int {own}_archs[] = {{{', '.join(str(arch_number(a)) for a in archs)}}};",
        f"static const unsigned char *const {own}_cubins[] = {{"
        + ", ".join(f"{own}_{arch}" for arch in archs) + "};",
        f"static const char *const {own}_names[] = {{{strings}}};",
        f"static const int {own}_shared[] = {{"
        + ", ".join(str(launch.shared_bytes) for launch in launches) + "};",
        f"static pthread_mutex_t {own}_lock = PTHREAD_MUTEX_INITIALIZER;",
        f"static int {own}_loaded;",
        f"static CUcontext {own}_contexts[TEX_CONTEXTS];",
        f"static CUfunction {own}_functions[TEX_CONTEXTS * {count}];",
        f"static const struct tex_cu_module {own}_module = {{"
        f"{library_abi.c_string(name)}, {len(archs)}, {own}_archs, {own}_cubins, "
        f"{own}_ptx, {count}, {own}_names, {own}_shared, &{own}_lock, "
        f"&{own}_loaded, {own}_contexts, {own}_functions}};",
        "",
        f"TEX_EXPORT int {name}(void **buffers, const int64_t *sizes, void *stream) {{",
        *library_abi.argument_checks(name, kernel)]
    lines += _launch_lines(kernel, own)
    return "\n".join(lines + ["}", ""])


def _launch_lines(kernel, own: str) -> list[str]:
    """C lines of the entry point of the CUDA kernel `kernel`, after its arguments' checks:
    the launch dimensions and temporaries' sizes, checked, then the module's functions,
    the temporaries allocated, the launches and the temporaries freed."""
    name = library_abi.c_string(kernel.name)
    module = kernel._module
    launches, temporaries = module.launches, module.temporaries
    count = len(launches)
    target = kernel.target
    limits = ", ".join(library_abi.c_int(v) for v in (*target.max_grid, *target.max_block))
    slots = {var: k for k, var in enumerate(kernel.size_vars)}
    lines = [f"    static const int64_t limits[6] = {{{limits}}};",
             "    int bad = 0;",
             f"    int64_t dims[{count}][6] = {{"]
    for launch in launches:
        dims = ", ".join(library_abi.c_expr(e, slots, "&bad") for e in launch.grid + launch.block)
        lines.append(f"        {{{dims}}},")
    lines += ["    };",
              f"    for (int k = 0; k < {count}; k++)",
              f"        if (tex_cu_check_dims({name}, {own}_names[k], dims[k], bad, limits, "
              f"{target.max_threads_per_block})) return TEX_ERROR_SIZE;"]
    if temporaries:
        sizes = []
        for b in temporaries:
            size = library_abi.c_int(b.dtype.numpy.itemsize)
            for e in b.shape:
                size = f"tex_mul({size}, {library_abi.c_expr(e, slots, '&bad')}, &bad)"
            sizes.append(size)
        lines += [f"    const int64_t bytes[{len(temporaries)}] = {{{', '.join(sizes)}}};",
                  f"    for (int k = 0; k < {len(temporaries)}; k++)",
                  "        if (bad || bytes[k] < 0)",
                  f'            return fail(TEX_ERROR_SIZE, "%s: the size of a temporary '
                  'overflows, divides by zero or is negative for these sizes", '
                  f'{name});']
    lines += ["    CUfunction *functions;",
              f"    int code = tex_cu_functions(&{own}_module, &functions);",
              "    if (code) return code;"]
    if temporaries:
        lines += [f"    CUdeviceptr temporaries[{len(temporaries)}];",
                  f"    code = tex_cu_allocate({name}, temporaries, bytes, {len(temporaries)}, "
                  "(CUstream)stream);",
                  "    if (code) return code;"]
    lines.append("    CUresult status;")
    places = {p.buffer: f"&buffers[{p.position}]" for p in kernel._params}
    places.update({b: f"&temporaries[{k}]" for k, b in enumerate(temporaries)})
    for k, launch in enumerate(launches):
        params = [places[b] for b in launch.params] + \
            [f"(void *)&sizes[{slots[var]}]" for var in launch.size_vars]
        d = f"dims[{k}]"
        what = library_abi.c_string(f" (launch {launch.name})")
        lines += [f"    if ({' && '.join(f'{d}[{a}]' for a in range(6))}) {{",
                  f"        void *params[{max(1, len(params))}] = {{"
                  + (", ".join(params) or "NULL") + "};",
                  f"        status = tex_cu.cuLaunchKernel(functions[{k}], (unsigned){d}[0], "
                  f"(unsigned){d}[1], (unsigned){d}[2], (unsigned){d}[3], (unsigned){d}[4], "
                  f"(unsigned){d}[5], {launch.shared_bytes}, (CUstream)stream, params, NULL);",
                  "        if (status) {",
                  f'            code = tex_cu_fail({name}, "cuLaunchKernel", {what}, status);',
                  "            goto done;",
                  "        }",
                  "    }"]
    lines.append("done:")
    if temporaries:
        return lines + [f"    return tex_cu_free({name}, temporaries, {len(temporaries)}, "
                        "(CUstream)stream, code);"]
    return lines + ["    return code;"]
