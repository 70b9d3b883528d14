"""Loop IR -> CUDA C, compiled with NVRTC.

`compile_cuda(func, target)` takes a LoweredFunc whose body is host-level code
(`Allocate`s of global temporaries around a `Seq` of `KernelLaunch`es, as
`split_host_device` leaves it) and returns a `CudaModule`: the CUDA C source
of every kernel, the machine code (cubin) for `target.arch` and the PTX beside
it (for devices of another architecture), and what the runtime needs to launch
each kernel.

What the source guarantees (expressions: see `tex.codegen.cuda_expr`):

* Each `KernelLaunch` is one `extern "C" __global__` function, named after the
  launch (made C-valid and unique in the module), with
  `__launch_bounds__(threads)` when the block size is constant,
  `__launch_bounds__(threads, min_blocks)` with a `launch_bounds` pragma
  (`Stage.pragma`) on one of its loops. Its arguments
  are a `T* __restrict__` per param (a plain `T*` when the program was lowered
  under `tir.noalias` False, `LoweredFunc.noalias`), `const` when the kernel
  never writes it, then a `long long` per size variable.
* Index arithmetic (loop variables, thread indices, int64 `Let`s and casts) is
  `int` where `tex.codegen.cuda_index` proves every int64 value of the kernel fits
  in 32 bits (constant sizes small enough), else `long long` (symbolic sizes:
  the kernel serves every size, so it keeps 64 bits).
* A loop bound to `threadIdx`/`blockIdx` reads its variable from that register
  and is guarded by `if (v < end)` unless its extent is the launch's extent on
  that axis. `vthread` and unrolled loops are `#pragma unroll` loops, other
  serial or leftover vectorized loops plain `for` loops; a parallel loop is an
  error.
* Shared allocations are static `__shared__` arrays of constant size aligned
  to 16 bytes while all of one kernel's fit `target.max_shared_bytes` (48 KB, the
  most a static array may take); past that they are slices, aligned alike, of one
  `extern __shared__` array (`TEX_DYNAMIC_SHARED`) whose size is the launch's
  `CudaLaunch.shared_bytes`, at most `target.max_dynamic_shared_bytes`. Local
  ones are per-thread arrays of constant size. A vector access of a param
  needs its pointer aligned to the vector's size: `CudaLaunch.alignments`.
* Atomic add is `atomicAdd` on float, double and 32/64-bit integers; atomic
  min/max is `atomicMin`/`atomicMax` on 32/64-bit integers and a
  compare-and-swap loop (`tex_atomic_max_f32`, ...) on floats.
* A vector store to an aligned `Ramp` that `cuda_expr.vector_type` gives a type (a
  CUDA vector type, or a struct of 4, 8 or 16 bytes) is one store of
  `make_float4(...)`, `make_tex_float16x8(...)`...; otherwise it stores lane by
  lane, after reading every lane when the value reads the buffer it stores to.
* An `IntrinsicCall` (tensorize) is a call `name(&buffer[index]..., values...)`;
  its definition and headers come once before the kernels, and the buffers it
  reaches are aligned (declared `__align__`, or via `alignments`) to its `align`.
* An `ExternCall` (`call_extern`) is a call `name(args...)`, each pointer
  `(T*)&buffer[index]`; the CUDA C modules of `LoweredFunc.imports` (pragma
  import_c) come before the kernels and define what CUDA itself does not.

Anything else in a program raises `BuildError` naming the kernel and the loop
or buffer at fault, as does `vscale()` (a CPU's scalable vector length). The
cubin comes from `tex.codegen.nvrtc` (cached per source).
"""
from __future__ import annotations

from dataclasses import dataclass

from tex import ops
from tex.arith import Interval, bound, simplify
from tex.codegen.cuda_calls import CallEmitter
from tex.codegen.cuda_expr import ADD, UNARY, Names, Preamble, c_type, vector_type
from tex.codegen.cuda_index import index_fits_int32
from tex.codegen.nvrtc import compile_source, compile_with_ptx
from tex.dtype import float32, float64, int32, int64, uint32, uint64
from tex.errors import ArgumentError, BuildError
from tex.expr import Const, Expr, Var, VScale, structurally_equal
from tex.ir import (LAUNCH_BOUNDS_PRAGMA, Allocate, AtomicUpdate, Buffer, For, KernelLaunch, Load,
                    LoweredFunc, Seq, Store)
from tex.target import as_target
from tex.visitor import collect, handler

#: How many characters a kernel's signature may take before its arguments wrap.
_LINE_WIDTH = 100
_INDENT = "  "


@dataclass(frozen=True, eq=False)
class CudaLaunch:
    """One kernel launch: the `__global__` function `name`, its grid and block
    (x, y, z; expressions over the size variables), and its arguments: the
    pointers of `params`, then the int64 values of `size_vars`. `alignments`
    gives, per param, the byte alignment its pointer needs (the element size,
    or the size of the widest vector access the kernel makes to it).
    `shared_bytes` is the dynamic shared memory the launch needs (cuLaunchKernel's
    sharedMemBytes, after raising the function's MAX_DYNAMIC_SHARED_SIZE_BYTES to it);
    0 when its shared arrays are static."""

    name: str
    grid: tuple[Expr, Expr, Expr]
    block: tuple[Expr, Expr, Expr]
    params: tuple[Buffer, ...]
    size_vars: tuple[Var, ...]
    alignments: tuple[int, ...] = ()
    shared_bytes: int = 0


@dataclass(frozen=True, eq=False)
class CudaModule:
    """Compiled CUDA code. `launches` run in order; `temporaries` are the global
    buffers the host allocates on the device before them (and frees after).
    `cubin` is the machine code for `target.arch`, `ptx` the PTX it was made from
    (`.target` that architecture), which the driver compiles for a device of a later
    architecture ("" in a module made without it: compiled when asked for)."""

    target: object
    source: str
    cubin: bytes
    launches: tuple[CudaLaunch, ...]
    temporaries: tuple[Buffer, ...]
    ptx: str = ""

    def get_source(self, fmt: str = "cuda") -> str:
        """The module as CUDA C ("cuda") or PTX ("ptx")."""
        if fmt == "cuda":
            return self.source
        if fmt == "ptx":
            return self.ptx or compile_source(self.source, self.target.arch, "ptx")
        raise ArgumentError(f"a CUDA kernel's source formats are 'cuda' and 'ptx', "
                            f"got {fmt!r}")


def compile_cuda(func: LoweredFunc, target) -> CudaModule:
    """Emit the CUDA C of `func`'s kernels and compile it to a cubin for `target.arch`."""
    target = as_target(target)
    if target.kind != "cuda":
        raise BuildError(f"compile_cuda needs a cuda target, got {target}")
    if any(collect(node, lambda n: isinstance(n, VScale))
           for node in [func.body] + [c.cond for c in func.checks]):
        raise BuildError(f"{func.name}: vscale() is the vector length of a CPU with scalable "
                         "vectors (aarch64 with +sve); CUDA has none, build it for such a CPU")
    temporaries, launches = _host_program(func)
    preamble, kernel_names = Preamble(), Names()
    for k, (language, text) in enumerate(func.imports):
        if language != "c":
            raise BuildError(f"{func.name}: pragma import_{language} gives a module for CPU "
                             "targets; a CUDA kernel takes CUDA C source, with pragma import_c")
        preamble.definition(f"import_c{k}", text, ())
    kernels, cuda_launches = [], []
    for launch in launches:
        emitter = _KernelEmitter(launch, kernel_names.fresh(launch.name), target, preamble,
                                 func.noalias)
        kernels.append(emitter.source())
        cuda_launches.append(emitter.cuda_launch())
    source = (f"// {func.name}: generated by tex for {target}\n\n" + preamble.text()
              + "\n\n".join(kernels) + "\n")
    cubin, ptx = compile_with_ptx(source, target.arch)
    return CudaModule(target, source, cubin, tuple(cuda_launches), tuple(temporaries), ptx)


def _host_program(func: LoweredFunc) -> tuple[list[Buffer], list[KernelLaunch]]:
    """The global temporaries (outermost first) and the launches of `func`'s host code."""
    temporaries, launches = [], []

    def walk(s):
        if isinstance(s, Allocate) and s.buffer.scope == "global":
            temporaries.append(s.buffer)
            walk(s.body)
        elif isinstance(s, Seq):
            for item in s.stmts:
                walk(item)
        elif isinstance(s, KernelLaunch):
            launches.append(s)
        else:
            first_line = str(s).strip().splitlines()[0]
            raise BuildError(f"{func.name}: the host code of a CUDA program may only allocate "
                             f"global buffers and launch kernels, found `{first_line}` "
                             f"({type(s).__name__}); every computation runs in a kernel: bind "
                             "its loops to GPU thread axes")

    walk(func.body)
    return temporaries, launches


class _KernelEmitter(CallEmitter):
    """Emits one `KernelLaunch` as a `__global__` function (`source`), one `stmt_<Node>`
    method per statement node (`tex.visitor.handler` finds it)."""

    def __init__(self, launch: KernelLaunch, name: str, target, preamble: Preamble,
                 noalias: bool = True):
        super().__init__(preamble, Names(), f"kernel {name}")
        self.launch, self.name, self.target = launch, name, target
        self.restrict = " __restrict__" if noalias else ""
        self.lines: list[str] = []
        self.depth = 1
        self.narrow_index = index_fits_int32(launch)
        self.shared_offsets: dict[Buffer, int] | None = None  # in the dynamic array, if used
        self.dynamic_shared_bytes = 0
        self.dynamic_shared = ""  # the C name of the dynamic shared array

    def source(self) -> str:
        signature = self._signature()
        self._lay_out_shared()
        self.stmt(self.launch.body)
        return "\n".join([signature + " {", *self.lines, "}"])

    def cuda_launch(self) -> CudaLaunch:
        launch = self.launch
        alignments = tuple(self.alignments.get(b, b.dtype.itemsize) for b in launch.params)
        return CudaLaunch(self.name, launch.grid, launch.block, launch.params,
                          launch.size_vars, alignments, self.dynamic_shared_bytes)

    def _signature(self) -> str:
        written = _written_buffers(self.launch.body)
        args = []
        for b in self.launch.params:
            name = self.buffers[b] = self.names.fresh(b.name)
            self.preamble.use_type(b.dtype)
            const = "" if b in written else "const "
            args.append(f"{const}{c_type(b.dtype)}*{self.restrict} {name}")
        for v in self.launch.size_vars:
            self.values[v] = [self.names.fresh(v.name)]
            self.ranges[v] = Interval(0, None)
            args.append(f"{c_type(v.dtype)} {self.values[v][0]}")
        head = f'extern "C" __global__ void {self._launch_bounds()}{self.name}('
        if len(head) + sum(len(a) + 2 for a in args) <= _LINE_WIDTH:
            return head + ", ".join(args) + ")"
        return head + "\n" + ",\n".join(_INDENT * 2 + a for a in args) + ")"

    def _launch_bounds(self) -> str:
        """`__launch_bounds__(threads[, min_blocks]) ` for a constant block size, with the
        `min_blocks` of the kernel's launch_bounds pragma; "" for a symbolic block."""
        threads = _constant_product(self.launch.block)
        asked = {(loop.var.name, value)
                 for loop in collect(self.launch.body, lambda n: isinstance(n, For))
                 for key, value in loop.pragmas if key == LAUNCH_BOUNDS_PRAGMA}
        if not asked:
            return f"__launch_bounds__({threads}) " if threads else ""
        loops = ", ".join(sorted(name for name, _ in asked))
        values = sorted({value for _, value in asked})
        if len(values) > 1:
            raise BuildError(f"{self.context}: the launch_bounds pragmas of loops {loops} ask "
                             f"for different numbers of blocks {values}; a kernel takes one")
        min_blocks = values[0]
        if threads is None:
            block = ", ".join(str(d) for d in self.launch.block)
            raise BuildError(f"{self.context}: pragma launch_bounds on loop {loops} needs a "
                             f"constant block size, got ({block})")
        if threads * min_blocks > self.target.max_threads_per_sm:
            raise BuildError(f"{self.context}: pragma launch_bounds on loop {loops} asks for "
                             f"{min_blocks} blocks of {threads} threads per multiprocessor; "
                             f"{self.target} holds at most {self.target.max_threads_per_sm} "
                             "threads")
        return f"__launch_bounds__({threads}, {min_blocks}) "

    def _lay_out_shared(self):
        """Static `__shared__` arrays while the kernel's shared buffers fit the target's
        static limit; past it, one dynamic array (declared first) holding each buffer at
        an offset aligned as its static array would be, its size `dynamic_shared_bytes`.
        More than the target's opt-in limit is a BuildError naming the buffers."""
        sizes, offsets, total = [], {}, 0
        for s in collect(self.launch.body, lambda n: isinstance(n, Allocate)
                         and n.buffer.scope == "shared"):
            size = _constant_size(s.buffer)
            if size is None or s.buffer in offsets:
                continue  # a symbolic size is an error of stmt_Allocate
            total = -(-total // _alignment(s)) * _alignment(s)
            offsets[s.buffer] = total
            sizes.append((s.buffer, size * s.buffer.dtype.itemsize))
            total += sizes[-1][1]
        limit = self.target.max_dynamic_shared_bytes
        if total > limit:
            listing = ", ".join(f"{b.name} ({size} bytes)" for b, size in sizes)
            raise BuildError(f"{self.context} needs {total} bytes of shared memory ({listing}); "
                             f"{self.target} allows {limit} per block")
        if total > self.target.max_shared_bytes:
            self.shared_offsets, self.dynamic_shared_bytes = offsets, total
            self.dynamic_shared = self.names.fresh("tex_dynamic_shared")
            self.preamble.definition("TEX_DYNAMIC_SHARED", _DYNAMIC_SHARED_MACRO, ())
            self.line(f"TEX_DYNAMIC_SHARED({self.dynamic_shared});")

    # --- output ------------------------------------------------------
    def line(self, text: str):
        self.lines.append(_INDENT * self.depth + text)

    def flush(self):
        """Write the declarations the statement about to be written needs."""
        for text in self.prelude:
            self.line(text)
        self.prelude = []

    def nested(self, body):
        self.depth += 1
        self.stmt(body)
        self.depth -= 1

    def define(self, var: Var) -> str:
        self.values[var] = [self.names.fresh(var.name)]
        return self.values[var][0]

    # --- statements --------------------------------------------------
    def stmt(self, s):
        method = handler(self, "stmt_", s)
        if method is None:
            raise BuildError(f"{self.context}: CUDA codegen cannot emit {type(s).__name__} "
                             "inside a kernel; lowering should have removed it")
        self.begin_statement()
        method(s)

    def stmt_Seq(self, s):
        for item in s.stmts:
            self.stmt(item)

    def stmt_For(self, s):
        if s.kind == "parallel":
            raise BuildError(f"{self.context}: loop {s.var.name} is parallel; parallel is a "
                             "CPU annotation; bind the loop to a GPU thread axis")
        if s.kind == "bound" and s.thread_tag != "vthread":
            return self._thread_loop(s)
        start, end = self.expr(s.min), self.expr(_end(s))
        self.flush()
        ctype, var = self.scalar_type(s.var.dtype), self.define(s.var)
        self.ranges[s.var] = Interval.from_extent(s.min, s.extent, self.ranges)
        if s.kind in ("unrolled", "bound"):
            self.line("#pragma unroll")
        self.line(f"for ({ctype} {var} = {start}; {var} < {end}; ++{var}) {{")
        self.nested(s.body)
        self.line("}")

    def _thread_loop(self, s: For):
        ctype, tag = self.scalar_type(s.var.dtype), s.thread_tag
        value = f"({ctype}){tag}"
        if not (isinstance(s.min, Const) and s.min.value == 0):
            value = f"{self.operand(s.min, 0, ADD)} + {value}"
        guard = None if self._fills_launch(s) else self.expr(_end(s))
        self.flush()
        var = self.define(s.var)
        self.ranges[s.var] = Interval.from_extent(s.min, s.extent, self.ranges)
        self.line(f"const {ctype} {var} = {value};")
        if guard is None:
            self.stmt(s.body)
            return
        self.line(f"if ({var} < {guard}) {{")
        self.nested(s.body)
        self.line("}")

    def _fills_launch(self, s: For) -> bool:
        """Whether loop `s` has exactly one iteration per thread of its axis."""
        sizes = self.launch.grid if s.thread_tag.startswith("blockIdx") else self.launch.block
        size = sizes["xyz".index(s.thread_tag[-1])]
        if isinstance(size, Const) and isinstance(s.extent, Const):
            return size.value == s.extent.value
        return structurally_equal(size, s.extent)

    def stmt_Allocate(self, s):
        b = s.buffer
        if b.scope not in ("local", "shared"):
            raise BuildError(f"{self.context}: buffer {b.name} of scope {b.scope!r} is "
                             "allocated inside the kernel; a kernel allocates only 'local' "
                             "and 'shared' buffers (global ones are allocated by the host, "
                             "around the launch)")
        size = _constant_size(b)
        if size is None:
            shape = ", ".join(str(d) for d in b.shape)
            raise BuildError(f"{self.context}: {b.scope} buffer {b.name} has the symbolic "
                             f"shape ({shape}); {b.scope} arrays need a constant size "
                             "(split its axes by constant factors)")
        name = self.buffers[b] = self.names.fresh(b.name)
        self.preamble.use_type(b.dtype)
        align = _alignment(s)
        declaration = f"{c_type(b.dtype)} {name}[{size}];"
        if align > b.dtype.itemsize:
            declaration = f"__align__({align}) {declaration}"
        if b.scope == "shared" and self.shared_offsets is not None:
            ctype = c_type(b.dtype)
            declaration = (f"{ctype}* const {name} = ({ctype}*)({self.dynamic_shared} + "
                           f"{self.shared_offsets[b]});")
        elif b.scope == "shared":
            declaration = f"__shared__ {declaration}"
        self.line(declaration)
        self.stmt(s.body)

    def stmt_IfThenElse(self, s):
        if s.cond.dtype.lanes != 1:
            self._lane_branches(s)
            return
        cond = self.expr(s.cond)
        self.flush()
        self.line(f"if ({cond}) {{")
        self.nested(s.then_body)
        if s.else_body is not None:
            self.line("} else {")
            self.nested(s.else_body)
        self.line("}")

    def _lane_branches(self, s):
        """A branch on a vector condition (a guard inside a vectorized loop), one lane at
        a time: `if (cond lane k) { what lane k stores }`."""
        with self.conditional():  # lanes outside the guard must not be read
            lines = [line for k in range(s.cond.dtype.lanes) for line in self._lane(s, k)]
        self.flush()
        for line in lines:
            self.line(line)

    def _lane(self, s, k: int) -> list[str]:
        """Lines of C doing lane `k` of `s`: stores, and branches holding them (one
        `lane_<Node>` method per statement node that may be there)."""
        method = handler(self, "lane_", s)
        if method is None:
            raise BuildError(f"{self.context}: a branch on a vector condition may only hold "
                             f"stores and branches, not {type(s).__name__}")
        return method(s, k)

    def lane_Store(self, s, k: int) -> list[str]:
        (index,) = s.indices
        return [f"{self.buffer(s.buffer)}[{self.expr(index, k)}] = {self.expr(s.value, k)};"]

    def lane_Seq(self, s, k: int) -> list[str]:
        return [line for item in s.stmts for line in self._lane(item, k)]

    def lane_IfThenElse(self, s, k: int) -> list[str]:
        lines = [f"if ({self.expr(s.cond, k)}) {{"]
        lines += [_INDENT + line for line in self._lane(s.then_body, k)]
        if s.else_body is not None:
            lines.append("} else {")
            lines += [_INDENT + line for line in self._lane(s.else_body, k)]
        return lines + ["}"]

    def stmt_LetStmt(self, s):
        names = self.declare(s.var, s.value)
        self.flush()
        self.values[s.var] = names
        if s.var.dtype.kind == "int" and s.var.dtype.lanes == 1:
            self.ranges[s.var] = bound(s.value, self.ranges)
        self.stmt(s.body)

    def stmt_Barrier(self, s):
        self.line("__syncthreads();")

    def stmt_Store(self, s):
        (index,) = s.indices
        name, lanes = self.buffer(s.buffer), s.value.dtype.lanes
        if lanes == 1:
            text = f"{name}[{self.expr(index)}] = {self.expr(s.value)};"
            self.flush()
            self.line(text)
        elif index.dtype.lanes == 1:
            raise BuildError(f"{self.context}: vector store to {s.buffer.name} at the scalar "
                             f"index {index}")
        else:
            self._vector_store(s, name, index)

    def _vector_store(self, s: Store, name: str, index: Expr):
        lanes = s.value.dtype.lanes
        values = [self.expr(s.value, k) for k in range(lanes)]
        vector = vector_type(s.buffer, index)
        if vector is not None:
            self.note_alignment(s.buffer, lanes * s.buffer.dtype.itemsize)
            self.preamble.vector_struct(vector)
            base = self.operand(index.base, 0, ADD + 1)
            texts = [f"*({vector.name}*)({name} + {base}) = "
                     f"make_{vector.name}({', '.join(values)});"]
        else:
            if collect(s.value, lambda n: isinstance(n, Load) and n.buffer is s.buffer):
                values = self._lane_temporaries(s, values)
            texts = [f"{name}[{self.expr(index, k)}] = {v};" for k, v in enumerate(values)]
        self.flush()
        for text in texts:
            self.line(text)

    def _lane_temporaries(self, s: Store, values: list[str]) -> list[str]:
        """Read every lane of a value before any lane is stored."""
        names = [self.names.fresh(f"{s.buffer.name}_lane{k}") for k in range(len(values))]
        ctype = c_type(s.buffer.dtype)
        self.prelude += [f"const {ctype} {n} = {v};" for n, v in zip(names, values)]
        return names

    def stmt_IntrinsicCall(self, s):
        """`name(&buffer[index]..., values...)`, the function defined in the preamble."""
        self.preamble.definition(s.name, s.definition, s.headers)
        for p in s.pointers:
            self.note_alignment(p.buffer, s.align)
        args = [f"&{self.expr(p)}" for p in s.pointers] + [self.expr(v) for v in s.values]
        self.flush()
        self.line(f"{s.name}({', '.join(args)});")

    def stmt_ExternCall(self, s):
        """`name(args...)`, each pointer cast to a (non-const) pointer to its element type."""
        args = [f"({c_type(a.dtype)}*)&{self.expr(a)}" if k in s.pointers else self.expr(a)
                for k, a in enumerate(s.args)]
        self.flush()
        self.line(f"{s.name}({', '.join(args)});")

    def stmt_AtomicUpdate(self, s):
        (index,) = s.indices
        address = f"&{self.buffer(s.buffer)}[{self.expr(index)}]"
        dtype = s.buffer.dtype
        if s.op == "add" and dtype in (float32, float64, int32, uint32, uint64):
            text = f"atomicAdd({address}, {self.expr(s.value)})"
        elif s.op == "add" and dtype == int64:  # two's complement: the unsigned add is the same
            text = (f"atomicAdd((unsigned long long*){address}, "
                    f"(unsigned long long){self.operand(s.value, 0, UNARY)})")
        elif dtype in (int32, uint32, int64, uint64):
            text = f"atomic{s.op.capitalize()}({address}, {self.expr(s.value)})"
        elif dtype in (float32, float64):
            text = f"{self.preamble.atomic_helper(s.op, dtype)}({address}, {self.expr(s.value)})"
        else:
            raise BuildError(f"{self.context}: atomic {s.op} on buffer {s.buffer.name} of "
                             f"{dtype}; CUDA atomics take float32, float64, int32, uint32, "
                             "int64 or uint64")
        self.flush()
        self.line(text + ";")


def _alignment(s: Allocate) -> int:
    """The byte alignment of the array `s` allocates: 16 for shared memory (a 16-byte
    vector access), else its element's size; more where an intrinsic call asks for more."""
    b = s.buffer
    return max([16 if b.scope == "shared" else b.dtype.itemsize]
               + [call.align for call in _intrinsic_calls(s.body)
                  if any(p.buffer is b for p in call.pointers)])


#: How a kernel declares its dynamic shared array (the CPU simulator's header has its own).
_DYNAMIC_SHARED_MACRO = """\
#ifndef TEX_DYNAMIC_SHARED
#define TEX_DYNAMIC_SHARED(name) extern __shared__ __align__(16) unsigned char name[]
#endif"""


def _intrinsic_calls(body) -> list:
    """The `IntrinsicCall`s in `body` (matched by name, as statements are dispatched)."""
    return collect(body, lambda n: type(n).__name__ == "IntrinsicCall")


def _written_buffers(body) -> set[Buffer]:
    """Buffers `body` stores to, updates atomically, or passes to an intrinsic that writes."""
    written = {n.buffer for n in collect(body, lambda n: isinstance(n, (Store, AtomicUpdate)))}
    for call in _intrinsic_calls(body):
        written.update(call.pointers[k].buffer for k in call.writes)
    for call in collect(body, lambda n: type(n).__name__ == "ExternCall"):
        written.update(call.args[k].buffer for k in call.writes)
    return written


def _end(s: For) -> Expr:
    if isinstance(s.min, Const) and s.min.value == 0:
        return s.extent
    return simplify(ops.binary("add", s.min, s.extent))


def _constant_product(exprs) -> int | None:
    product = 1
    for e in exprs:
        if not isinstance(e, Const):
            return None
        product *= e.value
    return product


def _constant_size(b: Buffer) -> int | None:
    """Elements of `b` when its shape is constant."""
    return _constant_product(b.shape)

