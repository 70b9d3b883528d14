"""From a schedule to a loop program, as a straight list of steps.

`schedule_to_func(schedule, args)`:

1. `inline_stages`: inlined stages substituted into their readers;
2. `check_attach_targets`, `check_scan_placement`, `check_attach`: each
   compute_at names a consumer of its stage (`tex.lower.stages`), each scan's
   stages where its steps run in order (`tex.lower.scan`), each compute_at legal
   (the target has the loop, every consumer lies inside it);
3. `infer_bounds`: the region, loop ranges and guards of every stage,
   consumers first (frozen `StagePlan`s); `check_scans`: each step of a scan
   reads rows written before it;
4. `make_buffers`: the buffer of every tensor, a scan's shared by its inits,
   updates and states (`share_scan_buffers`), then `drop_unneeded_guards`;
5. `stage_nest` for every stage, those computed inside others first: the
   loop nest of the stage (`tex.lower.nest`; GPU reductions in
   `tex.lower.gpu_reduction`, tensorized tiles in `tex.lower.tile`, scans in
   `tex.lower.scan`, the statement of an extern stage in `tex.lower.extern`),
   with the nests of the stages computed at its loops placed there and the
   loops that prefetch or double-buffer marked (`tex.lower.loop_marks`);
6. the root nests in order, intermediate buffers allocated around them,
   every variable defined once; the plans' run-time checks of symbolic split
   sizes, each once, become the function's `checks`.

The result is multi-dimensional loop IR with marks; the passes in
`tex.passes` (listed in `tex.driver`) take it from there.
"""
from __future__ import annotations

from tex.errors import LoweringError
from tex.expr import Var
from tex.ir import (IMPORT_PRAGMAS, Allocate, KernelInterface, LoweredFunc, seq,
                    tensor_buffer)
from tex.lower.bound import StagePlan, drop_unneeded_guards, infer_bounds
from tex.lower.buffers import make_buffers
from tex.lower.extern import extern_nest
from tex.lower.gpu_reduction import (atomic_init_nest, gpu_reduction_nest, one_of_the_copies,
                                     reduced_across_threads)
from tex.lower.nest import Lowering, StageLoops, reduction_start, stage_nest
from tex.lower.scan import check_scan_placement, check_scans, scan_nest, share_scan_buffers
from tex.lower.stages import (attach_depth, check_attach, check_attach_targets, consumers_of,
                              inline_stages)
from tex.lower.tile import tensorized_nest
from tex.scan_op import ScanOp
from tex.tensor import ExternOp, PlaceholderOp, Tensor
from tex.visitor import collect, free_vars, unique_definitions


def kernel_interface(sch, args, name: str = "main") -> KernelInterface:
    """How the kernel of `sch` with arguments `args` is called: exactly the params,
    size variables, outputs and arguments of `schedule_to_func(sch, args, name)`,
    without lowering.

    A tensor of `args` is a param; a variable is passed by value at its position: a
    size variable (one that a tensor's shape uses), checked against the arrays'
    shapes, or else a scalar parameter, which follows the size variables in
    `size_vars`. A tensor whose stage is inlined stays a param, as in TE, but the
    kernel neither writes nor reads it, so it is not an output. A scan's state
    placeholder stands for the scan's output (which holds the state)."""
    args = _check_args(sch, args)
    tensors = [a for a in args if isinstance(a, Tensor)]
    params = tuple(tensor_buffer(t.name, t.dtype, t.shape) for t in tensors)
    shape_vars = _size_vars(tensors)
    sizes = set(shape_vars)
    scalars = tuple(a for a in args if isinstance(a, Var) and a not in sizes)
    held = _held_tensors(sch, tensors)
    outputs = tuple(p for t, p in zip(held, params) if _written(sch, t))
    buffer_of = dict(zip(tensors, params))
    arguments = tuple(buffer_of[a] if isinstance(a, Tensor) else a for a in args) \
        if len(tensors) < len(args) else ()
    return KernelInterface(name, params, shape_vars + scalars, outputs, arguments)


def schedule_to_func(sch, args, name: str = "main") -> LoweredFunc:
    """Lower `sch` to a LoweredFunc whose arguments are `args` in order."""
    interface = kernel_interface(sch, args, name)
    args = _held_tensors(sch, [a for a in args if isinstance(a, Tensor)])
    params = dict(zip(args, interface.params))
    plans = stage_plans(sch)
    buffers = share_scan_buffers(plans, make_buffers(plans, params), params)
    lowering = Lowering(drop_unneeded_guards(plans, buffers), buffers)
    roots = [p for p in lowering.plans if p.stage.attach.kind == "root"]
    _check_root_scopes(sch, roots)
    nests = {}
    for plan in sorted(lowering.plans, key=lambda p: -attach_depth(p.stage)):
        nests[plan.stage] = _stage_nest(plan, lowering, nests)
    body = seq(*(nest for p in roots
                 for nest in (atomic_init_nest(p, buffers), nests[p.stage])))
    body = _allocate_intermediates(roots, buffers, body)
    body = unique_definitions(body)  # a reduce axis may be shared by several computes
    checks = _runtime_checks(lowering.plans)
    _check_sizes_defined(interface.size_vars, [body] + [c.cond for c in checks])
    return LoweredFunc(name, interface.params, interface.size_vars, body, interface.outputs,
                       _imports(lowering.plans), interface.arguments, checks=checks)


def stage_plans(sch) -> tuple[StagePlan, ...]:
    """Steps 1 to 3: the frozen plan of every stage of `sch` that gets a nest (bound
    inference's results), in schedule order."""
    check_attach_targets(sch)
    stages = inline_stages(sch)
    consumers = consumers_of(sch, stages)
    check_scan_placement(stages, consumers)
    lowered = {s.stage for s in stages}
    for s in stages:
        check_attach(s.stage, consumers[s.stage], lowered)
    return check_scans(infer_bounds(stages, consumers))


def _runtime_checks(plans) -> tuple:
    """The stages' run-time checks (`RuntimeCheck`), each once."""
    found = {}
    for plan in plans:
        for check in plan.checks:
            found.setdefault((str(check.cond), check.message), check)
    return tuple(found.values())


def _imports(plans) -> tuple:
    """The modules the stages' import pragmas give, `(language, text)`, each once."""
    found = {}
    for plan in plans:
        for pragmas in plan.stage.pragmas.values():
            for key, value in pragmas:
                if key in IMPORT_PRAGMAS:
                    found.setdefault((IMPORT_PRAGMAS[key], value), None)
    return tuple(found)


def _stage_nest(plan, lowering: Lowering, nests: dict):
    """The nest of `plan`'s stage, built by the module its kind of stage needs."""
    if plan.stage.store_predicate is not None and (
            isinstance(plan.op, (ExternOp, ScanOp)) or plan.stage.tensorized is not None):
        raise LoweringError(f"stage {plan.stage.name}: set_store_predicate applies to compute "
                            "stages, not to extern, scan or tensorized ones")
    first = reduction_start(plan.stage)
    _check_vector_dtypes(plan, first)
    if isinstance(plan.op, ExternOp):
        return extern_nest(plan, lowering.buffers)
    loops = StageLoops(plan, lowering, nests)
    if isinstance(plan.op, ScanOp):
        return scan_nest(loops)
    if plan.stage.tensorized is not None:
        return tensorized_nest(loops)
    if reduced_across_threads(plan.stage, first):
        return gpu_reduction_nest(loops, first)
    one_thread = None if first is None else one_of_the_copies(plan, lowering)
    return stage_nest(loops, one_thread)


def _check_vector_dtypes(plan, first):
    """LoweringError if a stage that takes no vector dtype ("float32x4") has one: a
    tensorized stage (its inputs and outputs), a stage with a reduction loop bound to a
    GPU thread or block axis (its outputs). Extern stages refuse them when declared."""
    stage, op = plan.stage, plan.op
    tensors = [("output", t) for t in op.outputs]
    if stage.tensorized is not None:
        kind = "tensorized"
        tensors += [("input", t) for t in op.input_tensors]
    elif reduced_across_threads(stage, first):
        kind = "reduced across GPU threads or blocks"
    else:
        return
    for role, t in tensors:
        if t.dtype.lanes > 1:
            raise LoweringError(f"stage {stage.name} is {kind}, which takes no vector dtype; "
                                f"its {role} {t.name} is {t.dtype}")


def _allocate_intermediates(roots, buffers: dict, body):
    """`body` inside allocations of the root stages' buffers that are not parameters."""
    for plan in reversed(roots):
        for t in plan.op.outputs:
            if buffers[t].allocated_here:
                body = Allocate(buffers[t].buffer, body)
    return body


def _check_args(sch, args) -> list[Tensor | Var]:
    """`args` as a list: tensors and variables, each once, every output of the schedule
    among them."""
    if not isinstance(args, (list, tuple)) or not args:
        raise LoweringError(f"lower/build: args must be a non-empty list of tensors, got {args!r}")
    for i, a in enumerate(args):
        if isinstance(a, Var):
            _check_variable_arg(i, a)
        elif not isinstance(a, Tensor):
            raise LoweringError(f"lower/build: argument {i} must be a tensor or a variable "
                                f"(te.var), got {type(a).__name__} {a!r}")
        if sum(b is a for b in args) > 1:
            kind = "variable" if isinstance(a, Var) else "tensor"
            raise LoweringError(f"lower/build: {kind} {a.name} is given twice in args")
    states = _scan_states(sch)
    for state, output in states.items():
        if any(a is state for a in args) and any(a is output for a in args):
            raise LoweringError(f"lower/build: {state.name} is a state of scan {output.op.name}"
                                f", whose output {output.name} holds it; give one of the two "
                                "in args, not both")
    given = set(_held_tensors(sch, [a for a in args if isinstance(a, Tensor)]))
    for op in sch.outputs:
        for t in op.outputs:
            if t not in given and not isinstance(op, PlaceholderOp):
                raise LoweringError(f"lower/build: output {t.name} of the schedule is missing "
                                    "from args")
    return list(args)


def _scan_states(sch) -> dict:
    """Each state placeholder of a scan of `sch` -> the scan's output holding it."""
    return {state: output for stage in sch.stages if isinstance(stage.op, ScanOp)
            for state, output in zip(stage.op.state_placeholder, stage.op.outputs)}


def _held_tensors(sch, tensors: list) -> list:
    """The tensor each argument's array holds: itself, or for a scan's state placeholder
    the scan's output."""
    states = _scan_states(sch)
    return [states.get(t, t) for t in tensors]


def _check_variable_arg(i: int, var: Var):
    """A variable among the args is passed by value: one scalar of a bool, int or float
    dtype."""
    if var.dtype.lanes != 1 or not (var.dtype.is_int or var.dtype.is_float or
                                    var.dtype.is_bool):
        raise LoweringError(f"lower/build: argument {i} is the variable {var.name} of dtype "
                            f"{var.dtype}; a variable argument is one bool, int or float "
                            "value")


def _written(sch, tensor: Tensor) -> bool:
    """Whether the kernel writes `tensor`: computed by the schedule and not inlined."""
    stage = sch.stage_of(tensor)
    return stage is not None and stage.attach.kind != "inline"


def _check_root_scopes(sch, roots):
    """In a GPU schedule, a stage computed at the root lives in global memory: shared and
    local memory exist only inside a kernel."""
    if not any(st.bindings for st in sch.stages):
        return
    for plan in roots:
        if plan.stage.scope != "global":
            raise LoweringError(f"stage {plan.stage.name} has scope {plan.stage.scope!r} but is "
                                "computed at the root, outside every GPU kernel; compute it "
                                "inside a kernel with compute_at, or give it scope 'global'")


def _size_vars(args) -> tuple[Var, ...]:
    """Symbolic sizes in order of first appearance in the parameters' shapes."""
    found = []
    for t in args:
        for e in t.shape:
            for v in collect(e, lambda n: isinstance(n, Var)):
                if v not in found:
                    found.append(v)
    return tuple(found)


def _check_sizes_defined(size_vars, nodes: list):
    for v in set().union(*(free_vars(n) for n in nodes)):
        if v not in size_vars:
            raise LoweringError(f"variable {v.name} is used by the computation but no argument's "
                                "shape defines it; add a tensor with that size to args, or "
                                f"pass {v.name} itself in args (a scalar parameter)")
