"""Tensor intrinsics written the TE way, as in TVM's tensorize tutorial: buffers declared
with decl_buffer and bound to the tiles, statements from the IR builder calling C
functions with call_extern, their definitions imported with pragma import_llvm; built
for the CPU and checked against NumPy, with the declarations' checks and the errors;
the same calls compiled for CUDA (pragma import_c) and run in the simulator."""
import numpy as np
import pytest

import tex
from tex import tir
from tex.runtime import cuda_simulator
from tex.runtime.cuda_device import gpu_available

from checks import check, random_array

RUNS = [pytest.param("call", marks=pytest.mark.skipif(not gpu_available(),
                                                     reason="needs an NVIDIA GPU")),
        pytest.param("simulate", marks=pytest.mark.skipif(cuda_simulator.compiler() is None,
                                                          reason="needs g++"))]

# The tutorial's C functions, as clang would compile them to LLVM IR (written by hand:
# no clang here). gemv_update: cc[i] += sum_j aa[j] * bb[i * stride + j]; gemv_reset:
# cc[i] = 0, for i < m, j < l.
GEMV_IR = """
define i32 @gemv_update(ptr %cc, ptr %aa, ptr %bb, i32 %m, i32 %l, i32 %stride) {
entry:
  br label %row
row:
  %i = phi i32 [0, %entry], [%i.next, %row.end]
  %row.more = icmp slt i32 %i, %m
  br i1 %row.more, label %row.start, label %done
row.start:
  %c.at = getelementptr float, ptr %cc, i32 %i
  %b.row = mul i32 %i, %stride
  br label %col
col:
  %j = phi i32 [0, %row.start], [%j.next, %col.body]
  %col.more = icmp slt i32 %j, %l
  br i1 %col.more, label %col.body, label %row.end
col.body:
  %a.at = getelementptr float, ptr %aa, i32 %j
  %b.index = add i32 %b.row, %j
  %b.at = getelementptr float, ptr %bb, i32 %b.index
  %a = load float, ptr %a.at
  %b = load float, ptr %b.at
  %c = load float, ptr %c.at
  %ab = fmul float %a, %b
  %sum = fadd float %c, %ab
  store float %sum, ptr %c.at
  %j.next = add i32 %j, 1
  br label %col
row.end:
  %i.next = add i32 %i, 1
  br label %row
done:
  ret i32 0
}

define i32 @gemv_reset(ptr %cc, i32 %m) {
entry:
  br label %loop
loop:
  %i = phi i32 [0, %entry], [%i.next, %body]
  %more = icmp slt i32 %i, %m
  br i1 %more, label %body, label %done
body:
  %c.at = getelementptr float, ptr %cc, i32 %i
  store float 0.0, ptr %c.at
  %i.next = add i32 %i, 1
  br label %loop
done:
  ret i32 0
}
"""

# add_rows(c, a, b, rows, stride): c = a + b on `rows` rows of 4 floats, `stride` apart.
ADD_ROWS_IR = """
define void @add_rows(ptr %c, ptr %a, ptr %b, i64 %rows, i64 %stride) {
entry:
  br label %loop
loop:
  %r = phi i64 [0, %entry], [%r.next, %body]
  %more = icmp slt i64 %r, %rows
  br i1 %more, label %body, label %done
body:
  %at = mul i64 %r, %stride
  %a.at = getelementptr float, ptr %a, i64 %at
  %b.at = getelementptr float, ptr %b, i64 %at
  %c.at = getelementptr float, ptr %c, i64 %at
  %x = load <4 x float>, ptr %a.at, align 4
  %y = load <4 x float>, ptr %b.at, align 4
  %z = fadd <4 x float> %x, %y
  store <4 x float> %z, ptr %c.at, align 4
  %r.next = add i64 %r, 1
  br label %loop
done:
  ret void
}
"""

GEMV_CUDA = """
__device__ int gemv_update(float *cc, float *aa, float *bb, int m, int l, int stride) {
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < l; ++j)
      cc[i] += aa[j] * bb[i * stride + j];
  return 0;
}
"""


def intrin_gemv(m, l, parts="body", **decl):
    """The tutorial's intrinsic: c[i] = sum_k a[k] * b[i, k], by gemv_update (and, for
    parts="all", (body, reset, update) with gemv_reset); `decl` changes C's declaration."""
    a = tex.placeholder((l,), name="a")
    b = tex.placeholder((m, l), name="b")
    k = tex.reduce_axis((0, l), name="k")
    c = tex.compute((m,), lambda i: tex.sum(a[k] * b[i, k], axis=k), name="c")
    Ab = tir.decl_buffer(a.shape, a.dtype, name="A", offset_factor=1, strides=[1])
    Bb = tir.decl_buffer(b.shape, b.dtype, name="B", offset_factor=1,
                         strides=[tex.var("s1"), 1])
    Cb = tir.decl_buffer(c.shape, c.dtype, **{"name": "C", "offset_factor": 1,
                                              "strides": [1], **decl})

    def intrin_func(ins, outs):
        aa, bb = ins
        cc = outs[0]

        def update():
            ib = tir.ir_builder.create()
            ib.emit(tir.call_extern("int32", "gemv_update", cc.access_ptr("w"),
                                    aa.access_ptr("r"), bb.access_ptr("r"), m, l,
                                    bb.strides[0]))
            return ib.get()

        def reset():
            ib = tir.ir_builder.create()
            ib.emit(tir.call_extern("int32", "gemv_reset", cc.access_ptr("w"), m))
            return ib.get()
        return update() if parts == "body" else (update(), reset(), update())
    return tex.decl_tensor_intrin(c.op, intrin_func, binds={a: Ab, b: Bb, c: Cb})


def gemv_schedule(N=8, M=48, L=64, split_k=False, imports=GEMV_IR, **kwargs):
    """C = A @ B.T with each 16 columns of a row of C one gemv (k split by 16 outside the
    tile when `split_k`), the functions imported at the column loop."""
    A = tex.placeholder((N, L), name="A")
    B = tex.placeholder((M, L), name="B")
    k = tex.reduce_axis((0, L), name="k")
    C = tex.compute((N, M), lambda i, j: tex.sum(A[i, k] * B[j, k], axis=k), name="C")
    s = tex.create_schedule(C.op)
    x, y = C.op.axis
    yo, yi = s[C].split(y, factor=16)
    if split_k:
        ko, ki = s[C].split(k, factor=16)
        s[C].reorder(x, yo, ko, yi, ki)
        s[C].tensorize(yi, intrin_gemv(16, 16, **kwargs))
    else:
        s[C].reorder(x, yo, yi, k)
        s[C].tensorize(yi, intrin_gemv(16, L, **kwargs))
    if imports:
        s[C].pragma(yo, "import_llvm", imports)
    return s, [A, B, C]


def add_intrin(n, lower, **kwargs):
    """c = a + b on `n` floats, lowered by `lower(ins, outs)`; and (a, b, c)."""
    a, b = tex.placeholder((n,), name="a"), tex.placeholder((n,), name="b")
    c = tex.compute((n,), lambda i: a[i] + b[i], name="c")
    return tex.decl_tensor_intrin(c.op, lower, **kwargs), (a, b, c)


def elementwise(shape, fn=lambda x, y: x + y):
    A, B = tex.placeholder(shape, name="A"), tex.placeholder(shape, name="B")
    return A, B, tex.compute(shape, lambda *i: fn(A[i], B[i]), name="C")


# --- the tutorial ------------------------------------------------------------------------

def test_gemv_calls_the_function_its_pragma_imports():
    s, args = gemv_schedule()
    text = str(tex.lower(s, args))
    assert "# import_llvm: defines gemv_update, gemv_reset" in text
    assert "call_extern('gemv_update', &C[i * 48 + j_outer * 16], &A[i * 64], " \
           "&B[j_outer * 1024], 16, 64, 64)" in text     # s1 bound to B's stride, 64
    kernel = tex.build(s, args, name="gemv")
    a, b = random_array((8, 64)), random_array((48, 64))
    c = np.zeros((8, 48), "float32")  # the body accumulates, as in the tutorial
    kernel(a, b, c)
    np.testing.assert_allclose(c, a @ b.T, rtol=1e-4, atol=1e-4)
    assert "@gemv_update" not in kernel.get_source("ll")  # linked in, then inlined


def test_gemv_with_the_reduction_split_outside_resets_then_updates():
    s, args = gemv_schedule(split_k=True, parts="all")
    text = str(tex.lower(s, args))
    assert text.index("call_extern('gemv_reset', &C[") < text.index("for k_outer") < \
        text.index("call_extern('gemv_update', &C[")
    a, b = random_array((8, 64)), random_array((48, 64))
    check(s, args, [a, b], a @ b.T, rtol=1e-4, atol=1e-4)  # outputs not zeroed


def test_a_single_statement_is_the_body_as_in_tvm():
    s, args = gemv_schedule(split_k=True, parts="body")
    with pytest.raises(tex.LoweringError, match="intrinsic c gives no reset statement"):
        tex.lower(s, args)


# --- buffers bound to tiles ----------------------------------------------------------------

def add_rows_tile(shared_stride=True):
    """c = a + b on 4x4 tiles whose rows lie `s` apart, by add_rows; with `shared_stride`
    the three declarations share the variable s, else each has its own."""
    strides = [[tex.var("s"), 1]] * 3 if shared_stride else \
        [[tex.var(f"s{k}"), 1] for k in range(3)]

    def lower(ins, outs):
        (aa, bb), (cc,) = ins, outs
        ib = tir.ir_builder.create()
        ib.emit(tir.call_extern("void", "add_rows", cc.access_ptr("w"), aa.access_ptr("r"),
                                bb.access_ptr("r"), 4, strides[2][0]))
        return ib.get()
    a, b = tex.placeholder((4, 4), name="a"), tex.placeholder((4, 4), name="b")
    c = tex.compute((4, 4), lambda i, j: a[i, j] + b[i, j], name="c")
    binds = {t: tir.decl_buffer(t.shape, t.dtype, name=t.name.upper(), strides=st)
             for t, st in zip((a, b, c), strides)}
    return tex.decl_tensor_intrin(c.op, lower, name="add4x4", binds=binds)


def test_a_declared_stride_variable_is_bound_to_the_tiles_stride():
    """Rows of the (4, n, 4) tensors' 4x4 tiles lie 4n apart; the call gets 4n wherever
    the intrinsic used the declared variable."""
    n = tex.var("n")
    A, B, C = elementwise((4, n, 4))
    s = tex.create_schedule(C.op)
    i, p, j = C.op.axis
    s[C].reorder(p, i, j)
    s[C].tensorize(i, add_rows_tile())
    s[C].pragma(p, "import_llvm", ADD_ROWS_IR)
    assert "call_extern('add_rows', &C[i1 * 4], &A[i1 * 4], &B[i1 * 4], 4, n * 4)" in \
        str(tex.lower(s, [A, B, C]))
    a, b = random_array((4, 5, 4)), random_array((4, 5, 4))
    check(s, [A, B, C], [a, b], a + b)


def test_a_variable_in_two_declarations_must_be_one_value():
    n = tex.var("n")
    A = tex.placeholder((4, n, 4), name="A")
    B = tex.placeholder((n, 4, 4), name="B")   # its tiles' rows lie 4 apart, A's 4n
    C = tex.compute((4, n, 4), lambda i, p, j: A[i, p, j] + B[p, i, j], name="C")
    s = tex.create_schedule(C.op)
    i, p, j = C.op.axis
    s[C].reorder(p, i, j)
    s[C].tensorize(i, add_rows_tile())
    with pytest.raises(tex.LoweringError, match=r"stage C, axis i: the tile of intrinsic "
                       r"tensor b \(in B\) has stride `4` along dimension 0, where "
                       r"decl_buffer B declares `n \* 4`"):
        tex.lower(s, [A, B, C])
    s[C].tensorize(i, add_rows_tile(shared_stride=False))
    tex.lower(s, [A, B, C])


def test_access_pointers_with_offsets():
    """c = a + b on 8 floats as two calls of add_rows on 4, the second at offset 4."""
    def lower(ins, outs):
        (aa, bb), (cc,) = ins, outs
        ib = tir.ir_builder.create()
        for offset in (0, 4):
            ib.emit(tir.call_extern("void", "add_rows", cc.access_ptr("w", offset=offset),
                                    aa.access_ptr("r", offset=offset),
                                    bb.access_ptr("r", offset=offset), 1, 4))
        return ib.get()
    A, B, C = elementwise((3, 16))
    s = tex.create_schedule(C.op)
    jo, ji = s[C].split(C.op.axis[1], factor=8)
    s[C].tensorize(ji, add_intrin(8, lower)[0])
    s[C].pragma(jo, "import_llvm", ADD_ROWS_IR)
    assert "call_extern('add_rows', &C[i0 * 16 + i1_outer * 8 + 4], " in \
        str(tex.lower(s, [A, B, C]))
    a, b = random_array((3, 16)), random_array((3, 16))
    check(s, [A, B, C], [a, b], a + b)


def test_default_buffer_params_declare_compact_buffers():
    """b's tile is 16 rows of 64 floats: not the compact 16 x 16 buffer declared."""
    a = tex.placeholder((16,), name="a")
    b = tex.placeholder((16, 16), name="b")
    k = tex.reduce_axis((0, 16), name="k")
    c = tex.compute((16,), lambda i: tex.sum(a[k] * b[i, k], axis=k), name="c")
    intrin = tex.decl_tensor_intrin(c.op, lambda ins, outs: None,
                                    default_buffer_params={"offset_factor": 1})
    assert [(d.name, [e.value for e in d.shape]) for d in intrin.buffers] == \
        [("a", [16]), ("b", [16, 16]), ("c", [16])]
    assert intrin.reduce_init is None
    s, args = gemv_schedule(split_k=True, parts="all")
    s[args[2]].tensorize(s[args[2]].leaf_iter_vars[3], intrin)
    with pytest.raises(tex.LoweringError, match=r"tile of intrinsic tensor b \(in B\) has "
                       r"stride `64` along dimension 0, where decl_buffer b declares `16`"):
        tex.lower(s, args)


@pytest.mark.parametrize("decl, message", [
    ({"offset_factor": 4}, r"starts at element `i_outer \* 4 \+ 1`, which is not a multiple "
                           r"of 4, as its offset_factor requires"),
    ({"data_alignment": 16}, ".* not a multiple of 4, as its data_alignment 16 \\(bytes\\)"),
    ({"elem_offset": 0}, r"starts at element `i_outer \* 4 \+ 1`, where decl_buffer A "
                         r"declares `0`"),
    ({"scope": "shared"}, "is in 'global' memory, where decl_buffer A declares 'shared'"),
    ({"strides": [2]}, "has stride `1` along dimension 0, where decl_buffer A declares `2`"),
])
def test_declarations_are_checked_against_the_tile(decl, message):
    """B = A[i + 1]: the tiles of A start one element after a multiple of 4."""
    def lower(ins, outs):
        ib = tir.ir_builder.create()
        ib.emit(tir.call_extern("handle", "memcpy", outs[0].access_ptr("w"),
                                ins[0].access_ptr("r"), 16))
        return ib.get()
    a = tex.placeholder((4,), name="a")
    c = tex.compute((4,), lambda i: a[i], name="c")
    binds = {a: tir.decl_buffer(a.shape, a.dtype, name="A", **decl)}
    A = tex.placeholder((17,), name="A")
    B = tex.compute((16,), lambda i: A[i + 1], name="B")
    s = tex.create_schedule(B.op)
    _, inner = s[B].split(B.op.axis[0], factor=4)
    s[B].tensorize(inner, tex.decl_tensor_intrin(c.op, lower, binds=binds))
    with pytest.raises(tex.LoweringError, match=r"stage B, axis i_inner: the tile of "
                       r"intrinsic tensor a \(in A\) " + message):
        tex.lower(s, [A, B])
    binds[a] = tir.decl_buffer(a.shape, a.dtype, name="A", offset_factor=1)  # fine
    s[B].tensorize(inner, tex.decl_tensor_intrin(c.op, lower, binds=binds))
    data = random_array(17)
    check(s, [A, B], [data], data[1:])   # memcpy, found in the process


def test_binds_and_imports_are_part_of_what_identifies_a_kernel():
    """Schedules that differ only in a declaration or in an imported module's text do not
    share compiled code (their printed programs may be equal)."""
    intrin = intrin_gemv(16, 64)
    a, b = random_array((8, 64)), random_array((48, 64))
    for definition, expected in ((GEMV_IR, a @ b.T),
                                 (GEMV_IR.replace("fadd float", "fsub float"), -(a @ b.T))):
        s, args = gemv_schedule(imports=definition)
        s[args[2]].tensorize(s[args[2]].leaf_iter_vars[2], intrin)
        c = np.zeros((8, 48), "float32")
        tex.build(s, args)(a, b, c)
        np.testing.assert_allclose(c, expected, rtol=1e-4, atol=1e-4)
    binds = {**intrin.binds, intrin.output: tir.decl_buffer((16,), name="C", strides=[2])}
    other = tex.decl_tensor_intrin(intrin.op, intrin.lower_fn, binds=binds)  # same lower_fn
    s, args = gemv_schedule(imports=definition)
    s[args[2]].tensorize(s[args[2]].leaf_iter_vars[2], other)
    with pytest.raises(tex.LoweringError, match="decl_buffer C declares `2`"):
        tex.build(s, args)


def test_call_extern_in_an_extern_stage():
    """A buffer passed whole is a pointer to its first element."""
    A = tex.placeholder((8,), name="A")
    B = tex.extern((8,), [A], lambda ins, outs: tir.call_extern(
        "void", "add_rows", outs[0], ins[0], ins[0], 2, 4), name="B")
    C = tex.compute((8,), lambda i: B[i] * 2.0, name="C")
    s = tex.create_schedule(C.op)
    s[C].pragma(C.op.axis[0], "import_llvm", ADD_ROWS_IR)
    assert "call_extern('add_rows', &B[0], &A[0], &A[0], 2, 4)" in str(tex.lower(s, [A, C]))
    a = random_array(8)
    check(s, [A, C], [a], a * 4)


# --- the IR builder --------------------------------------------------------------------------

def test_ir_builder_loops_branches_and_allocations():
    """relu(a + b) on 8 floats, through a local buffer, written with the IR builder."""
    a, b = tex.placeholder((8,), name="a"), tex.placeholder((8,), name="b")
    c = tex.compute((8,), lambda i: tex.if_then_else(a[i] + b[i] > 0.0, a[i] + b[i], 0.0),
                    name="c")

    def intrin_func(ins, outs):
        (aa, bb), (cc,) = ins, outs
        ib = tir.ir_builder.create()
        total = ib.allocate("float32", 8, name="total", scope="local")
        x, out = ib.buffer_ptr(aa), ib.buffer_ptr(cc)
        with ib.for_range(0, 8, name="t") as t:
            total[t] = x[t] + bb.vload([t])
        with ib.for_range(0, 8, name="t", kind="unroll") as t:
            with ib.if_scope(total[t] > 0.0):
                out[t] = total[t]
            with ib.else_scope():
                ib.emit(cc.vstore([t], 0.0))
        return ib.get()
    A, B, C = elementwise((5, 16), lambda x, y: tex.if_then_else(x + y > 0.0, x + y, 0.0))
    s = tex.create_schedule(C.op)
    _, inner = s[C].split(C.op.axis[1], factor=8)
    s[C].tensorize(inner, tex.decl_tensor_intrin(c, intrin_func))
    assert "total = allocate(float32[8], 'local')" in str(tex.lower(s, [A, B, C]))
    x, y = random_array((5, 16)), random_array((5, 16))
    check(s, [A, B, C], [x, y], np.maximum(x + y, 0))


def test_ir_builder_misuse():
    ib = tir.ir_builder.create()
    with pytest.raises(tex.ExprError, match="emit: expected a statement .*got Binary"):
        ib.emit(tex.var("n") + 1)
    with pytest.raises(tex.ExprError, match="else_scope must follow an if_scope"):
        with ib.else_scope():
            pass
    with pytest.raises(tex.ExprError, match="kind must be one of"):
        with ib.for_range(0, 4, kind="bound"):
            pass
    buf = ib.allocate("float32", (4, 4), name="buf")
    with pytest.raises(tex.ExprError, match="buf: 2 index\\(es\\) expected, got 1"):
        buf[0] = 1.0


# --- declarations and calls: errors ------------------------------------------------------------

def test_decl_tensor_intrin_checks_its_binds():
    _, (a, b, c) = add_intrin(4, lambda ins, outs: None)
    stranger = tex.placeholder((4,), name="x")
    lower = lambda ins, outs: None  # noqa: E731
    with pytest.raises(tex.ScheduleError, match=r"decl_tensor_intrin c: binds has 'x', which "
                       r"is none of the intrinsic's tensors \(a, b, c\)"):
        tex.decl_tensor_intrin(c.op, lower, binds={stranger: tir.decl_buffer((4,))})
    with pytest.raises(tex.ScheduleError, match=r"binds\[a\] must come from "
                       "tex.tir.decl_buffer"):
        tex.decl_tensor_intrin(c.op, lower, binds={a: "A"})
    with pytest.raises(tex.ScheduleError, match=r"buffer B is declared float32\(8\) for "
                       r"tensor b, which is float32\(4\)"):
        tex.decl_tensor_intrin(c.op, lower, binds={b: tir.decl_buffer((8,), name="B")})
    with pytest.raises(tex.ScheduleError, match="default_buffer_params .*offset_factr"):
        tex.decl_tensor_intrin(c.op, lower, default_buffer_params={"offset_factr": 1})
    with pytest.raises(tex.ScheduleError, match="scalar_params must be variables"):
        tex.decl_tensor_intrin(c.op, lower, scalar_params=[3])


def test_decl_buffer_and_call_extern_argument_errors():
    with pytest.raises(tex.ExprError, match="decl_buffer B: 2 dimension\\(s\\) but 1 stride"):
        tir.decl_buffer((4, 4), name="B", strides=[1])
    with pytest.raises(tex.ExprError, match="decl_buffer B: data, buffer_type and "
                       "axis_separators are not supported"):
        tir.decl_buffer((4,), name="B", data=tex.var("p"))
    with pytest.raises(tex.ExprError, match="function name must be a C identifier"):
        tir.call_extern("int32", "my-func")
    with pytest.raises(tex.ExprError, match="call_extern f: argument 1 must be an access "
                       "pointer .*got str"):
        tir.call_extern("int32", "f", 1, "two")


def test_a_bad_access_mask_names_the_stage():
    intrin, _ = add_intrin(4, lambda ins, outs: tir.call_extern(
        "void", "f", outs[0].access_ptr("x")))
    A, B, C = elementwise((8,))
    s = tex.create_schedule(C.op)
    s[C].tensorize(s[C].split(C.op.axis[0], factor=4)[1], intrin)
    with pytest.raises(tex.LoweringError, match="stage C, axis i0_inner: access_ptr of c: the "
                       "access mask must be 'r', 'w', 'rw'"):
        tex.lower(s, [A, B, C])


def test_a_function_nothing_defines_is_a_build_error():
    s, args = gemv_schedule(imports=None)
    with pytest.raises(tex.BuildError, match="calls gemv_update, which neither tex nor this"):
        tex.build(s, args)


def test_import_pragma_errors():
    s, args = gemv_schedule(imports="int gemv_update(float *cc) { return 0; }")
    with pytest.raises(tex.BuildError, match="the value of pragma import_llvm is not an LLVM "
                       "IR module"):
        tex.build(s, args)
    five = GEMV_IR.replace(", i32 %stride)", ")").replace("%i, %stride", "%i, 64")
    s, args = gemv_schedule(imports=five)
    with pytest.raises(tex.BuildError, match=r"call_extern gemv_update: 6 argument\(s\) "
                       r"passed, the function takes 5"):
        tex.build(s, args)
    s, args = gemv_schedule(imports=None)
    s[args[2]].pragma(s[args[2]].leaf_iter_vars[0], "import_c", GEMV_CUDA)
    with pytest.raises(tex.BuildError, match="pragma import_c gives C source, which tex "
                       "compiles for CUDA targets only"):
        tex.build(s, args)
    with pytest.raises(tex.ScheduleError, match="pragma import_llvm on stage C, axis i: the "
                       "value must be the module's text, got None"):
        s[args[2]].pragma(s[args[2]].leaf_iter_vars[0], "import_llvm")


def test_scalar_params_are_passed_and_must_be_sizes_of_the_kernel():
    """The intrinsic gets its scalar parameters third; tensorize binds them to nothing, so
    one that is no size of the kernel is refused."""
    def lower(ins, outs, params):
        (aa, bb), (cc,) = ins, outs
        return tir.call_extern("void", "add_rows", cc.access_ptr("w"), aa.access_ptr("r"),
                               bb.access_ptr("r"), params[0] // params[0], 4)
    n = tex.var("n")
    A, B, C = elementwise((n, 4))
    for param, works in ((n, True), (tex.var("m"), False)):
        s = tex.create_schedule(C.op)
        s[C].tensorize(C.op.axis[1], add_intrin(4, lower, scalar_params=[param])[0])
        s[C].pragma(C.op.axis[0], "import_llvm", ADD_ROWS_IR)
        if works:
            a, b = random_array((3, 4)), random_array((3, 4))
            check(s, [A, B, C], [a, b], a + b)
        else:
            with pytest.raises(tex.LoweringError, match="variable m is used"):
                tex.lower(s, [A, B, C])


# --- CUDA --------------------------------------------------------------------------------------

def gemv_cuda_schedule():
    s, args = gemv_schedule(imports=None, L=16)
    C = args[2]
    x, yo = s[C].leaf_iter_vars[:2]
    s[C].bind(x, tex.thread_axis("blockIdx.x"))
    s[C].bind(yo, tex.thread_axis("threadIdx.x"))
    s[C].pragma(yo, "import_c", GEMV_CUDA)
    return s, args


@pytest.mark.parametrize("run", RUNS)
def test_gemv_for_cuda_calls_the_imported_device_function(run):
    s, args = gemv_cuda_schedule()
    kernel = tex.build(s, args, target="cuda")
    source = kernel.get_source("cuda")
    assert source.index("__device__ int gemv_update(") < source.index("__global__")
    assert "gemv_update((float*)&C[" in source
    a, b = random_array((8, 16)), random_array((48, 16))
    c = np.zeros((8, 48), "float32")
    kernel(a, b, c) if run == "call" else kernel.simulate(a, b, c)
    np.testing.assert_allclose(c, a @ b.T, rtol=1e-4, atol=1e-4)


def test_an_llvm_module_cannot_be_imported_into_a_cuda_kernel():
    s, args = gemv_cuda_schedule()
    s[args[2]].pragma(s[args[2]].leaf_iter_vars[0], "import_llvm", GEMV_IR)
    with pytest.raises(tex.BuildError, match="pragma import_llvm gives a module for CPU "
                       "targets; a CUDA kernel takes CUDA C source, with pragma import_c"):
        tex.build(s, args, target="cuda")
