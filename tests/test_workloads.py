"""Whole operators: the GEMM-on-CPU walk, a padded conv2d, softmax, argmax, layer norm."""
import numpy as np
import pytest

import tex
from checks import check, random_array

M, N, K = 67, 130, 45  # none divides the tile sizes used below


def matmul_decl(packed_width=None):
    A = tex.placeholder((M, K), name="A")
    B = tex.placeholder((K, N), name="B")
    k = tex.reduce_axis((0, K), name="k")
    if packed_width is None:
        C = tex.compute((M, N), lambda i, j: tex.sum(A[i, k] * B[k, j], axis=k), name="C")
        return A, B, C, k, None
    w = packed_width
    P = tex.compute(((N + w - 1) // w, K, w),
                    lambda jo, kk, ji: tex.if_then_else(jo * w + ji < N, B[kk, jo * w + ji], 0.0),
                    name="B_packed")
    C = tex.compute((M, N), lambda i, j: tex.sum(A[i, k] * P[j // w, k, j % w], axis=k),
                    name="C")
    return A, B, C, k, P


def gemm_schedule(step):
    """The steps of the classic walk; each adds one idea to the one before."""
    A, B, C, k, P = matmul_decl(16 if step in ("packing", "write_cache", "parallel") else None)
    s = tex.create_schedule(C.op)
    if step == "default":
        return s, [A, B, C]
    CC = s.cache_write(C, "local") if step in ("write_cache", "parallel") else None
    io, jo, ii, ji = s[C].tile(C.op.axis[0], C.op.axis[1], 8, 16)
    if CC is None:
        ko, ki = s[C].split(k, factor=4)
        if step == "blocking":
            return s, [A, B, C]
        s[C].reorder(io, jo, ko, ii, ki, ji) if step != "vectorize" else None
        s[C].vectorize(ji)
        if step in ("vectorize", "permutation"):
            return s, [A, B, C]
        s[C].unroll(ki)
        s[P].vectorize(P.op.axis[2])
        return s, [A, B, C]
    s[CC].compute_at(s[C], jo)
    ic, jc = s[CC].op.axis
    kc, = s[CC].op.reduce_axis
    ko, ki = s[CC].split(kc, factor=4)
    s[CC].reorder(ko, ic, ki, jc)
    s[CC].unroll(ki)
    s[CC].vectorize(jc)
    s[C].vectorize(ji)
    s[P].vectorize(P.op.axis[2])
    if step == "parallel":
        s[C].parallel(io)
        s[P].parallel(P.op.axis[0])
    return s, [A, B, C]


@pytest.mark.parametrize("step", ["default", "blocking", "vectorize", "permutation", "packing",
                                  "write_cache", "parallel"])
def test_gemm_walk(step):
    s, args = gemm_schedule(step)
    a, b = random_array((M, K)), random_array((K, N))
    check(s, args, [a, b], a @ b, rtol=1e-4, atol=1e-4)


def test_gemm_float64_and_int32():
    for dtype in ("float64", "int32"):
        A = tex.placeholder((M, K), dtype, name="A")
        B = tex.placeholder((K, N), dtype, name="B")
        k = tex.reduce_axis((0, K), name="k")
        C = tex.compute((M, N), lambda i, j: tex.sum(A[i, k] * B[k, j], axis=k), name="C")
        s = tex.create_schedule(C.op)
        s[C].split(C.op.axis[1], factor=8)
        a, b = random_array((M, K), dtype), random_array((K, N), dtype)
        check(s, [A, B, C], [a, b], a @ b, rtol=1e-10)


def conv2d_decl(n, c, h, w, kf, r, pad):
    X = tex.placeholder((n, c, h, w), name="X")
    W = tex.placeholder((kf, c, r, r), name="W")
    hp, wp = h + 2 * pad, w + 2 * pad
    Xp = tex.compute((n, c, hp, wp), lambda b, ci, y, x: tex.if_then_else(
        tex.all(y >= pad, y < h + pad, x >= pad, x < w + pad),
        X[b, ci, y - pad, x - pad], 0.0), name="X_pad")
    rc = tex.reduce_axis((0, c), name="rc")
    ry, rx = tex.reduce_axis((0, r), name="ry"), tex.reduce_axis((0, r), name="rx")
    ho, wo = hp - r + 1, wp - r + 1
    Y = tex.compute((n, kf, ho, wo), lambda b, f, y, x: tex.sum(
        Xp[b, rc, y + ry, x + rx] * W[f, rc, ry, rx], axis=[rc, ry, rx]), name="Y")
    return X, W, Xp, Y


def conv2d_reference(x, w, pad):
    n, c, h, wd = x.shape
    kf, _, r, _ = w.shape
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    ho, wo = h + 2 * pad - r + 1, wd + 2 * pad - r + 1
    out = np.zeros((n, kf, ho, wo))
    for dy in range(r):
        for dx in range(r):
            patch = xp[:, :, dy:dy + ho, dx:dx + wo]
            out += np.einsum("nchw,kc->nkhw", patch, w[:, :, dy, dx])
    return out


@pytest.mark.parametrize("padding", ["inline", "compute_at"])
def test_conv2d_with_padding(padding):
    X, W, Xp, Y = conv2d_decl(1, 5, 13, 11, 6, 3, 1)
    s = tex.create_schedule(Y.op)
    b, f, y, x = Y.op.axis
    xo, xi = s[Y].split(x, factor=8)
    s[Y].reorder(b, f, y, xo, *Y.op.reduce_axis, xi)
    s[Y].vectorize(xi)
    s[Y].parallel(f)
    if padding == "inline":
        s[Xp].compute_inline()
    else:
        s[Xp].compute_at(s[Y], y)
    x_np, w_np = random_array((1, 5, 13, 11)), random_array((6, 5, 3, 3))
    check(s, [X, W, Y], [x_np, w_np], conv2d_reference(x_np, w_np, 1), rtol=1e-4, atol=1e-4)


def softmax_decl(n, m):
    A = tex.placeholder((n, m), name="A")
    k1, k2 = tex.reduce_axis((0, m), name="k1"), tex.reduce_axis((0, m), name="k2")
    row_max = tex.compute((n,), lambda i: tex.max(A[i, k1], axis=k1), name="row_max")
    e = tex.compute((n, m), lambda i, j: tex.exp(A[i, j] - row_max[i]), name="e")
    row_sum = tex.compute((n,), lambda i: tex.sum(e[i, k2], axis=k2), name="row_sum")
    out = tex.compute((n, m), lambda i, j: e[i, j] / row_sum[i], name="softmax")
    return A, row_max, e, row_sum, out


def softmax_reference(a):
    e = np.exp(a - a.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


@pytest.mark.parametrize("fused", [False, True])
def test_softmax_pipeline(fused):
    n = tex.var("n")
    A, row_max, e, row_sum, out = softmax_decl(n, 100)
    s = tex.create_schedule(out.op)
    i, j = out.op.axis
    jo, ji = s[out].split(j, factor=16)
    s[out].vectorize(ji)
    s[out].parallel(i)
    if fused:
        for stage in (row_max, e, row_sum):
            s[stage].compute_at(s[out], i)
        ei, ej = e.op.axis
        s[e].vectorize(s[e].split(ej, factor=16)[1])
    a = random_array((37, 100)) * 3
    check(s, [A, out], [a], softmax_reference(a), rtol=1e-5, atol=1e-6)


def argmax_decl(n, m):
    """(A, index, value, k): the position and value of each row's maximum, a tuple reducer."""
    def combine(x, y):
        take_left = x[1] >= y[1]
        return tex.if_then_else(take_left, x[0], y[0]), tex.if_then_else(take_left, x[1], y[1])

    def identity(index_dtype, value_dtype):
        return tex.const(-1, index_dtype), tex.min_value(value_dtype)
    argmax = tex.comm_reducer(combine, identity, name="argmax")
    A = tex.placeholder((n, m), name="A")
    k = tex.reduce_axis((0, m), name="k")
    index, value = tex.compute((n,), lambda i: argmax((tex.cast("int32", k), A[i, k]), axis=k),
                               name="T")
    return A, index, value, k


def test_argmax_tuple_reducer():
    A, index, value, k = argmax_decl(37, 129)
    s = tex.create_schedule(index.op)
    s[index.op].split(k, factor=16)
    a = random_array((37, 129))
    check(s, [A, index, value], [a], (a.argmax(1).astype(np.int32), a.max(1)))


def test_argmax_rfactor():
    A, index, value, k = argmax_decl(9, 100)
    s = tex.create_schedule(index.op)
    ko, ki = s[index.op].split(k, factor=8)
    s.rfactor(index, ki)
    a = random_array((9, 100))
    got_index, got_value = tex.build(s, [A, index, value])(a)
    np.testing.assert_array_equal(got_value, a.max(1))
    np.testing.assert_array_equal(a[np.arange(9), got_index], a.max(1))


def test_layernorm_chain():
    n, m = 19, 70
    A = tex.placeholder((n, m), name="A")
    k1, k2 = tex.reduce_axis((0, m), name="k1"), tex.reduce_axis((0, m), name="k2")
    total = tex.compute((n,), lambda i: tex.sum(A[i, k1], axis=k1), name="total")
    mean = tex.compute((n,), lambda i: total[i] / m, name="mean")
    sq = tex.compute((n,), lambda i: tex.sum((A[i, k2] - mean[i]) * (A[i, k2] - mean[i]),
                                              axis=k2), name="sq")
    out = tex.compute((n, m), lambda i, j: (A[i, j] - mean[i]) * tex.rsqrt(sq[i] / m + 1e-5),
                      name="out")
    s = tex.create_schedule(out.op)
    s[mean].compute_inline()
    for stage in (total, sq):
        s[stage].compute_at(s[out], out.op.axis[0])
    s[out].parallel(out.op.axis[0])
    a = random_array((n, m))
    ref = (a - a.mean(1, keepdims=True)) / np.sqrt(a.var(1, keepdims=True) + 1e-5)
    check(s, [A, out], [a], ref, rtol=1e-4, atol=1e-4)


def test_multi_output_elementwise_compute():
    A = tex.placeholder((37, 5), name="A")
    total, diff = tex.compute((37, 5), lambda i, j: (A[i, j] + 1.0, A[i, j] - 1.0), name="T")
    s = tex.create_schedule(total.op)
    s[total.op].split(total.op.axis[0], factor=8)
    a = random_array((37, 5))
    check(s, [A, total, diff], [a], (a + 1, a - 1))
