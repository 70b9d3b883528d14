"""The C interface of a library that `tex.export_library` writes: the checking entry
points (C source, compiled by the library's C compiler) and the header.

    int NAME(void **buffers, const int64_t *sizes);   /* 0: ran; else an error code */
    int NAME(void **buffers, const int64_t *sizes, void *stream);   /* a CUDA kernel */
    const char *tex_last_error(void);                  /* this thread's last message */
    void tex_set_num_threads(int n);                   /* n < 1: every thread */

`NAME` checks its arguments against the kernel's declaration before it calls the
kernel's machine code (`tex_unchecked_NAME`, hidden): `buffers` and `sizes` are not
NULL, nor is any buffer (TEX_ERROR_NULL); every size variable is non-negative and
fits its dtype, every integer scalar parameter fits its dtype, every float one
leaves the bits above its own zero, and every dimension of every parameter,
evaluated from the sizes,
neither divides by zero nor is negative nor overflows, and no parameter holds
2**63 bytes or more, and the kernel's `RuntimeCheck`s hold (TEX_ERROR_SIZE; a check
of `vscale()` reads the SVE vector length of the calling thread). The shapes
themselves are not passed: they follow from the sizes, so a C caller cannot pass a
constant dimension or two dimensions of one size variable that disagree. An error
returns its code and leaves its message for `tex_last_error`, in a buffer per
thread. A CUDA kernel's
entry point (`tex.runtime.library_cuda`) makes the same checks (`argument_checks`)
and returns TEX_ERROR_CUDA for an error of the CUDA driver.

The entry point of a dispatch (`tex.runtime.library_dispatch`) checks the
arguments of its fallback's interface, then calls the hidden code of the
specialisation made for the sizes given (`tex_specialized_NAME_k`), else of its
fallback (or of the fallback of the specialisation nearest the sizes, by
`tex_distance`).

Scalar parameters (variables among `tex.build`'s args that no shape uses) follow
the size variables in `sizes`, as `tex.codegen.llvm` takes them: an integer or
bool as its int64 value, a float as its IEEE bits in the low bits of the slot
(float32: `uint32_t bits; memcpy(&bits, &x, 4); sizes[k] = bits;`).
"""
from __future__ import annotations

from tex.errors import BuildError
from tex.expr import Binary, Cast, Compare, Const, Var, VScale, _int_range
from tex.printer import to_text

#: The return codes of an entry point, as the header defines them.
ERROR_CODES = {"TEX_OK": 0, "TEX_ERROR_NULL": 1, "TEX_ERROR_SIZE": 2, "TEX_ERROR_CUDA": 3}
LAST_ERROR = "tex_last_error"
_C_OPERATORS = {"add": "tex_add", "sub": "tex_sub", "mul": "tex_mul", "min": "tex_min",
                "max": "tex_max", "floordiv": "tex_floordiv", "floormod": "tex_floormod"}
C_TYPES = {"bool": "bool", "int8": "int8_t", "int16": "int16_t", "int32": "int32_t",
           "int64": "int64_t", "uint8": "uint8_t", "uint16": "uint16_t",
           "uint32": "uint32_t", "uint64": "uint64_t", "float16": "uint16_t (float16 bits)",
           "bfloat16": "uint16_t (bfloat16 bits)",
           "float32": "float", "float64": "double"}

_RUNTIME = r"""/* The checking entry points of a library written by tex.export_library. */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>

#define TEX_EXPORT __attribute__((visibility("default")))
#define TEX_ERROR_NULL 1
#define TEX_ERROR_SIZE 2
#define TEX_ERROR_CUDA 3
#define TEX_OVERFLOW 1
#define TEX_DIVIDES_BY_ZERO 2

static _Thread_local char last_error[512];

TEX_EXPORT const char *tex_last_error(void) { return last_error; }

#if defined(__aarch64__) && defined(__linux__)
#include <sys/prctl.h>
/* vscale(): this thread's SVE vector length (PR_SVE_GET_VL: bytes, low 16 bits) / 16. */
static int64_t tex_vscale(void) { return (prctl(51, 0, 0, 0, 0) & 0xffff) / 16; }
#endif

static int fail(int code, const char *format, ...) {
    va_list args;
    va_start(args, format);
    vsnprintf(last_error, sizeof last_error, format, args);
    va_end(args);
    return code;
}

static int64_t tex_add(int64_t a, int64_t b, int *bad) {
    int64_t r;
    if (__builtin_add_overflow(a, b, &r)) *bad |= TEX_OVERFLOW;
    return r;
}

static int64_t tex_sub(int64_t a, int64_t b, int *bad) {
    int64_t r;
    if (__builtin_sub_overflow(a, b, &r)) *bad |= TEX_OVERFLOW;
    return r;
}

static int64_t tex_mul(int64_t a, int64_t b, int *bad) {
    int64_t r;
    if (__builtin_mul_overflow(a, b, &r)) *bad |= TEX_OVERFLOW;
    return r;
}

static int64_t tex_min(int64_t a, int64_t b, int *bad) { (void)bad; return a < b ? a : b; }

static int64_t tex_max(int64_t a, int64_t b, int *bad) { (void)bad; return a > b ? a : b; }

static int64_t tex_floordiv(int64_t a, int64_t b, int *bad) {
    if (b == 0) { *bad |= TEX_DIVIDES_BY_ZERO; return 0; }
    if (b == -1) return tex_sub(0, a, bad);
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

static int64_t tex_floormod(int64_t a, int64_t b, int *bad) {
    if (b == 0) { *bad |= TEX_DIVIDES_BY_ZERO; return 0; }
    if (b == -1) return 0;
    int64_t r = a % b;
    return (r != 0 && (r < 0) != (b < 0)) ? r + b : r;
}

/* How far the sizes `a` are from `b`: the sum of |log(max(x, 1)) - log(max(y, 1))|. */
static double tex_distance(const int64_t *a, const int64_t *b, int count) {
    double sum = 0;
    for (int k = 0; k < count; k++)
        sum += fabs(log(a[k] > 1 ? (double)a[k] : 1.0) - log(b[k] > 1 ? (double)b[k] : 1.0));
    return sum;
}

/* Checks the size variable sizes[k] against the range [low, high] of its dtype. */
static int check_size(const char *kernel, const int64_t *sizes, int k, const char *name,
                      int64_t low, int64_t high, const char *dtype) {
    if (sizes[k] < 0)
        return fail(TEX_ERROR_SIZE, "%s: sizes[%d] (%s) is %lld; a size cannot be negative",
                    kernel, k, name, (long long)sizes[k]);
    if (sizes[k] < low || sizes[k] > high)
        return fail(TEX_ERROR_SIZE, "%s: sizes[%d] (%s) is %lld, which does not fit its "
                    "dtype %s", kernel, k, name, (long long)sizes[k], dtype);
    return 0;
}

/* Checks the integer scalar parameter sizes[k] against the range [low, high] of its dtype. */
static int check_scalar(const char *kernel, const int64_t *sizes, int k, const char *name,
                        int64_t low, int64_t high, const char *dtype) {
    if (sizes[k] < low || sizes[k] > high)
        return fail(TEX_ERROR_SIZE, "%s: sizes[%d] (scalar %s) is %lld, which does not fit "
                    "its dtype %s", kernel, k, name, (long long)sizes[k], dtype);
    return 0;
}

/* Checks that the float scalar parameter sizes[k] (its IEEE bits) uses its low `bits` only. */
static int check_float_bits(const char *kernel, const int64_t *sizes, int k, const char *name,
                            int bits, const char *dtype) {
    if (((uint64_t)sizes[k] >> bits) != 0)
        return fail(TEX_ERROR_SIZE, "%s: sizes[%d] (scalar %s) is 0x%llx; a %s value is its "
                    "IEEE bits in the low %d bits, the others zero", kernel, k, name,
                    (unsigned long long)sizes[k], dtype, bits);
    return 0;
}

/* Checks the dimensions `dims` of buffers[k] (`bad`: how computing each went wrong). */
static int check_buffer(const char *kernel, int k, const char *name, int rank,
                        const int64_t *dims, const int *bad, const char *const *texts,
                        int64_t itemsize) {
    int bytes_bad = 0;
    int64_t bytes = itemsize;
    for (int d = 0; d < rank; d++) {
        if (bad[d] & TEX_DIVIDES_BY_ZERO)
            return fail(TEX_ERROR_SIZE, "%s: buffers[%d] (%s) dimension %d is %s, which "
                        "divides by zero for these sizes", kernel, k, name, d, texts[d]);
        if (bad[d] & TEX_OVERFLOW)
            return fail(TEX_ERROR_SIZE, "%s: buffers[%d] (%s) dimension %d is %s, which "
                        "overflows int64 for these sizes", kernel, k, name, d, texts[d]);
        if (dims[d] < 0)
            return fail(TEX_ERROR_SIZE, "%s: buffers[%d] (%s) dimension %d is %s = %lld for "
                        "these sizes; a dimension cannot be negative", kernel, k, name, d,
                        texts[d], (long long)dims[d]);
        bytes = tex_mul(bytes, dims[d], &bytes_bad);
    }
    if (bytes_bad)
        return fail(TEX_ERROR_SIZE, "%s: buffers[%d] (%s) would hold 2**63 bytes or more for "
                    "these sizes", kernel, k, name);
    return 0;
}
"""


#: The beginnings of the library's hidden symbols, which no entry point may take ("tex_cu":
#: the CUDA launchers' driver table, helpers and data, `tex.runtime.library_cuda`).
RESERVED_PREFIXES = ("tex_unchecked_", "tex_specialized_", "tex_fallback_", "tex_cu")


def unchecked_name(name: str) -> str:
    """The hidden symbol of kernel `name`'s machine code, which its entry point calls (for
    a dispatch, that of its fallback)."""
    return f"{RESERVED_PREFIXES[0]}{name}"


def specialized_name(name: str, k: int) -> str:
    """The hidden symbol of the machine code of specialisation #k of dispatch `name`."""
    return f"{RESERVED_PREFIXES[1]}{name}_{k}"


def fallback_name(entry, k: int) -> str:
    """The hidden symbol of the machine code of fallback #k of the dispatch `entry`."""
    return unchecked_name(entry.name) if k == 0 else f"{RESERVED_PREFIXES[2]}{entry.name}_{k}"


def checks_source(entries: list) -> str:
    """The C source of the checking entry points of `entries` (Kernels, and dispatches:
    objects with `name`, `cases`, `fallbacks` and `fallback`, see
    `tex.runtime.library_dispatch.Dispatch`) and
    of `tex_last_error`."""
    return _RUNTIME + "".join(_entry_point(entry) for entry in entries)


def _entry_point(entry) -> str:
    """The C definition of `int NAME(void **buffers, const int64_t *sizes)` for the kernel
    or dispatch `entry`: the checks of the kernel (of a dispatch, its fallback's), then
    the call of its machine code (of a dispatch, the first specialisation for the sizes
    given, compared one by one, else the fallback)."""
    name = entry.name
    kernel = getattr(entry, "fallback", entry)
    cases = getattr(entry, "cases", ())
    fallbacks = [fallback_name(entry, k) for k in range(len(getattr(entry, "fallbacks", [0])))]
    call = "(buffers, (int64_t *)sizes);"
    calls = []
    for k, (values, _) in enumerate(cases):
        test = " && ".join(f"sizes[{slot}] == {c_int(value)}"
                           for slot, value in enumerate(values)) or "1"
        calls += [f"    if ({test}) {{", f"        {specialized_name(name, k)}{call}",
                  "        return 0;", "    }"]
    if len(fallbacks) == 1:
        calls.append(f"    {fallbacks[0]}{call}")
    else:
        calls += _nearest_call(cases, fallbacks, len(kernel.size_vars))
    declared = fallbacks + [specialized_name(name, k) for k in range(len(cases))]
    return _checked_entry(name, kernel, declared, calls)


def _nearest_call(cases, fallbacks: list, count: int) -> list:
    """C lines that call the fallback (of `fallbacks`, one per case) of the case whose
    sizes are nearest the call's by `tex_distance` (the first of equals)."""
    table = ", ".join("{" + ", ".join(c_int(v) for v in values) + "}" for values, _ in cases)
    return [f"    static const int64_t tuned[{len(cases)}][{count}] = {{{table}}};",
            f"    static void (*const fallbacks[{len(cases)}])(void **, int64_t *) = {{"
            + ", ".join(fallbacks) + "};",
            "    int nearest = 0;",
            f"    double least = tex_distance(sizes, tuned[0], {count});",
            f"    for (int k = 1; k < {len(cases)}; k++) {{",
            f"        double d = tex_distance(sizes, tuned[k], {count});",
            "        if (d < least) { least = d; nearest = k; }",
            "    }",
            "    fallbacks[nearest](buffers, (int64_t *)sizes);"]


def _checked_entry(name: str, kernel, declared: list, calls: list) -> str:
    """The C entry point `name` that checks the arguments of `kernel`'s interface and then
    runs `calls` (C lines calling the functions `declared`)."""
    lines = ["", *(f"void {symbol}(void **buffers, int64_t *sizes);" for symbol in declared),
             "", f"TEX_EXPORT int {name}(void **buffers, const int64_t *sizes) {{",
             *argument_checks(name, kernel)]
    lines += calls + ["    return 0;", "}", ""]
    return "\n".join(lines)


def argument_checks(name: str, kernel) -> list:
    """C lines, in the body of the entry point `name`, that check its `buffers` and
    `sizes` against the interface of `kernel` (see the module docstring) and return an
    error code with its message at the first that is wrong."""
    params = kernel._params
    slots = {var: k for k, var in enumerate(kernel.size_vars)}
    lines = [f'    static const char *const names[{len(params)}] = {{'
             + ", ".join(c_string(p.buffer.name) for p in params) + "};",
             "    if (!buffers || !sizes)",
             f'        return fail(TEX_ERROR_NULL, "{name}: %s is NULL", '
             '!buffers ? "buffers" : "sizes");',
             f"    for (int k = 0; k < {len(params)}; k++)",
             "        if (!buffers[k])",
             f'            return fail(TEX_ERROR_NULL, "{name}: buffers[%d] (%s) is NULL", '
             "k, names[k]);"]
    for var, k in slots.items():
        lines += _size_check(name, var, k, var in kernel._slots)
    for p in params:
        lines += _buffer_check(name, p, slots)
    for check in getattr(kernel, "_runtime_checks", ()):
        lines += _runtime_check(name, check, slots)
    return lines


_C_COMPARE = {"lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "==", "ne": "!="}


def _runtime_check(kernel_name: str, check, slots: dict) -> list:
    """C lines (a block) that test a `RuntimeCheck` of the kernel for the sizes given."""
    cond = check.cond
    if not isinstance(cond, Compare) or cond.op not in _C_COMPARE:
        raise BuildError(f"export_library: the check {to_text(cond)} of {kernel_name} has no "
                         "C form the library's checks could evaluate")
    a, b = (c_expr(side, slots, "&bad") for side in (cond.a, cond.b))
    message = f"{kernel_name}: {check.message}; {to_text(cond)} fails".replace("%", "%%")
    return ["    {", "        int bad = 0;",
            f"        if (!({a} {_C_COMPARE[cond.op]} {b}) || bad)",
            f"            return fail(TEX_ERROR_SIZE, {c_string(message)});", "    }"]


def _size_check(kernel_name: str, var, k: int, is_size: bool) -> list:
    """C lines that check sizes[k], the value of `var`: a size variable (`is_size`) or a
    scalar parameter (an int in its dtype's range, a float's bits in the low bits)."""
    dtype = var.dtype
    where = f"{c_string(kernel_name)}, sizes, {k}, {c_string(var.name)}"
    if dtype.is_float:
        return [f"    if (check_float_bits({where}, {dtype.bits}, {c_string(str(dtype))}))"
                " return TEX_ERROR_SIZE;"] if dtype.bits < 64 else []
    low, high = (0, 1) if dtype.is_bool else _int_range(dtype)
    if not is_size and dtype in ("int64", "uint64"):
        return []  # every int64 is a value of an int64 or uint64 (by its bits) scalar
    check = "check_size" if is_size else "check_scalar"
    return [f"    if ({check}({where}, {c_int(max(low, -2**63))}, "
            f"{c_int(min(high, 2**63 - 1))}, {c_string(str(dtype))})) return TEX_ERROR_SIZE;"]


def _buffer_check(kernel_name: str, p, slots: dict) -> list:
    """C lines (a block) that check the dimensions of parameter `p` for the sizes given."""
    shape = p.buffer.shape
    rank = max(1, len(shape))
    lines = ["    {", f"        int bad[{rank}] = {{0}};",
             f"        const int64_t dims[{rank}] = {{"
             + (", ".join(c_expr(e, slots, f"bad + {d}") for d, e in enumerate(shape))
                or "0") + "};",
             f"        static const char *const texts[{rank}] = {{"
             + (", ".join(c_string(to_text(e)) for e in shape) or '""') + "};",
             f"        if (check_buffer({c_string(kernel_name)}, {p.position}, "
             f"{c_string(p.buffer.name)}, {len(shape)}, dims, bad, texts, "
             f"{p.buffer.dtype.numpy.itemsize})) return TEX_ERROR_SIZE;", "    }"]
    return lines


def c_expr(extent, slots: dict, bad: str) -> str:
    """The size expression `extent` in C, in int64_t, where the sizes are `sizes[k]`;
    overflow and division by zero set bits of `*bad` (`bad`: a C pointer to an int)."""
    if isinstance(extent, Const):
        return c_int(int(extent.value))
    if isinstance(extent, Var):
        return f"sizes[{slots[extent]}]"
    if isinstance(extent, VScale):  # only in kernels for aarch64 with SVE
        return "tex_vscale()"
    if isinstance(extent, Cast) and extent.dtype.is_int:
        return c_expr(extent.value, slots, bad)
    if isinstance(extent, Binary) and extent.op in _C_OPERATORS:
        return f"{_C_OPERATORS[extent.op]}({c_expr(extent.a, slots, bad)}, " \
               f"{c_expr(extent.b, slots, bad)}, {bad})"
    raise BuildError(f"export_library: the dimension {to_text(extent)} has no C form the "
                     "library's checks could evaluate")


def c_int(value: int) -> str:
    """`value` as a C int64_t literal (INT64_MIN has none: written as an expression)."""
    return "(-INT64_MAX - 1)" if value == -2**63 else f"INT64_C({value})"


def c_string(text: str) -> str:
    """`text` as a C string literal."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _bits_note(var) -> str:
    """How a float scalar parameter's value sits in its slot of `sizes` (ints: nothing)."""
    return f": its IEEE bits, low {var.dtype.bits}" if var.dtype.is_float else ""


def _dispatch_note(entry, kernel) -> list:
    """The header's comment lines on the sizes a dispatch `entry` has kernels for."""
    cases = getattr(entry, "cases", None)
    if cases is None:
        return []
    names = ", ".join(v.name for v in kernel.size_vars)
    lines = [f"   Runs a kernel specialised for the sizes ({names}) where it has one:"]
    lines += [f"     ({', '.join(map(str, values))})" for values, _ in cases]
    if len(entry.fallbacks) == 1:
        return lines + ["   and for any other sizes a kernel built for all sizes."]
    return lines + ["   and for any other sizes a kernel built for all sizes with the",
                    "   schedule of the nearest of these (the least sum over the sizes of",
                    "   |log(max(size, 1)) - log(max(specialised size, 1))|)."]


def header(path, kernels: list, cuda_archs: dict | None = None) -> str:
    """The C header of the library `path` (a Path) holding `kernels` (Kernels, dispatches,
    see `checks_source`, and CudaKernels, whose cubins' architectures `cuda_archs` gives
    by name)."""
    guard = "".join(c if c.isalnum() else "_" for c in path.stem.upper()) + "_H"
    lines = [f"/* {path.name}: kernels compiled by tex (export_library).",
             "",
             "   Each takes `buffers`, the data pointers of its parameters in the order",
             "   below (C-contiguous arrays), and `sizes`, the values of its size",
             "   variables in order; every shape follows from the sizes. It returns",
             "   TEX_OK (0) once the kernel ran, or, having run nothing, an error code:",
             "   TEX_ERROR_NULL for a NULL `buffers`, `sizes` or buffer, TEX_ERROR_SIZE",
             "   for a size that is negative or does not fit its dtype, or that makes a",
             "   dimension negative, overflow or divide by zero, or for a scalar",
             "   parameter out of its dtype's range. tex_last_error() then",
             "   says what was wrong (the calling thread's last error).",
             "   tex_set_num_threads(n) bounds the threads of parallel loops to n",
             "   (n < 1: all of them).",
             "   Scalar parameters follow the size variables in `sizes`: an integer or",
             "   bool as its int64 value, a float as its IEEE bits in the low bits of",
             "   the slot, the others zero (float32: uint32_t bits; memcpy(&bits, &x, 4);",
             "   sizes[k] = bits;  double: all 64 bits; float16: the low 16).",
             "",
             "   A CUDA kernel takes a third argument, `stream` (a CUstream; NULL: the",
             "   default stream), and device pointers in `buffers`. It checks what a",
             "   CPU kernel checks, and its launch dimensions against the device limits,",
             "   then queues its launches on `stream` in the calling thread's current",
             "   CUDA context (none: device 0's primary context, retained and made",
             "   current) and returns without waiting for them. It loads the CUDA",
             "   driver (libcuda.so.1) at first use and its module once per context",
             "   (the cubin of the device's architecture, else the PTX). No driver or",
             "   GPU, or a CUDA error, returns TEX_ERROR_CUDA.",
             "*/",
             f"#ifndef {guard}", f"#define {guard}", "", "#include <stdint.h>",
             "#include <stdbool.h>", "", "#ifdef __cplusplus", 'extern "C" {', "#endif", "",
             "#ifndef TEX_OK"]
    lines += [f"#define {code} {value}" for code, value in ERROR_CODES.items()]
    lines += ["#endif", "", f"const char *{LAST_ERROR}(void);",
              "void tex_set_num_threads(int n);", ""]
    if cuda_archs:
        lines += ["/* The ordinal of the device whose memory `pointer` is, in *ordinal (0), or",
                  "   TEX_ERROR_CUDA when it is not CUDA memory or there is no driver. */",
                  "int tex_cuda_pointer_device(const void *pointer, int *ordinal);", ""]
    for entry in kernels:
        kernel = getattr(entry, "fallback", entry)
        lines.append(f"/* {entry.name}")
        for k, p in enumerate(kernel._params):
            shape = ", ".join(to_text(e) for e in p.buffer.shape)
            role = "output" if p.is_output else "input"
            lines.append(f"     buffers[{k}]: {p.buffer.name}, {C_TYPES[str(p.buffer.dtype)]}"
                         f"[{shape}], {role}")
        for k, var in enumerate(kernel.size_vars):
            role = "" if var in kernel._slots else f", scalar parameter{_bits_note(var)}"
            lines.append(f"     sizes[{k}]: {var.name} ({var.dtype}{role})")
        lines += _dispatch_note(entry, kernel)
        if getattr(entry, "device_kind", "cpu") == "cuda":
            archs = ", ".join(cuda_archs[entry.name])
            lines += [f"   CUDA kernel (cubins for {archs}; PTX for later devices): buffers",
                      "   are device pointers; its launches are queued on `stream`."]
            lines += ["*/", f"int {entry.name}(void **buffers, const int64_t *sizes, "
                      "void *stream);", ""]
        else:
            lines += ["*/", f"int {entry.name}(void **buffers, const int64_t *sizes);", ""]
    lines += ["#ifdef __cplusplus", "}", "#endif", "", f"#endif  /* {guard} */", ""]
    return "\n".join(lines)
