"""Tensor intrinsics called inside compute (TE's tensor compute op): `compute((m, 16),
lambda i: vadd(A[i, 0:16], B[i, 0:16]))` built for the CPU with the outer axes scheduled
(split by factors that do not divide, cache_read, cache_write, compute_at), reductions
around a gemv with reset and update, scalar inputs, variable extents; each checked
against NumPy (and the gemv for CUDA, in the simulator or on a GPU); and the errors of
a bad call."""
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

# vadd(c, a, b, n): c[t] = a[t] + b[t] for t < n, as clang would compile it.
VADD_IR = """
define void @vadd(ptr %c, ptr %a, ptr %b, i64 %n) {
entry:
  br label %loop
loop:
  %t = phi i64 [0, %entry], [%t.next, %body]
  %more = icmp slt i64 %t, %n
  br i1 %more, label %body, label %done
body:
  %a.at = getelementptr float, ptr %a, i64 %t
  %b.at = getelementptr float, ptr %b, i64 %t
  %c.at = getelementptr float, ptr %c, i64 %t
  %x = load float, ptr %a.at
  %y = load float, ptr %b.at
  %z = fadd float %x, %y
  store float %z, ptr %c.at
  %t.next = add i64 %t, 1
  br label %loop
done:
  ret void
}
"""


def vadd_extern(n, scope=None):
    """z = x + y on n floats, by the C function vadd (VADD_IR); with `scope`, the
    intrinsic declares its three tensors in that memory."""
    x, y = tex.placeholder((n,), name="x"), tex.placeholder((n,), name="y")
    z = tex.compute((n,), lambda i: x[i] + y[i], name="z")
    binds = {} if scope is None else {t: tir.decl_buffer(t.shape, t.dtype, name="W" + t.name,
                                                         scope=scope, offset_factor=16)
                                      for t in (x, y, z)}

    def intrin_func(ins, outs):
        ib = tir.ir_builder.create()
        ib.emit(tir.call_extern("void", "vadd", outs[0].access_ptr("w"), ins[0].access_ptr("r"),
                                ins[1].access_ptr("r"), n))
        return ib.get()
    return tex.decl_tensor_intrin(z.op, intrin_func, name="vadd", binds=binds)


def vadd_loop(n):
    """z = x + y on n floats (n may be a variable), as a loop of the IR builder."""
    x, y = tex.placeholder((n,), name="x"), tex.placeholder((n,), name="y")
    z = tex.compute((n,), lambda i: x[i] + y[i], name="z")

    def intrin_func(ins, outs):
        ib = tir.ir_builder.create()
        with ib.for_range(0, ins[0].shape[0], name="t") as t:
            ib.emit(outs[0].vstore(t, ins[0].vload(t) + ins[1].vload(t)))
        return ib.get()
    return tex.decl_tensor_intrin(z.op, intrin_func, name="vadd_loop",
                                  default_buffer_params={"offset_factor": 1})


def gemv_intrin(m, n, calls):
    """z[i] = sum_k w[i, k] * x[k] (m x n), its (body, reset, update) by the IR builder;
    `calls` counts which parts lowering asked for."""
    w, x = tex.placeholder((m, n), name="w"), tex.placeholder((n,), name="x")
    k = tex.reduce_axis((0, n), name="k")
    z = tex.compute((m,), lambda i: tex.sum(w[i, k] * x[k], axis=k), name="z")
    ldw = tex.var("ldw")
    Wb = tir.decl_buffer(w.shape, w.dtype, name="W", offset_factor=1, strides=[ldw, 1])

    def intrin_func(ins, outs):
        ww, xx = ins
        zz = outs[0]

        def update():
            ib = tir.ir_builder.create()
            with ib.for_range(0, m, name="r") as r:
                with ib.for_range(0, n, name="c") as c:
                    ib.emit(zz.vstore(r, zz.vload(r) + ww.vload((r, c)) * xx.vload(c)))
            return ib.get()

        def reset():
            ib = tir.ir_builder.create()
            with ib.for_range(0, m, name="r") as r:
                ib.emit(zz.vstore(r, tex.const(0.0, "float32")))
            return ib.get()
        calls.append(ww.strides[0])
        body = tir.ir_builder.create()
        body.emit(reset())
        body.emit(update())
        return body.get(), reset(), update()
    return tex.decl_tensor_intrin(z.op, intrin_func, name="gemv", binds={w: Wb})


# --- vadd over slices ---------------------------------------------------------------------

def test_vadd_over_slices_calls_the_function_with_the_outer_axis_split():
    """C[i, 0:16] = vadd(A[i, 0:16], B[i, 0:16]) over 10 rows, split by 3 (a guard)."""
    m = tex.var("m")
    A, B = tex.placeholder((m, 16), name="A"), tex.placeholder((m, 16), name="B")
    C = tex.compute((m, 16), lambda i: vadd_extern(16)(A[i, 0:16], B[i, 0:16]), name="C")
    assert [iv.name for iv in C.op.axis] == ["i", "ax0"] and C.shape[1].value == 16
    s = tex.create_schedule(C.op)
    assert "tensorize(ax0, vadd)" in str(s)
    io, ii = s[C].split(C.op.axis[0], factor=3)
    s[C].pragma(io, "import_llvm", VADD_IR)
    text = str(tex.lower(s, [A, B, C]))
    assert "call_extern('vadd', &C[i_outer * 48 + i_inner * 16], &A[i_outer * 48 + " \
        "i_inner * 16], &B[i_outer * 48 + i_inner * 16], 16)" in text
    assert "for ax0" not in text
    a, b = random_array((10, 16)), random_array((10, 16))
    check(s, [A, B, C], [a, b], a + b)


def test_slices_at_offsets_and_a_loop_body_with_compute_at_and_cache_read():
    """C[i, 0:8] = vadd(A[i + 1, 4:12], Bi[i, 0:8]) with Bi = B + 5 computed at C's row loop,
    A copied to a local cache there too, over 7 rows split by 2 and reordered."""
    A = tex.placeholder((8, 12), name="A")
    B = tex.placeholder((7, 8), name="B")
    Bi = tex.compute((7, 8), lambda i, j: B[i, j] + 5.0, name="Bi")
    vadd = vadd_loop(tex.var("n"))
    C = tex.compute((7, 8), lambda i: vadd(A[i + 1, 4:12], Bi[i, 0:8]), name="C")
    s = tex.create_schedule(C.op)
    AL = s.cache_read(A, "local", [C])
    io, ii = s[C].split(C.op.axis[0], factor=2)
    s[Bi].compute_at(s[C], ii)
    s[AL].compute_at(s[C], ii)
    text = str(tex.lower(s, [A, B, C]))
    assert "for t in range(8):" in text          # n bound to the slices' extent
    a, b = random_array((8, 12)), random_array((7, 8))
    check(s, [A, B, C], [a, b], a[1:, 4:12] + b + 5.0)


def test_cache_read_and_cache_write_in_local_buffers_the_intrinsic_declares():
    """TE's test: the intrinsic declares its tensors in "local" memory, so A and B are
    copied to local caches and C computed into one, then copied out."""
    vadd = vadd_extern(16, scope="local")
    A, B = tex.placeholder((6, 16), name="A"), tex.placeholder((6, 16), name="B")
    C = tex.compute((6, 16), lambda i: vadd(A[i, 0:16], B[i, 0:16]), name="C")
    s = tex.create_schedule(C.op)
    with pytest.raises(tex.LoweringError, match="is in 'global' memory, where decl_buffer "
                       "Wx declares 'local'"):
        tex.lower(s, [A, B, C])
    AL = s.cache_read(A, "local", C)
    BL = s.cache_read(B, "local", C)
    CL = s.cache_write(C, "local")
    assert "tensorize(ax0, vadd)" in "\n".join(s[CL].describe())
    assert "tensorize" not in "\n".join(s[C].describe())
    for t in (AL, BL, CL):
        s[t].compute_at(s[C], C.op.axis[0])
    s[C].pragma(C.op.axis[0], "import_llvm", VADD_IR)
    assert "call_extern('vadd', &C_local[0], &A_local[0], &B_local[0], 16)" in \
        str(tex.lower(s, [A, B, C]))
    a, b = random_array((6, 16)), random_array((6, 16))
    check(s, [A, B, C], [a, b], a + b)


def test_splitting_an_inner_axis_computes_the_body_without_the_intrinsic():
    m = 5
    A, B = tex.placeholder((m, 16), name="A"), tex.placeholder((m, 16), name="B")
    C = tex.compute((m, 16), lambda i: vadd_extern(16)(A[i, 0:16], B[i, 0:16]), name="C")
    s = tex.create_schedule(C.op)
    s[C].split(C.op.axis[1], factor=4)
    assert "call_extern" not in str(tex.lower(s, [A, B, C]))
    a, b = random_array((m, 16)), random_array((m, 16))
    check(s, [A, B, C], [a, b], a + b)


# --- gemv over reduction axes outside the intrinsic --------------------------------------

def gemv_compute(N=5, M=3, L=4, factor=8, rfactor=4):
    """C[i, j, 0:8] = sum over k of gemv(A[i, k, 0:8, 0:4], B[j, k, 0:4]), TE's test's
    layout, with C[i, j, r] = sum_k,c A[i, k, r, c] * B[j, k, c]."""
    A = tex.placeholder((N, L, factor, rfactor), name="A")
    B = tex.placeholder((M, L, rfactor), name="B")
    k = tex.reduce_axis((0, L), name="k")
    calls = []
    gemv = gemv_intrin(factor, rfactor, calls)
    C = tex.compute((N, M, factor), lambda i, j: gemv(A[i, k, 0:factor, 0:rfactor],
                                                      B[j, k, 0:rfactor], reduce_axis=k),
                    name="C")
    return A, B, C, calls


def gemv_reference(a, b):
    return np.einsum("ikrc,jkc->ijr", a, b)


def test_gemv_with_reduce_axis_resets_then_updates_around_the_reduction():
    A, B, C, calls = gemv_compute()
    assert [iv.name for iv in C.op.axis] == ["i", "j", "ax0"]
    s = tex.create_schedule(C.op)
    assert [v.name for v in s[C].leaf_iter_vars] == ["i", "j", "k", "ax0", "k"]
    ai, aj, _ = C.op.axis
    aio, aii = s[C].split(ai, 2)
    s[C].reorder(aio, aj, aii)
    text = str(tex.lower(s, [A, B, C]))
    assert text.index("= 0.0") < text.index("for k in range(4)") < \
        text.index("for c in range(4)"), text          # reset, then update in the k loop
    assert [str(stride) for stride in calls] == ["4"]   # ldw bound to A's row stride
    guarded = tex.lower(s, [A, B, C]).body.body.body.body.then_body
    assert len(guarded) == 2 and guarded[1].var.name == "k"   # TVM's SeqStmt indexing
    a, b = random_array((5, 4, 8, 4)), random_array((3, 4, 4))
    check(s, [A, B, C], [a, b], gemv_reference(a, b), rtol=1e-4, atol=1e-4)


def test_gemv_outer_axes_tiled_and_the_body_used_without_outer_reduction():
    A, B, C, _ = gemv_compute(N=7, M=5)
    s = tex.create_schedule(C.op)
    io, jo, ii, ji = s[C].tile(C.op.axis[0], C.op.axis[1], 3, 2)
    s[C].parallel(io)
    a, b = random_array((7, 4, 8, 4)), random_array((5, 4, 4))
    check(s, [A, B, C], [a, b], gemv_reference(a, b), rtol=1e-4, atol=1e-4)
    # without reduce_axis the intrinsic reduces alone: its body computes each tile
    A1 = tex.placeholder((7, 8, 4), name="A1")
    B1 = tex.placeholder((5, 4), name="B1")
    gemv = gemv_intrin(8, 4, [])
    C1 = tex.compute((7, 5, 8), lambda i, j: gemv(A1[i, 0:8, 0:4], B1[j, 0:4]), name="C1")
    s1 = tex.create_schedule(C1.op)
    a1, b1 = random_array((7, 8, 4)), random_array((5, 4))
    check(s1, [A1, B1, C1], [a1, b1], np.einsum("irc,jc->ijr", a1, b1), rtol=1e-4,
          atol=1e-4)


def test_gemv_cache_write_moves_the_intrinsic_to_the_cache_computed_at_a_split_row():
    A, B, C, _ = gemv_compute()
    s = tex.create_schedule(C.op)
    CL = s.cache_write(C, "local")
    io, _ = s[C].split(C.op.axis[0], 2)
    s[CL].compute_at(s[C], io)
    assert "tensorize(ax0, gemv)" in "\n".join(s[CL].describe())
    text = str(tex.lower(s, [A, B, C]))
    assert "C_local = allocate(float32[48], 'local')" in text
    a, b = random_array((5, 4, 8, 4)), random_array((3, 4, 4))
    check(s, [A, B, C], [a, b], gemv_reference(a, b), rtol=1e-4, atol=1e-4)


# --- scalar inputs and variable extents -----------------------------------------------------

def axpb_intrin():
    """z[i] = x[i] * v + w over (n,), v and w scalar parameters: the lower_fn gets them as
    its third argument and lowering binds them to the call's scalar inputs."""
    n = tex.var("n")
    x = tex.placeholder((n,), name="x")
    v, w = tex.var("v", "float32"), tex.var("w", "float32")
    z = tex.compute((n,), lambda i: x[i] * v + w, name="z")
    seen = []

    def intrin_func(ins, outs, sp):
        seen.append((isinstance(ins[0], tex.schedule.Buffer), ins[0].shape[0] is n,
                     tuple(sp) == (v, w)))
        ib = tir.ir_builder.create()
        with ib.for_range(0, n, name="t") as t:
            ib.emit(outs[0].vstore(t, ins[0].vload(t) * sp[0] + sp[1]))
        return ib.get()
    intrin = tex.decl_tensor_intrin(z.op, intrin_func, scalar_params=[v, w],
                                    default_buffer_params={"offset_factor": 1})
    return intrin, seen


def test_scalar_inputs_are_bound_to_the_scalar_params():
    intrin, seen = axpb_intrin()
    A = tex.placeholder((6, 10), name="A")
    C = tex.compute((6, 10), lambda i: intrin(i.astype("float32") * 2.0, A[i, 0:10], 1.5),
                    name="C")
    s = tex.create_schedule(C.op)
    text = str(tex.lower(s, [A, C]))
    assert seen == [(True, True, True)]
    assert "for t in range(10):" in text             # n bound to 10
    a = random_array((6, 10))
    check(s, [A, C], [a], a * (np.arange(6, dtype="float32")[:, None] * 2.0) + 1.5)
    # scalar_inputs= gives them instead; a whole-row region, no trailing axes (TE's test)
    D = tex.compute((6, 10), lambda i, j: intrin(A[i, j], scalar_inputs=[
        (i * i).astype("float32"), (i + j).astype("float32")]), name="D")
    s = tex.create_schedule(D.op)
    assert "tensorize(body, z)" in str(s)
    ii, jj = np.meshgrid(np.arange(6), np.arange(10), indexing="ij")
    check(s, [A, D], [a], a * (ii * ii) + (ii + jj))


def test_tensorize_matches_a_scalar_param_with_any_expression_the_tile_keeps():
    intrin, _ = axpb_intrin()
    A = tex.placeholder((4, 8), name="A")
    C = tex.compute((4, 8), lambda i, j: A[i, j] * 3.0 + i.astype("float32"), name="C")
    s = tex.create_schedule(C.op)
    s[C].tensorize(C.op.axis[1], intrin)
    a = random_array((4, 8))
    check(s, [A, C], [a], a * 3.0 + np.arange(4, dtype="float32")[:, None])
    D = tex.compute((4, 8), lambda i, j: A[i, j] * 3.0 + j.astype("float32"), name="D")
    s = tex.create_schedule(D.op)
    s[D].tensorize(D.op.axis[1], intrin)
    with pytest.raises(tex.LoweringError, match="scalar parameter w stands for `float32\\(j\\)`"
                       ", which changes along loop j inside the tile"):
        tex.lower(s, [A, D])


def test_tensorize_with_index_expressions_the_intrinsic_shares():
    """TE's test_tensorize_op: the intrinsic reads x[j // 3 + i % 3, j % 3 + i // 3]; the
    stage reads A the same way, shifted by its row block."""
    x = tex.placeholder((5, 5), name="x")
    y = tex.compute((9, 9), lambda i, j: x[j // 3 + i % 3, j % 3 + i // 3], name="y")

    def intrin_func(ins, outs):
        ib = tir.ir_builder.create()
        with ib.for_range(0, 9, name="r") as r:
            with ib.for_range(0, 9, name="c") as c:
                ib.emit(outs[0].vstore((r, c), ins[0].vload((c // 3 + r % 3, c % 3 + r // 3))))
        return ib.get()
    intrin = tex.decl_tensor_intrin(y.op, intrin_func, name="op")
    A = tex.placeholder((2, 5, 5), name="A")
    B = tex.compute((2, 9, 9), lambda b, i, j: A[b, j // 3 + i % 3, j % 3 + i // 3], name="B")
    s = tex.create_schedule(B.op)
    s[B].tensorize(B.op.axis[1], intrin)
    a = random_array((2, 5, 5))
    i, j = np.meshgrid(np.arange(9), np.arange(9), indexing="ij")
    check(s, [A, B], [a], a[:, j // 3 + i % 3, j % 3 + i // 3])
    C = tex.compute((9, 9), lambda i, j: A[0, j // 3 + i % 3, j % 3], name="C")
    s = tex.create_schedule(C.op)
    s[C].tensorize(C.op.axis[0], intrin)
    with pytest.raises(tex.LoweringError, match="index 2 of A\\[0, .*\\) is not the "
                       "intrinsic's"):
        tex.lower(s, [A, C])


# --- errors --------------------------------------------------------------------------------

def test_bad_calls_name_the_compute_and_what_was_expected():
    vadd = vadd_extern(16)
    A, B = tex.placeholder((4, 16), name="A"), tex.placeholder((4, 16), name="B")
    with pytest.raises(tex.ExprError, match=r"compute C: region A\[i, 0:8\] for vadd's tensor "
                       r"x: dimension 1 has extent 8, where the intrinsic's has 16"):
        tex.compute((4, 16), lambda i: vadd(A[i, 0:8], B[i, 0:8]), name="C")
    with pytest.raises(tex.ExprError, match=r"compute C: intrinsic vadd takes 2 tensor "
                       r"region\(s\) \(x, y\), got 1"):
        tex.compute((4, 16), lambda i: vadd(A[i, 0:16]), name="C")
    with pytest.raises(tex.ExprError, match=r"compute C: the trailing dimensions of its "
                       r"shape, for vadd's output z: dimension 0 has extent 8"):
        tex.compute((4, 8), lambda i: vadd(A[i, 0:16], B[i, 0:16]), name="C")
    with pytest.raises(tex.ExprError, match=r"compute C: reduce_axis is given, but intrinsic "
                       "vadd does not reduce"):
        k = tex.reduce_axis((0, 4), name="k")
        tex.compute((4, 16), lambda i: vadd(A[k, 0:16], B[i, 0:16], reduce_axis=k), name="C")
    with pytest.raises(tex.ExprError, match=r"compute C: the shape has 2 dimension\(s\) but "
                       r"the function takes 1 index argument\(s\)"):
        tex.compute((4, 16), lambda i: A[i, 0], name="C")
    with pytest.raises(tex.ExprError, match=r"compute C: intrinsic vadd takes 0 scalar "
                       r"input\(s\) \(none\), got 1"):
        tex.compute((4, 16), lambda i: vadd(A[i, 0:16], B[i, 0:16], 2.0), name="C")
    with pytest.raises(tex.ExprError, match=r"A\[i, 0:4\] is a region of tensor A \(it has "
                       r"slices\), not a value"):
        tex.compute((4, 4), lambda i, j: A[i, 0:4] + 1.0, name="C")
    with pytest.raises(tex.ExprError, match=r"region A\[0:4, 0:16\] for vadd's tensor x: "
                       r"dimension 0 has extent 4; only the last 1 dimension"):
        tex.compute((4, 16), lambda i: vadd(A[0:4, 0:16], B[i, 0:16]), name="C")


def test_a_reduce_axis_must_index_a_region():
    A, B, C, _ = gemv_compute()
    gemv = gemv_intrin(8, 4, [])
    k = tex.reduce_axis((0, 4), name="k")
    with pytest.raises(tex.ExprError, match=r"compute D: reduce_axis k indexes none of the "
                       r"regions .*; the intrinsic is applied along it"):
        tex.compute((5, 3, 8), lambda i, j: gemv(A[i, 0, 0:8, 0:4], B[j, 0, 0:4],
                                                 reduce_axis=k), name="D")
    with pytest.raises(tex.ExprError, match="reduce_axis must be axes made with "
                       "tex.reduce_axis"):
        tex.compute((5, 3, 8), lambda i, j: gemv(A[i, 0, 0:8, 0:4], B[j, 0, 0:4],
                                                 reduce_axis=C.op.axis[0]), name="D")


# --- packed calls of Python functions from an intrinsic ------------------------------------

def test_call_packed_takes_access_pointers_and_compact_tiles():
    """vadd by a Python function: access pointers arrive as 1-d arrays from the tile's first
    element on; a compact tile (a whole row here) as an array of its shape."""
    @tex.register_func("test_tensor_compute.vadd", override=True)
    def vadd_py(c, a, b, n):
        c[:n] = a[:n] + b[:n]

    @tex.register_func("test_tensor_compute.vadd_tiles", override=True)
    def vadd_tiles(c, a, b):
        assert c.shape == (16,)
        c[:] = a + b

    def intrin(tiles):
        x, y = tex.placeholder((16,), name="x"), tex.placeholder((16,), name="y")
        z = tex.compute((16,), lambda i: x[i] + y[i], name="z")

        def intrin_func(ins, outs):
            if tiles:
                return tex.call_packed("test_tensor_compute.vadd_tiles", outs[0], *ins)
            return tex.call_packed("test_tensor_compute.vadd", outs[0].access_ptr("w"),
                                   ins[0].access_ptr("r"), ins[1].access_ptr("r"), 16)
        return tex.decl_tensor_intrin(z.op, intrin_func)
    A, B = tex.placeholder((5, 16), name="A"), tex.placeholder((5, 16), name="B")
    a, b = random_array((5, 16)), random_array((5, 16))
    for tiles in (False, True):
        vadd = intrin(tiles)
        C = tex.compute((5, 16), lambda i: vadd(A[i, 0:16], B[i, 0:16]), name="C")
        s = tex.create_schedule(C.op)
        call = tex.lower(s, [A, B, C]).body.body
        assert isinstance(call, tir.Evaluate)  # a call
        assert str(call).startswith("call_packed('test_tensor_compute.vadd" + (
            "_tiles', &C[i * 16], &A[i * 16]" if tiles else "', &C[i * 16], &A[i * 16]"))
        check(s, [A, B, C], [a, b], a + b)
    # a 2 x 4 tile of 8-float rows is not compact
    x2 = tex.placeholder((2, 4), name="x2")
    z2 = tex.compute((2, 4), lambda i, j: x2[i, j] * 2.0, name="z2")
    double = tex.decl_tensor_intrin(z2.op, lambda ins, outs: tex.call_packed(
        "test_tensor_compute.vadd_tiles", outs[0], ins[0], ins[0]))
    A2 = tex.placeholder((3, 2, 8), name="A2")
    C2 = tex.compute((3, 2, 4), lambda i: double(A2[i, 0:2, 4:8]), name="C2")
    with pytest.raises(tex.LoweringError, match=r"call_packed 'test_tensor_compute.vadd_tiles'"
                       r": argument 1, the tile of A2, has strides \(8, 1\), not those of a "
                       r"compact array of shape \(2, 4\)"):
        tex.lower(tex.create_schedule(C2.op), [A2, C2])


# --- CUDA ---------------------------------------------------------------------------------

@pytest.mark.parametrize("run", RUNS)
def test_gemv_calls_for_cuda_with_the_outer_axes_bound_to_threads(run):
    A, B, C, _ = gemv_compute(N=6, M=5)
    s = tex.create_schedule(C.op)
    i, j, _ = C.op.axis
    s[C].bind(i, tex.thread_axis("blockIdx.x"))
    s[C].bind(j, tex.thread_axis("threadIdx.x"))
    kernel = tex.build(s, [A, B, C], target="cuda")
    a, b = random_array((6, 4, 8, 4)), random_array((5, 4, 4))
    c = np.zeros((6, 5, 8), "float32")
    kernel(a, b, c) if run == "call" else kernel.simulate(a, b, c)
    np.testing.assert_allclose(c, gemv_reference(a, b), rtol=1e-4, atol=1e-4)


def test_a_scalar_input_the_intrinsics_computation_does_not_use_still_reaches_its_code():
    """The intrinsic's code multiplies by its parameter v, its computation does not: the
    call's 5.0 is what v stands for."""
    n = 8
    x = tex.placeholder((n,), name="x")
    v = tex.var("v", "float32")
    z = tex.compute((n,), lambda i: x[i] * 2.0, name="z")

    def intrin_func(ins, outs, scalars):
        ib = tex.tir.ir_builder.create()
        with ib.for_range(0, n, name="t") as t:
            ib.emit(outs[0].vstore(t, ins[0].vload(t) * scalars[0]))
        return ib.get()
    scale = tex.decl_tensor_intrin(z.op, intrin_func, scalar_params=[v])
    A = tex.placeholder((5, n), name="A")
    C = tex.compute((5, n), lambda i: scale(A[i, 0:n], 5.0), name="C")
    s = tex.create_schedule(C.op)
    a = random_array((5, n))
    check(s, [A, C], [a], a * 5.0)


@pytest.mark.parametrize("region, message", [
    (lambda A, F, i: A[i, 8:24], r"slice 8:24 of dimension 1 runs past its extent 16"),
    (lambda A, F, i: A[1.5, 0:16], r"index 0 of a region must be a scalar integer, got 1.5"),
    (lambda A, F, i: A[F[i], 0:16], r"index 0 of a region must be a scalar integer, got F\[i\]"),
    (lambda A, F, i: A[i, 0.5:16.5], r"index 1 of a region must be a scalar integer")])
def test_regions_are_checked_as_reads_are(region, message):
    A, B = tex.placeholder((4, 16), name="A"), tex.placeholder((4, 16), name="B")
    F = tex.placeholder((4,), name="F")
    vadd = vadd_loop(16)
    with pytest.raises(tex.ExprError, match=message):
        tex.compute((4, 16), lambda i: vadd(region(A, F, i), B[i, 0:16]), name="C")


def test_a_reduce_axis_given_twice_is_refused():
    A = tex.placeholder((5, 4), name="A")
    k = tex.reduce_axis((0, 4), name="k")
    with pytest.raises(tex.ExprError, match="reduce axis k is given twice"):
        tex.compute((5,), lambda i: tex.sum(A[i, k], axis=[k, k]), name="C")
