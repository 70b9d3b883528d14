"""Lowered loop IR -> LLVM IR (llvmlite.ir), and `build`: a LoweredFunc to machine code.

Assumes the lowering passes ran: every Load/Store has one (flattened, int64)
index; loops are "serial" or "parallel" (a leftover "vectorized"/"unrolled"
loop runs serially); vector code is explicit (Ramp, Broadcast, vector dtypes).

Calling convention. The entry point is

    void <name>(i8** buffers, i64* sizes)

`buffers[k]` is the data pointer of `func.params[k]` (compact, row-major),
`sizes[k]` the value of `func.size_vars[k]`: the size variables, then the scalar
parameters. An integer or bool value is the int64 of it (an unsigned 64-bit
value by its bits), truncated to the variable's dtype; a float value is its IEEE
bits in the low bits of the slot (float32: the low 32, float16 and bfloat16: the
low 16, float64: all 64), bit-cast back to the float. It unpacks both and calls
`<name>_body(sizes..., buffers...)`, whose buffer arguments are `noalias`:
tex never passes overlapping arrays to one kernel (the runtime checks that no
output overlaps another argument; inputs may overlap each other, which
`noalias` permits because they are only read). The body is inlined at O3,
turning `noalias` into alias scopes for the vectorizer. A function lowered
under `tir.noalias` False (`LoweredFunc.noalias`, `tex.PassContext`) claims
`noalias` of no argument. One lowered under `tir.instrument_bound_checkers`
(`LoweredFunc.bound_checked`) checks every load and store, and its `sizes`
has two more slots, where it reports an access out of bounds
(`tex.codegen.llvm_bounds`); the body takes their address last.

Memory: bool is `i1` in registers and one byte in memory; float16 is `half`.

What the IR claims, and what proves it (TEX_LLVM_CLAIMS=0 strips every one:
`llvm_jit.strip_claims`, `llvm_expr.element_align`):

* `noalias` on the body's buffer arguments: see above; on the entry's two
  arguments: the runtime passes two arrays of its own (neither, under
  `tir.noalias` False);
* `align` of loads and stores: the element's size (vectors too); the runtime
  refuses an array argument whose data is not aligned to it, and allocations
  are aligned to `ALLOC_ALIGN`; the entry's loads of `buffers` and `sizes` are
  of 8-byte slots of ctypes arrays (their natural alignment);
* `inbounds` on a GEP whose address is accessed unmasked (a load, a store, an
  intrinsic, extern or packed call's argument, a closure slot): accessing it
  out of bounds is already undefined. A vector access under a lane mask and a
  prefetch get plain GEPs: a masked-off lane, or a prefetch past the end, may
  point outside the buffer;
* `nsw` on a loop's increment (`i + 1` where `i < end`, so it cannot pass the
  maximum of its type), and on int64 arithmetic bounds prove
  (`llvm_expr.ExprEmitter.exact_bounds`);
* no `!range`, `nonnull`, `dereferenceable` or `invariant.load`.

Parallel loops. The outermost "parallel" loop of a nest is outlined into
`void <name>_parallel<k>(i8* closure, i64 begin, i64 end)`, which runs
iterations [begin, end) of the loop (counted from its min); everything its
body reads from the enclosing code (the loop's min, size/loop/let variables,
buffer pointers) is packed into a struct on the caller's stack, and the
caller runs `tex_parallel_for(fn, &closure, extent)`: tex's thread pool
(`tex.codegen.thread_pool`) calls `fn` on contiguous chunks of [0, extent)
from several threads. Loops nested in a parallel loop run serially;
allocations inside it belong to each chunk: one that opens the loop's body and
whose size does not depend on the iteration is made once per chunk, before its
iterations, and reused by them (its contents are undefined at the start of each
iteration either way).

Select is lazy: a scalar condition branches (a plain `select` when neither
side loads or divides); a vector condition evaluates both sides with every
load inside masked by its lanes (nested conditions AND their masks).

Intrinsic calls (tensorize). An `IntrinsicCall` becomes `call void @name(ptrs..., values...)`,
each pointer the address of its load; the module declares `name`, and
`build` links its definition (an LLVM IR module, the same for every call of
that name) into the module once, with internal linkage so that O3 inlines it.

Extern calls (`tex.tir.call_extern`). An `ExternCall` becomes `call @name(args...)`,
its result dropped; `build` links in the LLVM IR modules the kernel imports,
which define such functions (`tex.codegen.llvm_extern`).

Packed calls (extern stages). A `PackedCall` becomes a call of
`tex_call_packed`, whose ABI `tex.codegen.packed_func` defines; when it
returns non-zero (the Python function is missing or raised), the function
frees the heap buffers it allocated so far and returns.
"""
from __future__ import annotations

import ctypes
import re
from contextlib import ExitStack, contextmanager

from llvmlite import ir

from tex.codegen import llvm_jit, packed_func
from tex.codegen.llvm_bounds import ERROR_SLOT, checked_access
from tex.codegen.llvm_calls import CallEmitter
from tex.codegen.llvm_constants import splat_constant
from tex.codegen.llvm_extern import Imports, call_arguments
from tex.codegen.llvm_transpose import emit_transposed_copy, match_transposed_copy
from tex.codegen.llvm_expr import (I1, I8, I32, I64, ExprEmitter, const_int, element_align,
                                   mangle, memory_type, single_index, value_type)
from tex.dtype import INDEX, float64
from tex.errors import BuildError
from tex.expr import Expr
from tex.ir import Allocate, Buffer, For, LoweredFunc, Ramp
from tex.target import Target, as_target
from tex.visitor import Visitor, free_vars, handler

VOID = ir.VoidType()
I8P = I8.as_pointer()

#: Allocations of a constant size up to this many bytes live on the stack.
STACK_LIMIT = 64 * 1024
#: Alignment of every allocation, in bytes (a cache line, an AVX-512 vector).
ALLOC_ALIGN = 64

# Names the module declares itself; a kernel by one of these names is renamed.
_RESERVED = {"main", "tex_parallel_for", packed_func.SYMBOL}
_PROCESS = ctypes.CDLL(None)  # the symbols already loaded: libc, libm, ...


def build(func: LoweredFunc, target="llvm", key: str | None = None) -> llvm_jit.CompiledModule:
    """Compile `func` for a CPU target: emit LLVM IR, verify, optimise at O3, JIT. With
    `key` (a disk cache entry's), the code defines `llvm_jit.key_symbol(key)`."""
    mod = _emit(func, as_target(target))
    return llvm_jit.compile_ir(str(mod.module), mod.name, mod.target,
                               tuple(mod.definitions.values()) + mod.imports.texts, key=key)


def entry_name(func: LoweredFunc) -> str:
    """The symbol of `func`'s entry point: its name as a C identifier.

    A name the process already defines (`exp`, `memset`: LLVM lowers math and
    memory intrinsics to such calls, which would then call the kernel) gets a
    `tex_` prefix.
    """
    name = re.sub(r"\W", "_", func.name) or "kernel"
    if name[0].isdigit() or name in _RESERVED or name.startswith("llvm") or \
            hasattr(_PROCESS, name):
        name = "tex_" + name
    return name


def emit_llvm(func: LoweredFunc, target="llvm") -> ir.Module:
    """The (unoptimised) LLVM module of `func`; the calling convention is in the module doc.
    Functions that intrinsic calls or imported modules define are only declared here
    (`build` links them in)."""
    return _emit(func, as_target(target)).module


def _emit(func: LoweredFunc, target: Target) -> _Module:
    mod = _Module(entry_name(func), target, func.imports, func.noalias, func.bound_checked)
    params = list(func.params) + ([ERROR_SLOT] if func.bound_checked else [])
    size_types = [value_type(v.dtype) for v in func.size_vars]
    pointer_types = [memory_type(b.dtype).as_pointer() for b in params]
    body = mod.new_function("_body", size_types + pointer_types, len(size_types))
    _name_args(body, [v.name for v in func.size_vars] + [b.name for b in params])
    em = _Emitter(mod, body, in_parallel=False)
    em.vars.update(zip(func.size_vars, body.args))
    em.buffers.update(zip(params, body.args[len(size_types):]))
    em.stmt(func.body)
    em.finish()

    entry = ir.Function(mod.module, ir.FunctionType(VOID, [I8P.as_pointer(), I64.as_pointer()]),
                        mod.name)
    _name_args(entry, ["buffers", "sizes"])
    for arg in entry.args if func.noalias else ():
        arg.add_attribute("noalias")
    b = ir.IRBuilder(entry.append_basic_block("entry"))
    buffers, sizes = entry.args
    args = []
    for k, var in enumerate(func.size_vars):
        args.append(_unpack_size(mod, b, b.load(b.gep(sizes, [I64(k)], inbounds=True),
                                                align=8), var))
    for k, t in enumerate(pointer_types[:len(func.params)]):
        args.append(b.bitcast(b.load(b.gep(buffers, [I64(k)], inbounds=True), align=8), t))
    if func.bound_checked:  # the reporting slots follow the size variables'
        args.append(b.gep(sizes, [I64(len(func.size_vars))], inbounds=True))
    b.call(body, args)
    b.ret_void()
    return mod


def _unpack_size(mod: _Module, b: ir.IRBuilder, slot: ir.Value, var) -> ir.Value:
    """The value of `var` from its int64 slot of `sizes`: a float from its IEEE bits in
    the slot's low bits, an int or bool converted (see the module docstring)."""
    if var.dtype.is_float:
        return b.bitcast(b.trunc(slot, ir.IntType(var.dtype.bits)) if var.dtype.bits < 64
                         else slot, value_type(var.dtype))
    return ExprEmitter(mod, b).convert(slot, INDEX, var.dtype)


class _Uses(Visitor):
    """The variables and buffers a statement uses, in order of first use; with `shapes`,
    the variables of the shapes of the buffers it loads and stores too (bound checks
    compute their extents)."""

    def __init__(self, shapes: bool = False):
        self.vars, self.buffers, self.shapes = {}, {}, shapes

    def visit_Var(self, v):
        self.vars[v] = None

    def _use(self, buffer):
        if self.shapes and buffer not in self.buffers:
            for dim in buffer.shape:
                self.visit(dim)
        self.buffers[buffer] = None

    def visit_Load(self, e):
        self._use(e.buffer)
        self.generic_visit(e)

    def visit_Store(self, s):
        self._use(s.buffer)
        self.generic_visit(s)

    visit_Prefetch = visit_Store

    def visit_Allocate(self, s):
        for dim in s.buffer.shape:
            self.visit(dim)
        self.generic_visit(s)


class _Module:
    """What the functions of one LLVM module share: the module, the target, declarations."""

    def __init__(self, name: str, target: Target, imports=(), noalias: bool = True,
                 bound_checked: bool = False):
        self.module = ir.Module(name=name)
        self.noalias, self.bound_checked = noalias, bound_checked
        self.module.triple, self.module.data_layout = llvm_jit.module_header(target)
        self.name = name
        self.target = target
        self.fp_flags = ("fast",) if target.fastmath else ("contract",)
        self.definitions: dict[str, str] = {}  # intrinsic function -> its LLVM IR module
        self.imports = Imports(imports)  # the LLVM IR modules the kernel imports
        self.strings: dict[str, ir.GlobalVariable] = {}
        self._outlined = 0

    def function(self, name: str, ret: ir.Type, args) -> ir.Function:
        """The declaration of an external function or intrinsic (made once)."""
        fn = self.module.globals.get(name)
        if fn is None:
            fn = ir.Function(self.module, ir.FunctionType(ret, list(args)), name)
        return fn

    def intrinsic(self, name: str, definition: str, args) -> ir.Function:
        """The declaration of the function an IntrinsicCall defines; its definition is kept
        (once) for `build` to link in."""
        known = self.definitions.setdefault(name, definition)
        if known != definition:
            raise BuildError(f"intrinsic calls of {name} carry two different definitions")
        return self.function(name, VOID, args)

    def string(self, text: str) -> ir.GlobalVariable:
        """A constant, NUL-terminated string of the module (one per distinct text)."""
        constant = self.strings.get(text)
        if constant is None:
            data = bytearray(text.encode() + b"\0")
            constant = ir.GlobalVariable(self.module, ir.ArrayType(I8, len(data)),
                                         f".str.{len(self.strings)}")
            constant.linkage, constant.global_constant = "internal", True
            constant.initializer = ir.Constant(constant.value_type, data)
            self.strings[text] = constant
        return constant

    def new_function(self, suffix: str, args, noalias_from: int) -> ir.Function:
        """Internal `void <name><suffix>(args)`; pointer args from `noalias_from` on are noalias."""
        fn = ir.Function(self.module, ir.FunctionType(VOID, list(args)), self.name + suffix)
        fn.linkage = "internal"
        for arg in fn.args[noalias_from:] if self.noalias else ():
            if isinstance(arg.type, ir.PointerType):
                arg.add_attribute("noalias")
        return fn

    def outline_parallel(self, loop: For, captured: dict, buffers: dict,
                         ranges: dict) -> ir.Function:
        """`void <name>_parallel<k>(i8* closure, i64 begin, i64 end)`: iterations
        [min + begin, min + end) of `loop`; `ranges` are those of the loop variables
        around it, the loop's own included.

        The closure holds {i64 min, captured values..., buffer pointers...}.
        """
        suffix = f"_parallel{self._outlined}"
        self._outlined += 1
        values, pointers = list(captured.values()), list(buffers.values())
        types = [v.type for v in values] + [p.type for p in pointers]
        body = self.new_function(suffix + "_body", [I64, I64] + types, 2 + len(values))
        _name_args(body, ["begin", "end"] + [v.name for v in captured] + [b.name for b in buffers])
        em = _Emitter(self, body, in_parallel=True)
        em.ranges.update(ranges)
        em.vars.update(zip(captured, body.args[2:]))
        em.buffers.update(zip(buffers, body.args[2 + len(values):]))
        begin, end = (em.convert(a, INDEX, loop.var.dtype) for a in body.args[:2])
        per_chunk, iteration = _chunk_allocations(loop)
        with ExitStack() as allocated:
            for buf in per_chunk:
                allocated.enter_context(em.allocated(buf))
            em.counted_loop(loop.var, begin, end, lambda: em.stmt(iteration))
        em.finish()
        wrapper = self.new_function(suffix, [I8P, I64, I64], 1)
        _name_args(wrapper, ["closure", "begin", "end"])
        b = ir.IRBuilder(wrapper.append_basic_block("entry"))
        struct = ir.LiteralStructType([I64] + types)
        closure = b.bitcast(wrapper.args[0], struct.as_pointer())
        lo, *fields = [b.load(b.gep(closure, [I32(0), I32(k)], inbounds=True))
                       for k in range(len(struct.elements))]
        b.call(body, [b.add(lo, wrapper.args[1]), b.add(lo, wrapper.args[2])] + fields)
        b.ret_void()
        return wrapper


def _chunk_allocations(loop: For) -> tuple[list[Buffer], object]:
    """The buffers allocated at the top of a parallel loop's body whose sizes do not
    depend on its variable (made once per chunk), and the body inside them."""
    body, buffers = loop.body, []
    while isinstance(body, Allocate) and not any(
            loop.var in free_vars(d) for d in body.buffer.shape):
        buffers.append(body.buffer)
        body = body.body
    return buffers, body


def _name_args(fn: ir.Function, names):
    for arg, name in zip(fn.args, names):
        arg.name = name


class _Emitter(CallEmitter):
    """Emits the statements of one LLVM function (expressions: `CallEmitter`), one
    `stmt_<Node>` method per statement node (`tex.visitor.handler` finds it).

    Allocas go to the entry block through `self.allocas`; code goes to the
    blocks after it; `finish()` closes the function.
    """

    def __init__(self, mod: _Module, fn: ir.Function, in_parallel: bool):
        self.fn, self.in_parallel = fn, in_parallel
        self.heap: list[ir.Value] = []  # the heap buffers allocated around the current point
        self.allocas = ir.IRBuilder(fn.append_basic_block("entry"))
        super().__init__(mod, ir.IRBuilder(fn.append_basic_block("start")))

    def finish(self):
        self.b.ret_void()
        self.allocas.branch(self.fn.basic_blocks[1])

    def stmt(self, s):
        method = handler(self, "stmt_", s)
        if method is None:
            raise BuildError(f"the LLVM backend cannot emit statement {type(s).__name__}")
        method(s)

    def stmt_Seq(self, s):
        for item in s.stmts:
            self.stmt(item)

    def stmt_LetStmt(self, s):
        with self.bound(self.vars, s.var, self.expr(s.value)):
            self.stmt(s.body)

    def stmt_IfThenElse(self, s):
        cond = self.expr(s.cond)
        if s.cond.dtype.lanes > 1:  # a vector condition predicates the lanes' memory accesses
            with self.masked(self.and_mask(cond)):
                self.stmt(s.then_body)
            if s.else_body is not None:
                with self.masked(self.and_mask(self.b.not_(cond))):
                    self.stmt(s.else_body)
        elif s.else_body is None:
            with self.b.if_then(cond):
                self.stmt(s.then_body)
        else:
            with self.b.if_else(cond) as (then, otherwise):
                with then:
                    self.stmt(s.then_body)
                with otherwise:
                    self.stmt(s.else_body)

    # --- loops -----------------------------------------------------------
    def stmt_For(self, s):
        lo = self.convert(self.expr(s.min), s.min.dtype, s.var.dtype)
        extent = self.convert(self.expr(s.extent), s.extent.dtype, s.var.dtype)
        with self.bound(self.ranges, s.var, self._loop_range(s)):
            if s.kind == "parallel" and not self.in_parallel and self.mask is None:
                self._parallel_for(s, lo, extent)
            elif self.mask is None and not self.mod.bound_checked \
                    and (copy := match_transposed_copy(s)) is not None:
                emit_transposed_copy(self, s, copy, lo, extent)
            else:  # serial, nested in a parallel loop or under a lane mask, vectorized/unrolled
                self.counted_loop(s.var, lo, self.b.add(lo, extent), lambda: self.stmt(s.body))

    def _loop_range(self, s: For) -> tuple[int, int] | None:
        """(lowest, highest) value of the loop variable of `s` when its min and extent
        have `exact_bounds` and their sum fits int64 (so `min + extent` does not wrap)."""
        low, extent = self.exact_bounds(s.min), self.exact_bounds(s.extent)
        if low is None or extent is None or extent[1] < 1 or low[1] + extent[1] >= 2**63:
            return None
        return low[0], low[1] + extent[1] - 1

    def counted_loop(self, var, lo: ir.Value, hi: ir.Value, emit_body):
        """`for var in [lo, hi)`: a header with a phi, the body, a latch incrementing it."""
        header = self.fn.append_basic_block(f"{var.name}.header")
        body = self.fn.append_basic_block(f"{var.name}.body")
        exit_ = self.fn.append_basic_block(f"{var.name}.exit")
        before = self.b.block
        self.b.branch(header)
        self.b.position_at_end(header)
        i = self.b.phi(lo.type, name=var.name)
        i.add_incoming(lo, before)
        self.b.cbranch(self.b.icmp_signed("<", i, hi), body, exit_)
        self.b.position_at_end(body)
        with self.bound(self.vars, var, i):
            emit_body()
        i.add_incoming(self.b.add(i, ir.Constant(i.type, 1), flags=("nsw",)), self.b.block)
        self.b.branch(header)
        self.b.position_at_end(exit_)

    def _parallel_for(self, s: For, lo, extent):
        uses = _Uses(shapes=self.mod.bound_checked)
        uses.visit(s.body)
        if self.mod.bound_checked:
            uses.buffers[ERROR_SLOT] = None
        captured = {v: self.vars[v] for v in uses.vars if v in self.vars}
        buffers = {buf: self.buffers[buf] for buf in uses.buffers if buf in self.buffers}
        wrapper = self.mod.outline_parallel(s, captured, buffers, self.ranges)
        values = [self.convert(lo, s.var.dtype, INDEX)]
        values += list(captured.values()) + list(buffers.values())
        closure = self.allocas.alloca(ir.LiteralStructType([v.type for v in values]))
        for k, value in enumerate(values):
            self.b.store(value, self.b.gep(closure, [I32(0), I32(k)], inbounds=True))
        pool = self.mod.function("tex_parallel_for", VOID, [wrapper.type, I8P, I64])
        self.b.call(pool, [wrapper, self.b.bitcast(closure, I8P),
                           self.convert(extent, s.var.dtype, INDEX)])

    # --- memory ----------------------------------------------------------
    def stmt_Allocate(self, s):
        with self.allocated(s.buffer):
            self.stmt(s.body)

    @contextmanager
    def allocated(self, buf: Buffer):
        """`buf` bound to its storage while the block runs: an aligned array on the stack
        (allocated once, in the entry block) when its constant size fits `STACK_LIMIT`,
        else `aligned_alloc`ed here and freed at the block's end."""
        mem = memory_type(buf.dtype)
        count = _constant_size(buf.shape)
        if count is not None and count * buf.dtype.itemsize <= STACK_LIMIT:
            array = self.allocas.alloca(ir.ArrayType(mem, max(count, 1)), name=buf.name)
            array.align = ALLOC_ALIGN
            with self.bound(self.buffers, buf, self.allocas.bitcast(array, mem.as_pointer())):
                yield
            return
        count = I64(1)
        for dim in buf.shape:
            count = self.b.mul(count, self.index(dim))
        size = self.b.mul(count, I64(buf.dtype.itemsize))
        size = self.b.and_(self.b.add(size, I64(ALLOC_ALIGN - 1)), I64(-ALLOC_ALIGN))
        alloc = self.mod.function("aligned_alloc", I8P, [I64, I64])
        raw = self.b.call(alloc, [I64(ALLOC_ALIGN), size])
        self.heap.append(raw)
        with self.bound(self.buffers, buf, self.b.bitcast(raw, mem.as_pointer())):
            yield
        self.heap.pop()
        self.b.call(self.mod.function("free", VOID, [I8P]), [raw])

    def expr_Load(self, e):
        if self.mod.bound_checked:
            return checked_access(self, e, "load from", super().expr_Load)
        return super().expr_Load(e)

    def stmt_Store(self, s):
        if self.mod.bound_checked:
            checked_access(self, s, "store to", self._store)
        else:
            self._store(s)

    def _store(self, s):
        ptr, index = self.buffer(s.buffer), single_index(s)
        value, lanes = self.expr(s.value), s.value.dtype.lanes
        if s.buffer.dtype.is_bool:
            value = self.b.zext(value, ir.VectorType(I8, lanes) if lanes > 1 else I8)
        align = element_align(s.buffer.dtype)
        if lanes == 1:
            if self.mask is not None:
                raise BuildError(f"scalar store to {s.buffer.name} under a vector condition")
            self.b.store(value, self.b.gep(ptr, [self.index(index)], inbounds=True), align=align)
        elif index.dtype.lanes == 1:
            raise BuildError(f"vector store to {s.buffer.name} at scalar index {index}")
        elif isinstance(index, Ramp) and const_int(index.stride) == 1:
            self.dense_store(ptr, self.index(index.base), value, align)
        else:
            self._scatter(ptr, self.index(index), value, align)

    def stmt_Prefetch(self, s):
        """`prefetcht0` of the element's line (read, keep in all cache levels)."""
        # not `inbounds`: a prefetch may reach past the buffer's end
        address = self.b.gep(self.buffer(s.buffer), [self.index(single_index(s))])
        prefetch = self.mod.function("llvm.prefetch.p0", VOID, [I8P, I32, I32, I32])
        self.b.call(prefetch, [self.b.bitcast(address, I8P), I32(0), I32(3), I32(1)])

    def stmt_IntrinsicCall(self, s):
        if self.mask is not None:
            raise BuildError(f"intrinsic call {s.name} under a vector condition")
        if s.headers:
            raise BuildError(f"intrinsic call {s.name} needs C headers {s.headers}; the LLVM "
                             "backend takes definitions in LLVM IR")
        args = [self.b.gep(self.buffer(p.buffer), [self.index(single_index(p))], inbounds=True)
                for p in s.pointers] + [self.expr(v) for v in s.values]
        self.b.call(self.mod.intrinsic(s.name, s.definition, [a.type for a in args]), args)

    def stmt_ExternCall(self, s):
        """`call @name(args...)`, each argument converted to its parameter's type."""
        if self.mask is not None:
            raise BuildError(f"call_extern {s.name} under a vector condition")
        values = [self.b.gep(self.buffer(a.buffer), [self.index(single_index(a))], inbounds=True)
                  if k in s.pointers else self.expr(a) for k, a in enumerate(s.args)]
        result = VOID if s.result is None else value_type(s.result)
        fn = self.mod.imports.declaration(self.mod.module, s.name, result,
                                          [v.type for v in values])
        self.b.call(fn, call_arguments(self, s, fn, values))

    def stmt_PackedCall(self, s):
        """`tex_call_packed(signature, values, shapes)`; on failure free the heap and return."""
        if self.mask is not None or self.in_parallel:
            raise BuildError(f"packed call {s.name!r} inside a parallel loop or under a vector "
                             "condition; an extern stage runs at the root of its kernel")
        values = self.allocas.alloca(ir.ArrayType(I64, max(1, len(s.args))))
        for k, arg in enumerate(s.args):
            if k in s.buffer_args:
                ptr = self.b.gep(self.buffer(arg.buffer), [self.index(single_index(arg))],
                                 inbounds=True)
                value = self.b.ptrtoint(ptr, I64)
            elif arg.dtype.is_float:
                value = self.b.bitcast(self.convert(self.expr(arg), arg.dtype, float64), I64)
            else:
                value = self.convert(self.expr(arg), arg.dtype, INDEX)
            self.b.store(value, self.b.gep(values, [I32(0), I32(k)], inbounds=True))
        shapes = self.allocas.alloca(ir.ArrayType(I64, max(1, len(s.shapes))))
        for k, dim in enumerate(s.shapes):
            self.b.store(self.index(dim), self.b.gep(shapes, [I32(0), I32(k)], inbounds=True))
        first = [I32(0), I32(0)]
        call = self.mod.function(packed_func.SYMBOL, I32, [I8P, I64.as_pointer(),
                                                           I64.as_pointer()])
        failed = self.b.call(call, [self.b.gep(self.mod.string(packed_func.signature(s)), first),
                                    self.b.gep(values, first), self.b.gep(shapes, first)])
        with self.b.if_then(self.b.icmp_signed("!=", failed, I32(0)), likely=False):
            for raw in reversed(self.heap):
                self.b.call(self.mod.function("free", VOID, [I8P]), [raw])
            self.b.ret_void()

    def dense_store(self, ptr, base, value, align):
        """Store the vector `value` at `ptr[base:]` (masked under a lane mask)."""
        vt = value.type
        vptr = self.b.bitcast(self.b.gep(ptr, [base], inbounds=self.mask is None),
                              vt.as_pointer())
        if self.mask is None:
            self.b.store(value, vptr, align=align)
            return
        fn = self.mod.function(f"llvm.masked.store.{mangle(vt)}.p0", VOID,
                               [vt, vt.as_pointer(), I32, self.mask.type])
        self.b.call(fn, [value, vptr, I32(align), self.mask])

    def _scatter(self, ptr, index, value, align):
        ptrs = self.vector_gep(ptr, index)
        lanes = value.type.count
        mask = self.mask if self.mask is not None else splat_constant(I1(1), lanes)
        fn = self.mod.function(f"llvm.masked.scatter.{mangle(value.type)}.v{lanes}p0", VOID,
                               [value.type, ptrs.type, I32, mask.type])
        self.b.call(fn, [value, ptrs, I32(align), mask])


def _constant_size(shape: tuple[Expr, ...]):
    """The number of elements of a buffer of `shape` when all dimensions are constants."""
    count = 1
    for dim in shape:
        value = const_int(dim)
        if value is None:
            return None
        count *= value
    return count
