"""The loop IR: buffers, loads and stores, loops, branches.

Lowering turns a schedule into a `Stmt` of these nodes; passes rewrite it;
codegen emits it. Expression nodes shared with tensor expressions are in
`tex.expr`; the ones here only appear after lowering:

* `Load` reads a buffer, `Ramp` is a vector index made by vectorization
  (`Broadcast`, a scalar in every lane, is in `tex.expr`: a constant of a
  vector dtype is one).
* GPU programs add: loops bound to a thread axis (`For` of kind "bound"),
  `ThreadIndex`, `Barrier`, `AtomicUpdate`, `WarpShuffle`, the cross-thread
  `ThreadReduce` (expanded by a pass before codegen) and `KernelLaunch`, the
  host-side launch of a device body.
* `IntrinsicCall` calls a function that tensorize brought in (a tensor-core
  or AMX tile operation, see `tex.intrin.cuda_wmma` and `tex.intrin.x86_amx`).
* `PackedCall` calls a Python function registered with `tex.register_func`
  (the statement of an extern stage, `tex.extern`).
* `ExternCall` calls a C function by name (TVM's `call_extern`), defined by a
  module the kernel imports (`LoweredFunc.imports`) or by the process.

Before `flatten_storage`, loads and stores index a buffer with one index per
dimension; afterwards every buffer is one-dimensional.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from tex.dtype import INDEX, DType, as_dtype
from tex.errors import ArgumentError, ExprError
from tex import ops
from tex.expr import Broadcast, Const, Expr, Node, Var  # noqa: F401  (Broadcast: loop IR too)

_buffer_ids = itertools.count()


@dataclass(frozen=True, eq=False, slots=True)
class Buffer:
    """A region of memory: a kernel argument or an allocation.

    `shape` is in elements (expressions over symbolic sizes); `strides`,
    when given, say how far apart (in elements) consecutive indices of each
    dimension lie; None means compact row-major. Compared by identity.
    `scope` is "global" for kernel arguments and allocations at the root,
    "local" for small per-thread temporaries (registers on a GPU), "shared"
    for GPU memory shared by the threads of a block.
    """

    name: str
    dtype: DType
    shape: tuple[Expr, ...]
    scope: str = "global"
    strides: tuple[Expr, ...] | None = None
    uid: int = field(default_factory=lambda: next(_buffer_ids))

    def __post_init__(self):
        if self.dtype.lanes > 1:
            raise ExprError(f"buffer {self.name}: a buffer holds scalars, not {self.dtype}; "
                            f"declare it of {self.dtype.element} with the {self.dtype.lanes} "
                            "lanes as a last dimension")

    def __hash__(self):
        return object.__hash__(self)

    def __repr__(self):
        return f"Buffer({self.name})"

    @property
    def data(self) -> "Buffer":
        """The buffer's memory as an argument of `call_packed` or `call_extern`: the buffer
        itself, which they pass whole. TVM: `Buffer.data`."""
        return self

    def vload(self, begin, dtype=None) -> "Load":
        """The element at index `begin` (a tuple, one index per dimension). TVM:
        `Buffer.vload` (of scalars)."""
        if dtype is not None and as_dtype(dtype) != self.dtype:
            raise ExprError(f"vload of {self.name}: its elements are {self.dtype}, not {dtype}")
        return Load(self, _element_index(begin))

    def vstore(self, begin, value) -> "Store":
        """The statement writing `value` into the element at index `begin`. TVM:
        `Buffer.vstore`."""
        return Store(self, ops.as_expr(value, self.dtype), _element_index(begin))


def tensor_buffer(name: str, dtype: DType, shape, scope: str = "global",
                  strides=None) -> Buffer:
    """The buffer holding a tensor of `dtype` and `shape`. A vector dtype's buffer holds
    its element dtype, with the lanes as one more, last, dimension (a (n,) float32x4
    tensor is an (n, 4) float32 buffer); `strides`, when given, are the tensor's own."""
    if dtype.lanes == 1:
        return Buffer(name, dtype, tuple(shape), scope, strides)
    lanes = Const(INDEX, dtype.lanes)
    if strides is not None:
        strides = tuple(ops.binary("mul", s, lanes) for s in strides) + (Const(INDEX, 1),)
    return Buffer(name, dtype.element, (*shape, lanes), scope, strides)


def lane_index(lanes: int) -> Ramp:
    """The index, in the last dimension of a vector dtype's buffer, of all its lanes."""
    return Ramp(Const(INDEX, 0), Const(INDEX, 1), lanes)


def _element_index(begin) -> tuple[Expr, ...]:
    items = tuple(begin) if isinstance(begin, (tuple, list)) else (begin,)
    return tuple(ops.cast(INDEX, ops.as_expr(i, INDEX)) for i in items)


def strides_of(buffer: Buffer) -> tuple:
    """The stride of each dimension of `buffer`, in elements: its own, or row-major."""
    if buffer.strides is not None:
        return buffer.strides
    strides, acc = [], Const(INDEX, 1)
    for extent in reversed(buffer.shape):
        strides.insert(0, acc)
        acc = ops.binary("mul", acc, extent)
    return tuple(strides)


@dataclass(frozen=True, eq=False, slots=True, repr=False)
class Load(Expr):
    """`buffer[indices]`; a vector index gives a vector value of as many lanes."""

    buffer: Buffer
    indices: tuple[Expr, ...]
    dtype: DType = field(init=False)

    def __post_init__(self):
        lanes = _check_indices(self.buffer, self.indices)
        object.__setattr__(self, "dtype", self.buffer.dtype.with_lanes(lanes))


@dataclass(frozen=True, eq=False, slots=True, repr=False)
class Ramp(Expr):
    """The vector `base, base + stride, ..., base + (lanes-1)*stride`."""

    base: Expr
    stride: Expr
    lanes: int
    dtype: DType = field(init=False)

    def __post_init__(self):
        if self.base.dtype.lanes != 1 or self.stride.dtype.lanes != 1:
            raise ExprError("Ramp base and stride must be scalars")
        object.__setattr__(self, "dtype", self.base.dtype.with_lanes(self.lanes))


#: The combining operations of `VectorReduce`.
VECTOR_REDUCE_OPS = ("add", "mul", "min", "max")


@dataclass(frozen=True, eq=False, slots=True, repr=False)
class VectorReduce(Expr):
    """The lanes of the vector `value` combined into one scalar by `op`, in an
    unspecified order (codegen uses a tree of halvings)."""

    op: str
    value: Expr
    dtype: DType = field(init=False)

    def __post_init__(self):
        if self.op not in VECTOR_REDUCE_OPS:
            raise ExprError(f"VectorReduce op must be one of {VECTOR_REDUCE_OPS}, got {self.op!r}")
        if self.value.dtype.lanes == 1:
            raise ExprError("VectorReduce needs a vector value")
        object.__setattr__(self, "dtype", self.value.dtype.element)


def _check_indices(buffer: Buffer, indices) -> int:
    if len(indices) != len(buffer.shape) and len(indices) != 1:
        raise ExprError(f"buffer {buffer.name} has {len(buffer.shape)} dimension(s), "
                        f"indexed with {len(indices)}")
    lanes = {i.dtype.lanes for i in indices} - {1}
    if len(lanes) > 1:
        raise ExprError(f"indices of {buffer.name} mix vector widths {sorted(lanes)}")
    for i in indices:
        if not i.dtype.is_int:
            raise ExprError(f"index of {buffer.name} must be an integer, got {i.dtype}")
    return lanes.pop() if lanes else 1


class Stmt(Node):
    """A statement of the loop IR."""

    __slots__ = ()


#: Loop kinds. A `vectorized` loop becomes vector instructions; `unrolled`
#: becomes copies of its body; `parallel` runs its iterations on the thread pool;
#: `bound` runs them on the GPU thread axis named by `For.thread_tag`.
LOOP_KINDS = ("serial", "parallel", "vectorized", "unrolled", "bound")
#: Loop kinds whose body runs inline in the code around it (a parallel loop's body becomes a
#: function, a bound one's a kernel): a value bound before such a loop is in scope in it.
INLINE_LOOP_KINDS = ("serial", "unrolled", "vectorized")

#: GPU thread axes a loop can be bound to. A `vthread` loop is virtual: it runs
#: serially in each thread, but bound inference treats it like a thread axis.
THREAD_TAGS = ("blockIdx.x", "blockIdx.y", "blockIdx.z",
               "threadIdx.x", "threadIdx.y", "threadIdx.z", "vthread")


@dataclass(frozen=True, eq=False, slots=True, repr=False)
class For(Stmt):
    """`for var in [min, min + extent)`. `pragmas` are (key, value) pairs from the schedule.

    A loop of kind "bound" gives each iteration to one thread of `thread_tag`
    (all iterations run at once); a loop bound to a tag nested inside another
    loop bound to the same tag means the same threads.
    """

    var: Var
    min: Expr
    extent: Expr
    kind: str
    body: Stmt
    pragmas: tuple[tuple[str, object], ...] = ()
    thread_tag: str | None = None

    def __post_init__(self):
        if self.kind not in LOOP_KINDS:
            raise ExprError(f"unknown loop kind {self.kind!r}; expected one of {LOOP_KINDS}")
        if (self.kind == "bound") != (self.thread_tag is not None) or \
                (self.thread_tag is not None and self.thread_tag not in THREAD_TAGS):
            raise ExprError(f"loop {self.var.name}: a bound loop needs a thread tag of "
                            f"{THREAD_TAGS}, other loops none; got kind {self.kind!r}, "
                            f"tag {self.thread_tag!r}")

    @property
    def loop_var(self) -> Var:
        """`var`. TVM: `For.loop_var`."""
        return self.var


@dataclass(frozen=True, eq=False, slots=True, repr=False)
class Store(Stmt):
    """`buffer[indices] = value`."""

    buffer: Buffer
    value: Expr
    indices: tuple[Expr, ...]

    def __post_init__(self):
        lanes = _check_indices(self.buffer, self.indices)
        if self.value.dtype.element != self.buffer.dtype:
            raise ExprError(f"storing {self.value.dtype} into {self.buffer.name} "
                            f"of {self.buffer.dtype}")
        if self.value.dtype.lanes != lanes and lanes != 1:
            raise ExprError(f"store to {self.buffer.name}: {lanes} indices, "
                            f"{self.value.dtype.lanes} values")


@dataclass(frozen=True, eq=False, slots=True, repr=False)
class Prefetch(Stmt):
    """A hint to bring the cache line holding `buffer[indices]` into every level of the
    data cache, to be read soon. It changes no value; lowering keeps the indices
    inside the buffer (from `Stage.prefetch`)."""

    buffer: Buffer
    indices: tuple[Expr, ...]

    def __post_init__(self):
        if _check_indices(self.buffer, self.indices) != 1:
            raise ExprError(f"prefetch of {self.buffer.name}: needs a scalar index")


@dataclass(frozen=True, eq=False, slots=True, repr=False)
class PrefetchAhead(Stmt):
    """The body of a loop, marked by lowering (from `Stage.prefetch`): each iteration
    should first prefetch what `body` reads of `buffer` `distance` iterations later.
    `inject_prefetch` replaces the mark by `Prefetch` statements."""

    buffer: Buffer
    distance: int
    body: Stmt


@dataclass(frozen=True, eq=False, slots=True, repr=False)
class DoubleBuffer(Stmt):
    """The body of a serial loop, marked by lowering (from `Stage.double_buffer`): each
    iteration runs `fill`, which writes the shared `buffers` (allocated here), then
    `body`, which reads them. `inject_double_buffer` overlaps the next iteration's
    fill with this iteration's body, with a second copy of each buffer."""

    buffers: tuple[Buffer, ...]
    fill: Stmt
    body: Stmt


@dataclass(frozen=True, eq=False, slots=True, repr=False)
class Pipeline(Stmt):
    """The body of a serial loop, marked by lowering (from `Stage.pipeline`): each
    iteration runs `fill`, which writes the shared `buffers` (allocated here), then
    `body`, which reads them. `inject_pipeline` gives each buffer `stages` slots and
    fills the slot of iteration v + stages - 1 with asynchronous copies while `body`
    reads that of iteration v."""

    buffers: tuple[Buffer, ...]
    stages: int
    fill: Stmt
    body: Stmt


@dataclass(frozen=True, eq=False, slots=True, repr=False)
class AsyncFill(Stmt):
    """Stores into shared buffers (in `body`) that a pipeline orders itself: they may be
    asynchronous copies (`lower_async_copies` makes them so where it can), and the
    pipeline's own wait and barrier, not the barrier pass, separate them from the
    statements that read those buffers."""

    body: Stmt


@dataclass(frozen=True, eq=False, slots=True, repr=False)
class Allocate(Stmt):
    """`buffer` exists (uninitialised) while `body` runs."""

    buffer: Buffer
    body: Stmt

    @property
    def extents(self) -> tuple[Expr, ...]:
        """The buffer's shape. TVM: `Allocate.extents`."""
        return self.buffer.shape


@dataclass(frozen=True, eq=False, slots=True, repr=False)
class IfThenElse(Stmt):
    """`if cond: then_body else: else_body` (no else when `else_body` is None)."""

    cond: Expr
    then_body: Stmt
    else_body: Stmt | None = None

    def __post_init__(self):
        if self.cond.dtype.element.kind != "bool":
            raise ExprError(f"branch condition must be bool, got {self.cond.dtype}")

    @property
    def condition(self) -> Expr:
        """`cond`. TVM: `IfThenElse.condition`."""
        return self.cond

    @property
    def then_case(self) -> Stmt:
        """`then_body`. TVM: `IfThenElse.then_case`."""
        return self.then_body

    @property
    def else_case(self) -> Stmt | None:
        """`else_body`. TVM: `IfThenElse.else_case`."""
        return self.else_body


@dataclass(frozen=True, eq=False, slots=True, repr=False)
class LetStmt(Stmt):
    """`var = value`, visible in `body`."""

    var: Var
    value: Expr
    body: Stmt


@dataclass(frozen=True, eq=False, slots=True, repr=False)
class Seq(Stmt):
    """`stmts`, one after the other."""

    stmts: tuple[Stmt, ...]

    def __len__(self) -> int:
        return len(self.stmts)

    @property
    def seq(self) -> tuple[Stmt, ...]:
        """`stmts`. TVM: `SeqStmt.seq`."""
        return self.stmts

    def __getitem__(self, index: int) -> Stmt:
        """The statement at `index` (TVM: `SeqStmt[index]`)."""
        return self.stmts[index]


def seq(*stmts: Stmt | None) -> Stmt:
    """Statements in order, flattening nested Seqs and dropping Nones."""
    flat = []
    for s in stmts:
        if s is None:
            continue
        flat.extend(s.stmts if isinstance(s, Seq) else (s,))
    return flat[0] if len(flat) == 1 else Seq(tuple(flat))


@dataclass(frozen=True, eq=False, slots=True, repr=False)
class ThreadIndex(Expr):
    """The index of the running thread along `tag` ("blockIdx.x", "threadIdx.y", ...)."""

    tag: str
    dtype: DType = field(init=False)

    def __post_init__(self):
        if self.tag not in THREAD_TAGS[:6]:
            raise ExprError(f"ThreadIndex tag must be one of {THREAD_TAGS[:6]}, got {self.tag!r}")
        object.__setattr__(self, "dtype", INDEX)


#: How `WarpShuffle` picks the lane it reads: lane ^ offset, or lane + offset.
SHUFFLE_MODES = ("xor", "down")


@dataclass(frozen=True, eq=False, slots=True, repr=False)
class WarpShuffle(Expr):
    """`value` as held by another lane of the warp (`__shfl_xor_sync` /
    `__shfl_down_sync` over the lanes in `mask`, in groups of `width` lanes)."""

    mode: str
    value: Expr
    offset: int
    width: int
    mask: int
    dtype: DType = field(init=False)

    def __post_init__(self):
        if self.mode not in SHUFFLE_MODES:
            raise ExprError(f"WarpShuffle mode must be one of {SHUFFLE_MODES}, got {self.mode!r}")
        if self.value.dtype.lanes != 1:
            raise ExprError("WarpShuffle takes a scalar")
        object.__setattr__(self, "dtype", self.value.dtype)


@dataclass(frozen=True, eq=False, slots=True, repr=False)
class Barrier(Stmt):
    """Every thread of the block waits here (`__syncthreads()`); shared-memory
    writes made before are visible to every thread after."""


#: The combining operations of `AtomicUpdate`.
ATOMIC_OPS = ("add", "min", "max")


@dataclass(frozen=True, eq=False, slots=True, repr=False)
class AtomicUpdate(Stmt):
    """`buffer[indices] = op(buffer[indices], value)` as one indivisible step."""

    buffer: Buffer
    op: str
    value: Expr
    indices: tuple[Expr, ...]

    def __post_init__(self):
        if self.op not in ATOMIC_OPS:
            raise ExprError(f"AtomicUpdate op must be one of {ATOMIC_OPS}, got {self.op!r}")
        if _check_indices(self.buffer, self.indices) != 1 or self.value.dtype != self.buffer.dtype:
            raise ExprError(f"AtomicUpdate of {self.buffer.name}: needs a scalar index and a "
                            f"{self.buffer.dtype} value, got {self.value.dtype}")


@dataclass(frozen=True, eq=False, slots=True, repr=False)
class IntrinsicCall(Stmt):
    """`name(&pointers..., values...)`: a call of the function `name`, which `definition`
    defines in the target's language: CUDA C for "cuda" (after `#include <h>` for each
    of `headers`), an LLVM IR module for "llvm" (no headers).

    Each of `pointers` is a scalar `Load` whose *address* is passed, `&buffer[index]`,
    as a pointer to the buffer's element type (const unless its position is in
    `writes`); `values` follow, passed by value. Every buffer a pointer reaches must
    be aligned to `align` bytes. Passes see the pointers as loads, so kernels take
    their buffers and flattening linearises their indices; the barrier pass also
    counts the buffers of `writes` as written. Made by tensorize intrinsics, e.g.
    `tex.intrin.cuda_wmma`, whose docstrings say what else the call assumes.
    """

    name: str
    pointers: tuple[Expr, ...]
    values: tuple[Expr, ...]
    definition: str
    headers: tuple[str, ...] = ()
    writes: tuple[int, ...] = ()
    align: int = 1

    def __post_init__(self):
        for p in self.pointers:
            if not isinstance(p, Load) or p.dtype.lanes != 1:
                raise ExprError(f"IntrinsicCall {self.name}: each pointer is a scalar Load "
                                f"(its address is passed), got {type(p).__name__}")
        if any(not 0 <= w < len(self.pointers) for w in self.writes):
            raise ExprError(f"IntrinsicCall {self.name}: writes {self.writes} must index "
                            f"its {len(self.pointers)} pointer(s)")

    @property
    def value(self) -> "CallValue":
        """TVM's view of this statement, `Evaluate(value=Call(...))` (see `CallValue`)."""
        return CallValue.of(self.name, self.pointers + self.values,
                            range(len(self.pointers)))


@dataclass(frozen=True, eq=False, slots=True, repr=False)
class PackedCall(Stmt):
    """`name(args...)`: a call of the Python function registered as `name`
    (`tex.register_func`), made with `tex.call_packed` in the statement of an extern
    stage (`tex.extern`).

    The arguments at the positions `buffer_args` are buffers, each given as a scalar
    `Load` of its first element (so that passes rename and flatten it like any
    access) and passed as a whole array; the others are scalar values, passed as
    int64 (integers, and bools as 0 or 1) or float64 (floats). `shapes` holds the dimensions of
    the buffer arguments one after another, `ranks` how many each has: flattening
    leaves buffers one-dimensional, the function sees them in their own shape.
    """

    name: str
    args: tuple[Expr, ...]
    buffer_args: tuple[int, ...]
    shapes: tuple[Expr, ...]
    ranks: tuple[int, ...]

    def __post_init__(self):
        if len(self.ranks) != len(self.buffer_args) or sum(self.ranks) != len(self.shapes):
            raise ExprError(f"PackedCall {self.name}: one rank per buffer argument, and as "
                            "many shape dimensions as the ranks add up to")
        for k, arg in enumerate(self.args):
            if arg.dtype.lanes != 1 or (k in self.buffer_args) != isinstance(arg, Load):
                raise ExprError(f"PackedCall {self.name}: argument {k} must be a scalar "
                                f"{'Load' if k in self.buffer_args else 'value'}, got "
                                f"{type(arg).__name__} of {arg.dtype}")

    @property
    def value(self) -> "CallValue":
        """TVM's view of this statement, `Evaluate(value=Call(...))` (see `CallValue`)."""
        return CallValue.of(self.name, self.args, self.buffer_args)


@dataclass(frozen=True, eq=False, slots=True, repr=False)
class ExternCall(Stmt):
    """`name(args...)`: a call of the C function `name` for what it does, its result (of
    `result`, None for none) dropped; made by `tex.tir.call_extern` (TVM's `call_extern`
    under `Evaluate`).

    The arguments at the positions `pointers` are scalar `Load`s whose *address* is
    passed (`&buffer[index]`); the call may write through those at `writes`, and only
    reads through the others. The other arguments are scalar values. The function is
    defined by a module the kernel imports (`LoweredFunc.imports`), or else by the
    process (libc, libm) for CPU targets, or else the build fails naming it.
    """

    name: str
    args: tuple[Expr, ...]
    pointers: tuple[int, ...] = ()
    writes: tuple[int, ...] = ()
    result: DType | None = None

    def __post_init__(self):
        for k, arg in enumerate(self.args):
            if arg.dtype.lanes != 1 or (k in self.pointers) != isinstance(arg, Load):
                raise ExprError(f"ExternCall {self.name}: argument {k} must be a scalar "
                                f"{'Load' if k in self.pointers else 'value'}, got "
                                f"{type(arg).__name__} of {arg.dtype}")
        if not set(self.writes) <= set(self.pointers) or \
                any(not 0 <= p < len(self.args) for p in self.pointers):
            raise ExprError(f"ExternCall {self.name}: pointers {self.pointers} must index its "
                            f"{len(self.args)} argument(s), and writes {self.writes} be "
                            "among them")

    @property
    def value(self) -> "CallValue":
        """TVM's view of this statement, `Evaluate(value=Call(...))` (see `CallValue`)."""
        return CallValue.of(self.name, self.args, self.pointers)


@dataclass(frozen=True)
class CallValue:
    """What TVM's `Evaluate(Call(...)).value` shows of a call statement (`PackedCall`,
    `ExternCall`), for TE code that reads it: `args` are the callee's name, as a string
    literal, then the arguments, each buffer (or pointer into one) by its buffer's name,
    as TVM passes a buffer's data pointer (`&A[index]` for a tile or access pointer)."""

    args: tuple

    @classmethod
    def of(cls, name: str, args: tuple, buffer_positions) -> "CallValue":
        """A buffer argument at its first element shows as the buffer's name, one at
        another element (a tile, an access pointer) as `&A[index]`."""
        return cls((_Literal(f'"{name}"'),) + tuple(
            _Literal(arg.buffer.name if all(isinstance(i, Const) and i.value == 0
                                            for i in arg.indices) else f"&{arg}")
            if k in buffer_positions else arg for k, arg in enumerate(args)))


@dataclass(frozen=True)
class _Literal:
    """Text that stands for itself when printed (a name, a string literal); `value` is
    the text inside the quotes of a string literal (TVM's `StringImm.value`)."""

    text: str

    def __str__(self) -> str:
        return self.text

    @property
    def value(self) -> str:
        return self.text[1:-1] if self.text.startswith('"') else self.text


#: Cross-thread reduction strategies (see `Stage.reduce_strategy`).
THREAD_REDUCE_STRATEGIES = ("shared", "warp")


def warp_sized(threads: int) -> bool:
    """Whether `threads` consecutive lanes split into whole warps or into aligned groups
    within one (a power of two up to 32, or a multiple of 32): what "warp" needs."""
    return (threads <= 32 and threads & (threads - 1) == 0) or threads % 32 == 0


@dataclass(frozen=True, eq=False, slots=True, repr=False)
class ThreadReduce(Stmt):
    """Combine `values` (one per output of `combiner`) across the `extent`
    threads of `tag`; afterwards each of those threads holds the result in
    `results[k][0]` (one-element local buffers). Threads of `tag` at or past
    `extent` contribute the identity. Expanded by `lower_thread_reduce`."""

    strategy: str
    combiner: object
    values: tuple[Expr, ...]
    results: tuple[Buffer, ...]
    tag: str
    extent: int

    def __post_init__(self):
        if self.strategy not in THREAD_REDUCE_STRATEGIES:
            raise ExprError(f"ThreadReduce strategy must be one of {THREAD_REDUCE_STRATEGIES}, "
                            f"got {self.strategy!r}")
        if len(self.values) != len(self.results):
            raise ExprError("ThreadReduce needs one result buffer per value")


@dataclass(frozen=True, eq=False, slots=True, repr=False)
class KernelLaunch(Stmt):
    """Run `body` on the GPU over a grid of `grid` blocks of `block` threads
    (x, y, z; expressions over the size variables). `params` are the buffers
    and `size_vars` the sizes the body uses, in the order the kernel takes them."""

    name: str
    grid: tuple[Expr, Expr, Expr]
    block: tuple[Expr, Expr, Expr]
    params: tuple[Buffer, ...]
    size_vars: tuple[Var, ...]
    body: Stmt


@dataclass(frozen=True, eq=False, slots=True)
class RuntimeCheck:
    """A condition on the values a call binds (size variables, scalar parameters) and the
    machine's `vscale` that the loop program relies on without testing it (a symbolic
    split factor is at least 1; a part shifted inwards fits in its axis). Each call tests
    it before the kernel runs and raises ArgumentError(`message`, with the values) where
    it fails."""

    cond: Expr
    message: str


@dataclass(frozen=True, eq=False, slots=True)
class KernelInterface:
    """How a kernel is called: its parameters (buffers, in call order), the values its
    entry takes in `sizes` (`size_vars`: the symbolic sizes bound from the params'
    shapes, then the scalar parameters), the parameters it writes, and the call's
    arguments in order (`arguments`: buffers and variables; empty when they are the
    params alone), and whether the kernel checks its accesses' bounds (`bound_checked`:
    its entry then takes two more `sizes` slots, `tex.codegen.llvm_bounds`), and the
    `RuntimeCheck`s each call makes. A LoweredFunc has the same fields, and a body."""

    name: str
    params: tuple[Buffer, ...]
    size_vars: tuple[Var, ...]
    outputs: tuple[Buffer, ...]
    arguments: tuple[Buffer | Var, ...] = ()
    bound_checked: bool = False
    checks: tuple[RuntimeCheck, ...] = ()

    @property
    def call_arguments(self) -> tuple[Buffer | Var, ...]:
        """The call's arguments in order: buffers and variables."""
        return self.arguments or self.params


#: The pragmas whose value is a module to link into the kernel (`LoweredFunc.imports`),
#: and the language each names: LLVM IR (CPU targets), CUDA C (CUDA targets).
IMPORT_PRAGMAS = {"import_llvm": "llvm", "import_c": "c"}
#: The pragma whose value is the least number of blocks a CUDA kernel's multiprocessor
#: should hold at once: the `min_blocks` of its `__launch_bounds__`.
LAUNCH_BOUNDS_PRAGMA = "launch_bounds"


@dataclass(frozen=True, eq=False, slots=True)
class LoweredFunc:
    """A lowered kernel: its parameters (buffers, in call order), its body.

    `size_vars` are the symbolic sizes, bound from argument shapes at call time, then
    the scalar parameters, passed by value; `outputs` are the params the kernel writes;
    `arguments` the call's arguments in order when variables are among them (a size
    variable named in `build`'s args, a scalar parameter), else empty (the params
    alone). `imports` are the modules linked into
    the kernel, `(language, text)` pairs from the schedule's `import_llvm` ("llvm": an
    LLVM IR module) and `import_c` ("c": CUDA C) pragmas, which define the functions
    of its `ExternCall`s. `str()` is the readable loop nest.
    It is also a module of one function, as TVM's `IRModule`: `func["main"]` (its
    name) is itself and `functions` maps its name to it.
    How it is compiled, from the `tex.PassContext` it was lowered in: `noalias`,
    whether the code may claim that its buffer parameters do not alias
    (`tir.noalias`); `bound_checked`, whether every load and store is checked
    against its buffer's extent (`tir.instrument_bound_checkers`). `checks` are the
    `RuntimeCheck`s each call makes before it runs the body.
    """

    name: str
    params: tuple[Buffer, ...]
    size_vars: tuple[Var, ...]
    body: Stmt
    outputs: tuple[Buffer, ...] = ()
    imports: tuple[tuple[str, str], ...] = ()
    arguments: tuple[Buffer | Var, ...] = ()
    noalias: bool = True
    bound_checked: bool = False
    checks: tuple[RuntimeCheck, ...] = ()

    @property
    def call_arguments(self) -> tuple[Buffer | Var, ...]:
        """The call's arguments in order: buffers and variables."""
        return self.arguments or self.params

    def __str__(self):
        from tex.printer import to_text
        return to_text(self)

    @property
    def functions(self) -> dict[str, "LoweredFunc"]:
        """`{name: self}`, the functions of this one-function module."""
        return {self.name: self}

    def __getitem__(self, name: str) -> "LoweredFunc":
        """The function called `name`: this one, the only one. TVM: `mod["main"]`."""
        if name != self.name:
            raise ArgumentError(f"the lowered module has one function, {self.name!r}, and no "
                                f"{name!r}; lower with name={name!r} to call it so")
        return self

    __repr__ = __str__

