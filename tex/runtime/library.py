"""Kernels compiled ahead of time into one shared library with a C header, and loaded back.

    tex.export_library([matmul, softmax], "ops.so")    # writes ops.so and ops.h
    ops = tex.load_library("ops.so")                    # in this process or any other
    c = ops.matmul(a, b)                                # checked like the Kernel it was

`export_library` takes CPU kernels (built for "llvm", all for one machine) and CUDA
kernels (built for "cuda": `tex.runtime.library_cuda` says how they are carried and
launched; `archs=` the architectures of their cubins). It compiles each CPU one's
optimised LLVM IR again as position-independent code, with every function but its
entry point made internal, adds tex's thread pool and
tex's runtime routines (`tex.codegen.llvm_builtins`) when the code calls them,
and links the objects with the system's C compiler ($CC, else cc; for
another machine's kernels its cross compiler, `cc=`) into one shared library,
with `-z defs`: a symbol nothing defines is a BuildError naming it, not a
crash at load time. A kernel's name (`tex.build(..., name=...)`) is its C
symbol, so the names must be distinct C identifiers.

    group = tex.dispatch("matmul", [k64, k96], fallback=k_any)   # one entry, three kernels
    tex.export_library([group, softmax], "ops.so")

A `dispatch` (`tex.runtime.library_dispatch`) is one entry point over kernels of
one declaration: specialisations built at constant shapes, and a fallback built
for symbolic sizes (or one per specialisation, each run for the sizes nearest its
specialisation's: `library_dispatch.distance`). The entry has the fallback's
interface; its C code checks a call's sizes as the fallback's would, compares
them with each specialisation's and calls the first that matches, else a
fallback. Only the entry is exported: the kernels' machine code sits in hidden
functions (`library_abi.specialized_name`, `fallback_name`).

The C interface of a kernel is `int NAME(void **buffers, const int64_t *sizes)`:
`buffers[k]` points to the data of parameter k (C-contiguous, of the element type
the header gives), `sizes[k]` is the value of size variable k, then of each
scalar parameter (a float by its IEEE bits: `tex.runtime.library_abi`). The header
lists both, in order, with each parameter's shape. NAME checks what it can before it
runs the kernel (no NULL pointer; sizes that give every dimension a value) and
returns 0, or an error code with the message in `tex_last_error()`;
`tex_set_num_threads(n)` bounds the thread pool (`tex.runtime.library_abi`).
A kernel that calls Python functions (an extern stage's `tex.call_packed`) is
refused: a library runs without the process that registered them.

The C interface of a CUDA kernel is `int NAME(void **buffers, const int64_t *sizes,
void *stream)`: device pointers, the same sizes, and the CUstream its launches are
queued on (NULL: the default stream); an error of the CUDA driver, or no driver or
GPU, returns TEX_ERROR_CUDA (`tex.runtime.library_cuda`).

The library also carries a description of its kernels (the data symbol
`tex_library_manifest`, JSON: its `devices`, the tex version that wrote it,
and each kernel's device ("cpu" or "cuda"), parameters with dtypes and shapes,
size variables and scalar parameters, outputs, the order of the Python call's arguments, the
CPU and features it was compiled for, its loop program and optimised IR; a
dispatch is described by its fallback's interface and code, with the features
of all its kernels and a `dispatch` field listing its specialisations' sizes and
code and its other fallbacks: `_describe`; a CUDA kernel by its interface, its
architectures (`archs`, `ptx_arch`), CUDA C and launches: `_describe_cuda`), and,
first in it, the sha256 of the library file as export_library wrote it (with the
64 digits of that sha256 read as "0"s). `load_library` reads the manifest from
the file (`object_file.symbol_extent`) before loading anything: a file that is
not a shared library exporting a manifest of this format, or whose contents do
not match its sha256 (changed after export: stripped, patched, truncated), is
refused with ArgumentError before the dynamic loader runs any of its code
(constructors included). This is a check of integrity, not of origin: whoever
can write a library can write a matching manifest, so load only libraries you
would run. Then it loads the library and returns a `Library` whose kernels check every call's
arguments exactly as a `Kernel` does and take NumPy arrays or CPU objects with
`__dlpack__`, without copies; a nonzero code from the entry point is raised as
ArgumentError with its message. Its CUDA kernels are `CudaEntry`s, called through
their C launchers on GPU arrays (every parameter given; see `CudaEntry`). Loading
refuses a library compiled for CPU features this machine lacks
(`DeviceError`), since its code would stop at the first such instruction, and
so does a library of another machine's code.
"""
from __future__ import annotations

import ctypes
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from llvmlite import ir

from tex import expr_json
from tex.codegen import (cpu_support, llvm_builtins, llvm_jit, object_file, packed_func,
                         thread_pool)
from tex.dtype import as_dtype
from tex.errors import ArgumentError, BuildError, DeviceError
from tex.expr import Var
from tex.ir import Buffer, KernelInterface
from tex.runtime import library_abi, library_cuda
from tex.runtime.cuda_args import CallStreams, CudaParam
from tex.runtime.cuda_device import DeviceArray, require_device
from tex.runtime.cuda_kernel import CudaKernel
from tex.runtime.kernel import Kernel, Signature
from tex.runtime.library_dispatch import Dispatch
from tex.target import as_target
from tex.version import __version__

MANIFEST = "tex_library_manifest"
#: 5: each kernel says its device ("cpu", "cuda"), the library all of them (`devices`),
#: and a CUDA kernel its architectures (`archs`, `ptx_arch`);
#: 4: an entry may dispatch on its sizes (`dispatch`: its specialisations and fallback);
#: 3: a kernel lists its call's arguments (buffers and variables, for scalar parameters);
#: 2: entry points return a status (`int NAME(...)`) and the manifest starts with the
#: file's sha256; 1 returned nothing and was not sealed. Formats 3 and 4 are read too.
_FORMAT = 5
_READABLE = (3, 4, 5)
_STATUS_ENTRY = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)
#: How the manifest starts: the library's sha256 follows (64 hex digits).
_DIGEST_FIELD = b'{"sha256": "'
_UNSEALED = "0" * 64


def export_library(kernels, path, cc: str | None = None, archs=None) -> Path:
    """Write `kernels` (CPU Kernels from `tex.build`, all for one machine, `Dispatch`es
    from `tex.dispatch`, and CudaKernels built for "cuda") into the shared library `path`
    and a C header beside it (`path` with suffix .h); returns `path`. `cc` is the C
    compiler that links it (default $CC, else cc; for kernels built with another
    machine's -mtriple, that machine's cross compiler, default e.g.
    aarch64-linux-gnu-gcc). `archs`: the CUDA architectures (["sm_80", "sm_90"]) the
    library carries each CUDA kernel's cubin for (default: the kernel's target
    architecture), with the PTX of the lowest. See the module docstring."""
    path = Path(path)
    kernels = list(kernels)
    archs = library_cuda.check_archs(archs)
    _check_exportable(kernels)
    cuda = [k for k in kernels if isinstance(k, CudaKernel)]
    kernels_cpu = [k for k in kernels if not isinstance(k, CudaKernel)]
    members = _members(kernels_cpu)
    target = members[0][1].target if members else as_target("llvm")
    cc = _linker(cc, target)
    described = [_describe(k) if not isinstance(k, CudaKernel) else
                 _describe_cuda(k, library_cuda.kernel_archs(k, archs)) for k in kernels]
    manifest = {"sha256": _UNSEALED, "format": _FORMAT,
                "devices": sorted({d["device"] for d in described}),
                "tex_version": __version__, "kernels": described}
    with tempfile.TemporaryDirectory(prefix="tex-library-") as work:
        objects = {f"kernel{k}.o": llvm_jit.shared_library_object(
            kernel.get_source("ll"), (), target, hidden={kernel.name: symbol})
            for k, (symbol, kernel) in enumerate(members)}
        called = set().union(*map(object_file.undefined_symbols, objects.values()))
        # always: tex_set_num_threads is part of every library's interface
        objects["thread_pool.o"] = llvm_jit.shared_library_object(
            thread_pool.ir_text(target.machine), (thread_pool.SYMBOL, thread_pool.SET_THREADS),
            target)
        if called & llvm_builtins.ROUTINES:
            objects["builtins.o"] = llvm_jit.shared_library_object(
                llvm_builtins.ir_text(), llvm_builtins.ROUTINES, target)
        objects["manifest.o"] = _manifest_object(json.dumps(manifest).encode(), target)
        for name, code in objects.items():
            (Path(work) / name).write_bytes(code)
        checks = Path(work) / "entry_points.c"
        checks.write_text(library_abi.checks_source(kernels_cpu)
                          + library_cuda.launchers_source(cuda, archs))
        linked = Path(work) / "library.so"
        # -z defs: a symbol that neither the objects nor the libraries named define is an
        # error now, not a crash when the library is loaded or called
        command = [cc, "-shared", "-fPIC", "-O2", "-fvisibility=hidden", "-Wl,-Bsymbolic",
                   "-Wl,-z,defs", "-o", str(linked), str(checks),
                   *(str(Path(work) / name) for name in objects), "-lm", "-lpthread",
                   *(["-ldl"] if cuda else [])]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            undefined = sorted(set(re.findall(r"undefined reference to `([^']+)'",
                                              result.stderr)))
            what = f"it calls {', '.join(undefined)}, which neither tex nor libc/libm " \
                "define" if undefined else "the linker said"
            raise BuildError(f"export_library: linking {path.name} with {cc} failed: {what}\n"
                             + result.stderr[-4000:])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(_sealed(linked.read_bytes()))
    cuda_archs = {d["name"]: d["archs"] for d in described if d["device"] == "cuda"}
    path.with_suffix(".h").write_text(library_abi.header(path, kernels, cuda_archs))
    return path


def _linker(cc: str | None, target) -> str:
    """The path of the C compiler that links a library of kernels for `target`."""
    foreign = not cpu_support.runs_on_this_machine(target)
    if cc is None:
        cc = f"{target.machine}-linux-gnu-gcc" if foreign else os.environ.get("CC", "cc")
    found = shutil.which(cc)
    if found is None:
        need = f"a C compiler for {target.machine} Linux" if foreign else "a C compiler"
        raise BuildError(f"export_library links with {need}: {cc!r} was not found; pass "
                         "cc='...'" + ("" if foreign else " or set CC"))
    return found


def _members(entries: list) -> list[tuple[str, Kernel]]:
    """(hidden symbol, kernel) of every kernel whose machine code the library holds."""
    return [member for entry in entries for member in _kernels_of(entry)]


def _kernels_of(entry) -> list[tuple[str, Kernel]]:
    """(hidden symbol, kernel) of each kernel of the Kernel or Dispatch `entry`."""
    if not isinstance(entry, Dispatch):
        return [(library_abi.unchecked_name(entry.name), entry)]
    return [(library_abi.fallback_name(entry, k), kernel)
            for k, kernel in enumerate(entry.fallbacks)] + \
        [(library_abi.specialized_name(entry.name, k), kernel)
         for k, (_, kernel) in enumerate(entry.cases)]


def _check_exportable(kernels: list):
    if not kernels:
        raise ArgumentError("export_library: give at least one kernel")
    seen = {}
    for k, kernel in enumerate(kernels):
        if not isinstance(kernel, (Kernel, Dispatch, CudaKernel)):
            raise ArgumentError(f"export_library: kernel #{k} is a {type(kernel).__name__}; "
                                "it takes kernels built by tex.build(..., target='llvm') or "
                                "target='cuda', and tex.dispatch groups of CPU kernels")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", kernel.name):
            raise ArgumentError(f"export_library: kernel #{k} is named {kernel.name!r}, which "
                                "is not a C identifier; build it with name='...'")
        if kernel.name in seen:
            raise ArgumentError(f"export_library: kernels #{seen[kernel.name]} and #{k} are "
                                f"both named {kernel.name!r}; give each its own name with "
                                "tex.build(..., name='...')")
        seen[kernel.name] = k
        if kernel.name in (MANIFEST, thread_pool.SYMBOL, thread_pool.SET_THREADS,
                           library_abi.LAST_ERROR) or \
                kernel.name.startswith(library_abi.RESERVED_PREFIXES):
            raise ArgumentError(f"export_library: the name {kernel.name!r} is tex's own")
    for k, kernel in enumerate(kernels):
        if isinstance(kernel, CudaKernel):
            library_cuda.check_exportable(kernel, f"CUDA kernel #{k} ({kernel.name})")
    members = _members([k for k in kernels if not isinstance(k, CudaKernel)])
    triple = members[0][1].target.triple if members else None
    for k, entry in enumerate(kernels):
        for _, kernel in _kernels_of(entry) if not isinstance(entry, CudaKernel) else ():
            which = f"kernel #{k} ({kernel.name})" if kernel is entry else \
                f"kernel {kernel.name} of dispatch #{k} ({entry.name})"
            if kernel.target.triple != triple:
                raise ArgumentError(f"export_library: {which} was built for "
                                    f"{kernel.target.triple}, kernel #0 for {triple}; a "
                                    "library holds one machine's code")
            if kernel.bound_checked:
                raise ArgumentError(f"export_library: {which} was built with bound checks "
                                    "(tir.instrument_bound_checkers), which report to tex's "
                                    "Python runtime; build it without them for a library")
            if packed_func.SYMBOL in object_file.undefined_symbols(
                    kernel._compiled.object_code):
                raise ArgumentError(f"export_library: {which} calls Python functions "
                                    "(tex.call_packed in an extern stage), which need the "
                                    "Python process that registered them; a library runs "
                                    "without one")


def _describe(entry) -> dict:
    """What load_library needs of the Kernel or Dispatch `entry` (see the module docstring):
    a dispatch is described as its first fallback, under its own name, with the features
    of all its kernels and `dispatch` added: each specialisation's sizes, name, features
    and code ("specialized"), the first fallback's name ("fallback") and the other
    fallbacks' names, features and code ("nearest", one per specialisation but the
    first, or none)."""
    if not isinstance(entry, Dispatch):
        return _describe_kernel(entry)
    described = _describe_kernel(entry.fallback)
    cases = [{"sizes": list(sizes), "name": kernel.name,
              "features": sorted(kernel.target.enabled_features),
              "tex": kernel.get_source("tex"), "ll": kernel.get_source("ll")}
             for sizes, kernel in entry.cases]
    fallbacks = [{"name": kernel.name, "features": sorted(kernel.target.enabled_features),
                  "tex": kernel.get_source("tex"), "ll": kernel.get_source("ll")}
                 for kernel in entry.fallbacks[1:]]
    described.update(name=entry.name, dispatch={"specialized": cases,
                                                "fallback": entry.fallback.name,
                                                "nearest": fallbacks})
    described["features"] = sorted(set(described["features"]).union(
        *(case["features"] for case in cases + fallbacks)))
    return described


def _describe_kernel(kernel: Kernel) -> dict:
    """What load_library needs of `kernel` (see the module docstring)."""
    return {**_describe_interface(kernel), "device": "cpu", "cpu": kernel.target.cpu,
            "features": sorted(kernel.target.enabled_features),
            "target": str(kernel.target), "tex": kernel.get_source("tex"),
            "ll": kernel.get_source("ll")}


def _describe_cuda(kernel: CudaKernel, archs: list[str]) -> dict:
    """The manifest's description of the CUDA kernel `kernel`, carried for `archs`."""
    return {**_describe_interface(kernel), **library_cuda.describe(kernel, archs)}


def _describe_interface(kernel) -> dict:
    """The name, parameters, size variables, outputs and call arguments of `kernel`."""
    sizes = {var: k for k, var in enumerate(kernel.size_vars)}
    params = [p.buffer for p in kernel._params]
    return {"name": kernel.name,
            "params": [[b.name, str(b.dtype), [expr_json.to_json(e, sizes) for e in b.shape]]
                       for b in params],
            "sizes": [[v.name, str(v.dtype)] for v in kernel.size_vars],
            "outputs": [p.position for p in kernel._outputs],
            "arguments": [["variable", sizes[a]] if isinstance(a, Var) else
                          ["buffer", params.index(a)] for a in kernel._arguments]}


def _sealed(library: bytes) -> bytes:
    """The linked `library` with its sha256 written into its manifest, in place of the
    zeros it was linked with."""
    at = object_file.symbol_extent(library, MANIFEST)[0] + len(_DIGEST_FIELD)
    digest = hashlib.sha256(library).hexdigest().encode()
    return library[:at] + digest + library[at + len(digest):]


def _manifest_object(data: bytes, target) -> bytes:
    """An object for `target` defining `tex_library_manifest`, the bytes of `data` and a
    final NUL."""
    module = ir.Module(name="manifest")
    module.triple = target.triple
    array = ir.ArrayType(ir.IntType(8), len(data) + 1)
    variable = ir.GlobalVariable(module, array, MANIFEST)
    variable.global_constant = True
    variable.initializer = ir.Constant(array, bytearray(data + b"\0"))
    return llvm_jit.shared_library_object(str(module), (MANIFEST,), target)


class Library:
    """The kernels of a library written by `export_library`: `lib.NAME` or `lib["NAME"]`,
    each a `Kernel` (a CUDA kernel: a `CudaEntry`); `names` lists them in the order they
    were exported."""

    def __init__(self, path: Path, handle: ctypes.CDLL, kernels: dict):
        self.path, self._handle, self._kernels = path, handle, kernels
        self.names = tuple(kernels)

    def __getitem__(self, name: str) -> Kernel:
        try:
            return self._kernels[name]
        except KeyError:
            raise ArgumentError(f"library {self.path.name} has no kernel {name!r}; it has "
                                f"{', '.join(self.names)}") from None

    def __getattr__(self, name: str) -> Kernel:
        if name.startswith("_"):
            raise AttributeError(name)
        return self[name]

    def __repr__(self):
        return f"<tex.Library {self.path.name}: {', '.join(self.names)}>"


def load_library(path) -> Library:
    """The kernels of the library `path` that `export_library` wrote (see the module
    docstring). Raises ArgumentError, before loading it, if `path` is not such a library
    or was changed since; DeviceError if it was compiled for another machine or for CPU
    features this machine lacks."""
    path = Path(path)
    machine = object_file.machine_of(path)
    if machine is not None and machine != platform.machine():
        raise DeviceError(f"load_library: {path} holds {machine} code; this machine is "
                          f"{platform.machine()}")
    try:
        manifest = _checked_manifest(path.read_bytes(), path)
    except OSError as err:
        raise ArgumentError(f"load_library: cannot load {path}: {err}") from None
    for entry in manifest["kernels"]:
        if entry.get("device", "cpu") != "cpu":
            continue
        lacking = cpu_support.missing_features(entry["features"])
        if lacking:
            raise DeviceError(f"load_library: kernel {entry['name']} of {path.name} was compiled "
                              f"for a {entry['cpu']} CPU with {', '.join(lacking)}, which this "
                              "CPU lacks")
    try:
        handle = ctypes.CDLL(str(path.resolve()))
    except OSError as err:
        raise ArgumentError(f"load_library: cannot load {path}: {err}") from None
    kernels = {entry["name"]: _kernel(entry, handle, path) if entry.get("device", "cpu") == "cpu"
               else CudaEntry(entry, handle, path) for entry in manifest["kernels"]}
    return Library(path, handle, kernels)


def _checked_manifest(library: bytes, path: Path) -> dict:
    """The manifest of the file `library` (at `path`), read without loading it; raises
    ArgumentError unless it is a manifest of this format whose sha256 matches the file."""
    try:
        at, size = object_file.symbol_extent(library, MANIFEST)
        text = library[at:at + size]
        manifest = json.loads(text.rstrip(b"\0"))
        kernels = manifest["kernels"]
    except (BuildError, ValueError, TypeError, KeyError) as err:
        raise ArgumentError(f"load_library: {path} is not a library written by "
                            f"tex.export_library (it has no readable {MANIFEST}: "
                            f"{err})") from None
    if manifest.get("format") not in _READABLE:
        raise ArgumentError(f"load_library: {path} has manifest format "
                            f"{manifest.get('format')!r}; this tex reads formats "
                            f"{', '.join(map(str, _READABLE))}")
    digest = at + len(_DIGEST_FIELD)
    recorded = library[digest:digest + len(_UNSEALED)]
    unsealed = library[:digest] + _UNSEALED.encode() + library[digest + len(_UNSEALED):]
    if not text.startswith(_DIGEST_FIELD) or \
            hashlib.sha256(unsealed).hexdigest().encode() != recorded:
        raise ArgumentError(f"load_library: {path} was changed after tex.export_library wrote "
                            "it (its contents do not match the sha256 its manifest records); "
                            "export it again")
    if not isinstance(kernels, list) or not all(isinstance(k, dict) for k in kernels):
        raise ArgumentError(f"load_library: the manifest of {path} lists no kernels")
    return manifest


def _interface(entry: dict) -> KernelInterface:
    """The parameters, size variables, outputs and call arguments the manifest describes."""
    size_vars = tuple(Var(name, as_dtype(dtype)) for name, dtype in entry["sizes"])
    params = tuple(Buffer(name, as_dtype(dtype),
                          tuple(expr_json.from_json(e, size_vars) for e in shape))
                   for name, dtype, shape in entry["params"])
    outputs = tuple(params[k] for k in entry["outputs"])
    arguments = tuple(size_vars[k] if kind == "variable" else params[k]
                      for kind, k in entry["arguments"])
    return KernelInterface(entry["name"], params, size_vars, outputs, arguments)


def _kernel(entry: dict, handle: ctypes.CDLL, path: Path) -> Kernel:
    interface = _interface(entry)
    code = _LibraryCode(entry, ctypes.cast(getattr(handle, entry["name"]),
                                           ctypes.c_void_p).value, handle)

    def lower():
        raise BuildError(f"kernel {entry['name']} was loaded from {path.name}; its loop "
                         "program is kept as text only (get_source('tex'))")
    return Kernel(interface, code, lower=lower, tex_source=entry["tex"])


class _LibraryCode:
    """What a Kernel needs of compiled code, for a kernel of a loaded library."""

    loaded_from_disk = True
    entry_type = _STATUS_ENTRY

    def __init__(self, entry: dict, address: int, handle: ctypes.CDLL):
        self.name, self.address, self._handle = entry["name"], address, handle
        self.target = as_target(entry["target"])
        self._ll = entry["ll"]
        self.cannot_run = cpu_support.cannot_run(self.target, self._ll)
        self._last_error = getattr(handle, library_abi.LAST_ERROR)
        self._last_error.restype = ctypes.c_char_p

    def failure(self) -> ArgumentError:
        """The error the entry point just returned a nonzero code for, with its message."""
        return ArgumentError(self._last_error().decode(errors="replace"))

    def get_source(self, fmt: str) -> str:
        if fmt == "ll":
            return self._ll
        raise ArgumentError(f"kernel {self.name} was loaded from a library, which keeps its "
                            "loop program ('tex') and optimised IR ('ll')")


class CudaEntry(Signature):
    """A CUDA kernel of a loaded library, called through its C launcher `int NAME(void
    **buffers, const int64_t *sizes, void *stream)` (the library's header): the library
    and the CUDA driver do the work, not tex's CUDA runtime. It takes GPU arrays only (a
    `tex.DeviceArray`, an object with `__cuda_array_interface__`, a CUDA `__dlpack__`
    producer: CuPy, PyTorch, Numba), every parameter given (outputs too), each checked
    as a `CudaKernel` checks it. The launches are queued on `stream` (as `CudaKernel`
    takes it; default: the stream the arguments name, else the legacy one) after the
    producers' writes pending on other streams, and the call returns at once; the
    pointers of `__cuda_array_interface__` objects are asked of the driver (through the
    library's `tex_cuda_pointer_device`) to be device 0's memory. A
    nonzero code of the launcher raises ArgumentError (a NULL pointer, bad sizes) or
    DeviceError (the driver, a missing GPU) with the library's message. `archs` are the
    architectures it carries cubins for; `get_source` gives its loop program ("tex")
    and CUDA C ("cuda")."""

    device_kind = "cuda"

    def __init__(self, entry: dict, handle: ctypes.CDLL, path: Path):
        super().__init__(_interface(entry), param_class=CudaParam)
        self.archs, self._path = tuple(entry["archs"]), path
        self._sources = {"tex": entry["tex"], "cuda": entry["cuda"]}
        self._launcher = getattr(handle, entry["name"])
        self._launcher.argtypes = (ctypes.POINTER(ctypes.c_void_p),
                                   ctypes.POINTER(ctypes.c_int64), ctypes.c_void_p)
        self._launcher.restype = ctypes.c_int
        self._last_error = getattr(handle, library_abi.LAST_ERROR)
        self._last_error.restype = ctypes.c_char_p
        self._pointer_device = handle.tex_cuda_pointer_device
        self._pointer_device.argtypes = (ctypes.c_void_p, ctypes.POINTER(ctypes.c_int))
        self._pointer_device.restype = ctypes.c_int

    def __call__(self, *args, stream=None):
        """Queue the kernel on a stream and return None (see the class docstring)."""
        if len(args) != len(self._params):
            raise ArgumentError(
                f"{self.name} of {self._path.name} takes its {len(self._params)} arrays "
                f"({', '.join(p.buffer.name for p in self._params)}), outputs too: a "
                f"library's CUDA kernel does not allocate; got {len(args)} arguments")
        streams = CallStreams.of_call(args, stream)
        given, env = self._check(self._params, args, streams)
        for p, arg in zip(self._params, given):
            if arg.host is not None:
                raise ArgumentError(f"{p.label} is in host memory; a library's CUDA kernel "
                                    "takes GPU arrays: copy it with tex.nd.array(x, "
                                    "tex.cuda(0)) or call the exported CudaKernel")
            p.check_location(self._ordinal, arg)
        self._check_overlap(given, [a.address for a in given])
        producers = {a.stream for a in given} - {None, streams.launch}
        if producers:
            device = require_device(f"ordering CUDA kernel {self.name} after its inputs' "
                                    "streams", "")
            with device.active():
                for producer in sorted(producers):
                    device.wait(streams.launch, producer, f"CUDA kernel {self.name}")
        buffers = (ctypes.c_void_p * len(given))(*(a.address for a in given))
        sizes = (ctypes.c_int64 * max(len(env), 1))(*env)
        code = self._launcher(buffers, sizes, streams.launch)
        if code:
            message = self._last_error().decode(errors="replace")
            raise (DeviceError if code == library_abi.ERROR_CODES["TEX_ERROR_CUDA"]
                   else ArgumentError)(message)
        for p in self._outputs:
            owner = given[p.position].owner
            if type(owner) is DeviceArray:
                owner.stream = streams.launch

    def _ordinal(self, address: int) -> int | str:
        """The device of the memory at `address`, or why it is not CUDA memory, as the
        library's driver says (`tex_cuda_pointer_device`); DeviceError without one."""
        ordinal = ctypes.c_int(-1)
        if not self._pointer_device(address, ctypes.byref(ordinal)):
            return ordinal.value
        message = self._last_error().decode(errors="replace")
        if "not CUDA memory" not in message:
            raise DeviceError(message)
        return message

    def get_source(self, fmt: str = "tex") -> str:
        if fmt in self._sources:
            return self._sources[fmt]
        raise ArgumentError(f"kernel {self.name} was loaded from a library, which keeps its "
                            "loop program ('tex') and CUDA C ('cuda')")

    def __repr__(self):
        return f"<tex.library CUDA kernel {self.name} ({', '.join(self.archs)})>"
