"""The two entry points: `lower` (schedule -> loop program) and `build` (-> callable kernel);
and `schedule_to_module`, the loop program before the passes.

The lowering pipeline is the list `PIPELINE`, read top to bottom, followed
by `CPU_PIPELINE` or, for GPU targets, `GPU_PIPELINE`; with a target, the
user's intrinsic lowering rules for it come first (`lower_intrinsics`).
With TEX_VERIFY=1 the verifier runs after every pass; TEX_PRINT_AFTER prints
the program after the passes it names (see `tex.config`).

What differs between the kinds of target (the passes after `PIPELINE`, the
compiler, the kernel class, whether loops may bind GPU threads) is the table
`BACKENDS`, looked up once per call by `backend(target)`.

Both read the enclosing `with tex.PassContext(...)` (`tex.pass_context`): its
`tir.add_lower_pass` passes run inside `lower` at the points `USER_PHASES`
says; `tir.noalias` and the bound checks are marked on the LoweredFunc for
codegen; `build` keys its caches on them (`PassContext.code_key`), builds with
user passes by program rather than by fingerprint, and writes a CUDA kernel's
source into `cuda.kernels_output_dir`.
"""
from __future__ import annotations

import contextvars
import dataclasses
import os
import sys
import weakref
from typing import Callable

from tex import config, intrin_rules
from tex.codegen.cuda import compile_cuda
from tex.errors import BuildError
from tex.ir import (For, KernelInterface, KernelLaunch, LoweredFunc, PackedCall, Stmt,
                    ThreadIndex)
from tex.lower import kernel_interface, schedule_to_func
from tex.lower.introspect import schedule_arguments
from tex.pass_context import PassContext
from tex.passes.flatten import flatten_storage
from tex.passes.gpu_kernels import split_host_device
from tex.passes.gpu_reduce import lower_thread_reduce
from tex.passes.gpu_sync import insert_barriers
from tex.passes.hoist import hoist_invariant_guards
from tex.passes.hoist_divisions import hoist_divisions
from tex.passes.hoist_reciprocals import hoist_reciprocals
from tex.passes.async_copy import lower_async_copies
from tex.passes.inject_double_buffer import inject_double_buffer
from tex.passes.inject_pipeline import inject_pipeline
from tex.passes.inject_prefetch import inject_prefetch
from tex.passes.lower_intrinsics import lower_intrinsics
from tex.passes.simplify import simplify_stmt
from tex.passes.unroll import unroll_loops
from tex.passes.vectorize import vectorize_loops
from tex.passes.verify import verify
from tex.runtime.cache import compile_cached, kernel_code
from tex.runtime.cuda_kernel import CudaKernel
from tex.runtime.kernel import Kernel
from tex.schedule.fingerprint import (Unfingerprintable, fingerprint, lowering_rules,
                                      process_local)
from tex.schedule.relations import Split
from tex.schedule.schedule import Schedule
from tex.target import Target, as_target
from tex.visitor import collect
from tex.expr import Var
from tex.tensor import ExternOp

#: (name, pass, whether storage is flat afterwards), in the order they run.
PIPELINE = (
    ("inject_double_buffer", inject_double_buffer, False),
    ("inject_pipeline", inject_pipeline, False),
    ("inject_prefetch", inject_prefetch, False),
    ("simplify", simplify_stmt, False),
    ("flatten_storage", flatten_storage, True),
    ("hoist_reciprocals", hoist_reciprocals, True),
    ("vectorize_loops", vectorize_loops, True),
    ("unroll_loops", unroll_loops, True),
    ("simplify_flat", simplify_stmt, True),
    ("hoist_invariant_guards", hoist_invariant_guards, True),
)

#: Where the passes of `tir.add_lower_pass` (`tex.PassContext`) run: phase 0 before
#: `PIPELINE`, on the loop nest with multi-dimensional buffers; phases 1 and 2 after the
#: pass named here (1: storage is flat, loops are not yet vectorized or unrolled; 2:
#: they are); phase 3 at the end, after the target's passes. So in TVM's lowering:
#: phase 1 follows storage flattening, phase 2 vectorizing and unrolling.
USER_PHASES = {"flatten_storage": 1, "unroll_loops": 2}

#: Then, for CPU targets (and for printing without a target):
CPU_PIPELINE = (
    ("hoist_divisions", hoist_divisions),
)

#: Or, for GPU targets: root nests become kernel launches (checked against
#: the target's limits), cross-thread reductions are expanded, pipelined
#: fills become asynchronous copies, and barriers placed between threads'
#: shared-memory writes and reads.
GPU_PIPELINE = (
    ("lower_thread_reduce", lower_thread_reduce),
    ("lower_async_copies", lower_async_copies),
    ("insert_barriers", insert_barriers),
    ("simplify_kernels", simplify_stmt),
)


@dataclasses.dataclass(frozen=True)
class Backend:
    """What `lower` and `build` do for one kind of target.

    `function_passes`: the passes `(name, pass(func, target))` of the whole
    function that run after `PIPELINE` (the GPU's split into host code and
    kernel launches); `passes`: the passes of the body that follow them;
    `compile(func, target)`: the compiled code of a lowered function, for a
    schedule without a fingerprint; `kernel_class`: the kernel made of the
    code; `binds_threads`: whether loops may be bound to GPU thread axes (and
    reductions given a GPU strategy).
    """

    function_passes: tuple[tuple[str, Callable], ...]
    passes: tuple[tuple[str, Callable], ...]
    compile: Callable
    kernel_class: type
    binds_threads: bool


#: The backend of each kind of target (`tex.target`).
BACKENDS = {
    "llvm": Backend(function_passes=(), passes=CPU_PIPELINE, compile=compile_cached,
                    kernel_class=Kernel, binds_threads=False),
    "cuda": Backend(function_passes=(("split_host_device", split_host_device),),
                    passes=GPU_PIPELINE, compile=compile_cuda, kernel_class=CudaKernel,
                    binds_threads=True),
}


def backend(target: Target | None) -> Backend:
    """The backend of `target`'s kind; without a target (printing), the CPU's."""
    return BACKENDS["llvm" if target is None else target.kind]


def lower(sch: Schedule, args, name: str = "main", upto: str | None = None,
          target=None, simple_mode: bool = False) -> LoweredFunc:
    """The loop program of `sch` with parameters `args`; `str()` of it is readable.

    `upto` names a pass of `PIPELINE` to stop after (the autotuner reads its
    features after `unroll_loops`, skipping the final clean-up). With a GPU
    `target` ("cuda"), the program goes on through `GPU_PIPELINE` and shows
    the kernels it launches; without one, loops bound to GPU threads are
    printed as such (`for i in threadIdx.x(64):`). The result also serves as
    TVM's module of one function (`mod["main"]`, `mod.functions`), and
    `build` takes it. `simple_mode` is accepted for TVM code: tex prints the
    loop program alone either way.
    TVM: `tvm.lower(s, args, name=..., simple_mode=True)`.
    """
    if upto is not None and upto not in {pass_name for pass_name, _, _ in PIPELINE}:
        raise BuildError(f"lower: upto must name a pass of the pipeline "
                         f"({', '.join(p for p, _, _ in PIPELINE)}), got {upto!r}")
    if not isinstance(sch, Schedule):
        raise BuildError(f"lower: expected a schedule from tex.create_schedule, got "
                         f"{type(sch).__name__}")
    target = None if target is None else as_target(target)
    context = PassContext.current()
    if target is not None and backend(target).binds_threads:
        _check_no_extern_stage(sch, target)
        _check_no_variable_args(args, target)
        if context.bound_checks:
            raise BuildError(f"tir.instrument_bound_checkers: tex checks bounds in CPU kernels "
                             f"only, and {str(target)!r} is a GPU target; build it outside "
                             "that PassContext, or for target='llvm'")
    func = schedule_to_func(sch, list(args), name)
    if target is not None and backend(target).binds_threads and \
            collect(func.body, lambda n: isinstance(n, PackedCall)):
        raise BuildError(f"{func.name}: a tensor intrinsic calls a packed (Python) function "
                         f"with call_packed, which runs on CPU targets only; build it for "
                         f"target='llvm', not {str(target)!r}")
    func = dataclasses.replace(func, noalias=context.get("tir.noalias"),
                               bound_checked=context.bound_checks)
    checking, printing = config.verify_enabled(), config.print_after()

    def after(pass_name: str, flat: bool):
        if checking:
            verify(func, flat=flat, after=pass_name)
        if pass_name in printing or "all" in printing:
            print(f"# after {pass_name}\n{func}", file=sys.stderr)

    after("schedule_to_func", False)
    for pass_name, run, flat in _passes(context, target, upto):
        func = run(func)
        after(pass_name, flat)
    return func


def schedule_to_module(sch: Schedule, args=None, name: str = "main",
                       binds=None) -> LoweredFunc:
    """The loop program of `sch` as lowering first builds it, before any pass of
    `PIPELINE`: multi-dimensional buffers, guards where the schedule needs them. Without
    `args`, the placeholders its stages read, its outputs, then the variables no shape
    gives (`tex.lower.introspect.schedule_arguments`). Like `lower`'s result it
    answers `mod["main"]` (a `tex.tir.PrimFunc`). `binds` is accepted empty only: tex
    gives each tensor its own buffer (a tensor intrinsic declares layouts with
    `decl_tensor_intrin(..., binds=)`).
    TVM: `tvm.driver.build_module.schedule_to_module(sch, args, name, binds)`.
    """
    if not isinstance(sch, Schedule):
        raise BuildError(f"schedule_to_module: expected a schedule from tex.create_schedule, "
                         f"got {type(sch).__name__}")
    if binds:
        raise BuildError("schedule_to_module: binds are not supported, tex gives each tensor "
                         "its own buffer; call it without binds")
    func = schedule_to_func(sch, schedule_arguments(sch) if args is None else list(args), name)
    if config.verify_enabled():
        verify(func, flat=False, after="schedule_to_func")
    return func


def _passes(context: PassContext, target: Target | None, upto: str | None) -> list:
    """What `lower` runs after `schedule_to_func`, in order: `(name, pass of the whole
    function, whether storage is flat after it)`: with a target, its intrinsic lowering
    rules first; `PIPELINE` up to `upto`, else all of it and the backend's passes, with
    the context's user passes where `USER_PHASES` says."""
    def on_body(run):
        return lambda func: dataclasses.replace(func, body=run(func.body))

    def user(phase: int, flat: bool) -> list:
        return [(f"tir.add_lower_pass phase {phase}", on_body(_user_pass(run, phase)), flat)
                for p, run in context.get("tir.add_lower_pass") if p == phase]

    steps = [] if target is None else \
        [("lower_intrinsics", on_body(lambda body: lower_intrinsics(body, target)), False)]
    steps += user(0, False)
    for pass_name, run, flat in PIPELINE:
        steps.append((pass_name, on_body(run), flat))
        if pass_name == upto:
            return steps
        if pass_name in USER_PHASES:
            steps += user(USER_PHASES[pass_name], True)
    chosen = backend(target)
    steps += [(pass_name, lambda func, run=run: run(func, target), True)
              for pass_name, run in chosen.function_passes]
    steps += [(pass_name, on_body(run), True) for pass_name, run in chosen.passes]
    return steps + user(3, True)


def _user_pass(run, phase: int) -> Callable[[Stmt], Stmt]:
    """The pass `run` of `tir.add_lower_pass`, checked to give a statement back."""
    def checked(body: Stmt) -> Stmt:
        result = run(body)
        if not isinstance(result, Stmt):
            raise BuildError(f"tir.add_lower_pass: the pass {getattr(run, '__name__', run)!r} "
                             f"of phase {phase} returned {type(result).__name__} {result!r}; a "
                             "pass takes the loop program's statement and returns one")
        return result
    return checked


_built: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

#: A function `(schedule, args, target) -> Schedule | None` that `build` asks
#: for a better schedule when it is given an untouched one (straight from
#: `create_schedule`); `autotune.apply_history_best` sets it to pick the best
#: tuned schedule of a logged workload.
schedule_provider: contextvars.ContextVar = contextvars.ContextVar("schedule_provider",
                                                                  default=None)


def build(sch: Schedule, args=None, target=None, name: str = "main", target_host=None):
    """Compile `sch` into a callable `Kernel` for `target` ("llvm", "llvm -mcpu=..."), or a
    `CudaKernel` for "cuda" ("cuda -arch=sm_90").

    Without `target`, the target of the enclosing `with tex.Target(...):`, else
    "llvm". `target_host` must be a CPU target; like `Target(..., host=)`, it
    changes nothing that is built.
    Building the same schedule (unchanged since) with the same arguments
    again returns the kernel built before. An identical schedule declared
    again, in this process or (through the disk cache) in another, reuses the
    compiled code without lowering (see `tex.runtime.cache`).
    `build(tex.lower(s, args), target)` builds a lowered program for a CPU (applying
    the target's intrinsic lowering rules to the calls still in it);
    `build([f, g], target)` several, returned as a dict of kernels by name.
    TVM: `tvm.build(s, args, target, name=...)`.
    """
    if not isinstance(sch, Schedule) and isinstance(args, (str, Target)) and target is None:
        args, target = None, args  # build(mod, "llvm"): the target in args' place, as TVM
    target = _chosen_target(target, target_host)
    if isinstance(sch, LoweredFunc):
        return _build_lowered(sch, args, target)
    if isinstance(sch, (list, tuple)) and sch and all(isinstance(f, LoweredFunc) for f in sch):
        names = [f.name for f in sch]
        if len(set(names)) < len(names):
            raise BuildError(f"build: the lowered programs' names must differ, got {names}; "
                             "lower each with its own name=")
        return {f.name: _build_lowered(f, args, target) for f in sch}
    if not isinstance(sch, Schedule):
        raise BuildError(f"build: expected a schedule from tex.create_schedule, got "
                         f"{type(sch).__name__}")
    if args is None:
        raise BuildError("build: a schedule is built with its arguments, "
                         "tex.build(s, [A, B, C], target)")
    args = tuple(args)
    _check_target_fits(sch, target)
    provider = schedule_provider.get()
    if provider is not None and sch.untouched:
        sch = provider(sch, args, target) or sch
    context = PassContext.current()
    key = (sch.version, tuple(map(id, args)), str(target), name, intrin_rules.version(),
           context.code_key())
    per_schedule = _built.setdefault(sch, {})
    pinned = args + tuple(run for _, run in context.get("tir.add_lower_pass"))
    cached, kernel = per_schedule.get(key, ((), None))
    if kernel is None or any(a is not b for a, b in zip(cached, pinned)):
        kernel = _build_uncached(sch, args, target, name, context)
        per_schedule[key] = (pinned, kernel)  # the args and passes pin the ids in the key
    _write_cuda_source(kernel, context)  # a kernel built before too
    return kernel


def _write_cuda_source(kernel, context: PassContext):
    """With `cuda.kernels_output_dir`, a CUDA kernel's source is written there as
    `<name>.cu`."""
    directory = context.get("cuda.kernels_output_dir")
    if directory is not None and isinstance(kernel, CudaKernel):
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, f"{kernel.name}.cu"), "w") as out:
            out.write(kernel.get_source("cuda"))


def _chosen_target(target, target_host) -> Target:
    """The target `build` compiles for: `target`, else the one of the enclosing
    `with Target(...):`, else "llvm"; with `target_host` as its host."""
    if target is None:
        target = Target.current() or "llvm"
    target = as_target(target)
    return target if target_host is None else Target(str(target), host=target_host)


def _build_lowered(func: LoweredFunc, args, target: Target) -> Kernel:
    """A CPU kernel of a program `lower` returned (lowered for the CPU, the default)."""
    if args is not None:
        raise BuildError(f"build: the lowered program {func.name} has its parameters "
                         "already; call tex.build(mod, target=...) without args")
    if backend(target) is not BACKENDS["llvm"]:
        raise BuildError(f"build: a lowered program builds for a CPU target, got "
                         f"{str(target)!r}; for a GPU, build the schedule: "
                         "tex.build(s, args, 'cuda')")
    if collect(func.body, lambda n: isinstance(n, (KernelLaunch, ThreadIndex)) or
               isinstance(n, For) and n.kind == "bound"):
        raise BuildError(f"build: the lowered program {func.name} uses GPU threads; build "
                         "its schedule for a GPU: tex.build(s, args, 'cuda')")
    func = dataclasses.replace(func, body=lower_intrinsics(func.body, target))
    return Kernel(func, compile_cached(func, target))


def _check_target_fits(sch: Schedule, target: Target):
    """A schedule binding loops to GPU threads, or choosing how GPU threads combine a
    reduction, builds for a GPU target, and only there; one with an extern stage (whose
    packed calls run Python on the host) for a CPU target."""
    if backend(target).binds_threads:
        _check_no_extern_stage(sch, target)
        return
    bound = next(((st, axis) for st in sch.stages for axis in st.bindings), None)
    if bound is not None:
        stage, axis = bound
        raise BuildError(f"stage {stage.name} binds axis {axis.name} to "
                         f"{stage.bindings[axis]}, a GPU thread axis; build it for "
                         "target='cuda', or schedule it without bind for the CPU")
    chosen = next(((st, axis) for st in sch.stages for axis in st.reduce_strategies), None)
    if chosen is not None:
        stage, axis = chosen
        raise BuildError(f"reduce_strategy on stage {stage.name}, axis {axis.name}: "
                         f"{stage.reduce_strategies[axis]!r} says how GPU threads combine a "
                         f"reduction, and target {str(target)!r} is a CPU; build for "
                         "target='cuda', or use rfactor for the CPU")


def _check_no_extern_stage(sch: Schedule, target: Target):
    """A GPU target has no place for an extern stage, whose packed calls run Python."""
    extern = next((st for st in sch.stages if isinstance(st.op, ExternOp)), None)
    if extern is not None:
        raise BuildError(f"stage {extern.name} is an extern stage, whose statement calls "
                         f"Python functions on the CPU; build it for target='llvm' (tex "
                         f"runs extern stages on CPU targets only), not {str(target)!r}")


def _check_no_variable_args(args, target: Target):
    """A GPU kernel takes tensors only: its launches pass sizes bound from the arrays."""
    variable = next((a for a in args if isinstance(a, Var)), None)
    if variable is not None:
        raise BuildError(f"argument {variable.name} is a variable; a kernel for "
                         f"{str(target)!r} takes tensors only (sizes come from the arrays' "
                         "shapes; scalar parameters are for target='llvm'): leave it out "
                         "of args, or pass a one-element tensor instead")


def _symbolic_splits(sch: Schedule) -> bool:
    """Whether a split of `sch` has a symbolic size. Such a kernel is not written to the
    disk cache: the `RuntimeCheck`s each call makes come from lowering, which a kernel
    read from disk skips (its interface has none)."""
    return any(isinstance(r, Split) and r.symbolic is not None
               for stage in sch.stages for r in stage.relations)


def _build_uncached(sch: Schedule, args, target, name: str, context: PassContext):
    """A new Kernel (a CudaKernel for a CUDA target) for `sch` under `context`, its code
    found by the schedule's fingerprint (and the context's options) if it can be; user
    passes (`tir.add_lower_pass`) make the program more than the fingerprint says, so
    it is then lowered and compiled by program."""
    chosen = backend(target)
    try:
        text = None if context.get("tir.add_lower_pass") else \
            fingerprint(sch, args, name) + lowering_rules(str(target.kind), sch)
    except Unfingerprintable:
        text = None
    if text is None:
        func = lower(sch, args, name, target=target)
        return chosen.kernel_class(func, chosen.compile(func, target))
    noalias, bound_checked = context.code_key()[:2]
    if not noalias or bound_checked:
        text += f"\n# noalias={noalias} bound_checked={bound_checked}"
    version, schedule_ref = sch.version, weakref.ref(sch)  # a kernel must not keep its schedule
    rules = intrin_rules.version()

    def lower_unchanged() -> LoweredFunc:
        current = schedule_ref()
        if current is None or current.version != version or intrin_rules.version() != rules:
            raise BuildError(f"the schedule of kernel {name!r} (or an intrinsic lowering rule) "
                             "has changed or is gone since the kernel was built, so its loop "
                             "program cannot be lowered again; build it again")
        with context:
            return lower(current, args, name, target=target)

    def interface() -> KernelInterface:
        return dataclasses.replace(kernel_interface(sch, args, name),
                                   bound_checked=bound_checked)

    code = kernel_code(text, target, lower_unchanged, interface,
                       on_disk=not process_local(text) and not _symbolic_splits(sch))
    return chosen.kernel_class(code.func, code.compiled, lower=lower_unchanged,
                               tex_source=code.tex_source)
