"""`tex.contrib.cblas`: matrix products by NumPy's BLAS as extern stages, against NumPy, with
each transposition, a symbolic size, consumers scheduled around them, and the packed
functions called by name (tex's and TVM's) as TE code does."""
import numpy as np
import pytest

import tex
from tex.contrib import cblas

RNG = np.random.default_rng(11)


def operand(shape, dtype):
    return RNG.uniform(-1, 1, shape).astype(dtype)


def op(x, trans):
    return np.swapaxes(x, -1, -2) if trans else x


@pytest.mark.parametrize("transa", [False, True])
@pytest.mark.parametrize("transb", [False, True])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_matmul_with_a_consumer_matches_numpy(transa, transb, dtype):
    n = tex.var("n")
    A = tex.placeholder((13, n) if transa else (n, 13), dtype, name="A")
    B = tex.placeholder((7, 13) if transb else (13, 7), dtype, name="B")
    bias = tex.var("bias", dtype)
    C = cblas.matmul(A, B, transa, transb)
    D = tex.compute(C.shape, lambda i, j: C[i, j] + bias, name="D")
    s = tex.create_schedule(D.op)
    outer, inner = s[D].split(D.op.axis[1], factor=4)
    s[D].vectorize(inner)
    f = tex.build(s, [A, B, D, bias])
    assert "call_packed('tex.contrib.cblas.matmul'" in str(tex.lower(s, [A, B, D, bias]))
    a = operand((13, 10) if transa else (10, 13), dtype)
    b = operand((7, 13) if transb else (13, 7), dtype)
    d = np.empty((10, 7), dtype)
    f(a, b, d, 2.5)
    rtol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(d, op(a, transa) @ op(b, transb) + 2.5, rtol=rtol, atol=rtol)


@pytest.mark.parametrize("transa, transb", [(False, False), (True, True), (False, True)])
def test_batch_matmul_matches_numpy(transa, transb):
    X = tex.placeholder((3, 9, 5) if transa else (3, 5, 9), name="X")
    Y = tex.placeholder((3, 6, 9) if transb else (3, 9, 6), name="Y")
    Z = cblas.batch_matmul(X, Y, transa, transb, name="Z")
    W = tex.compute(Z.shape, lambda b, i, j: tex.exp(Z[b, i, j]) * 0.5, name="W")
    f = tex.build(tex.create_schedule(W.op), [X, Y, W])
    x = operand((3, 9, 5) if transa else (3, 5, 9), "float32")
    y = operand((3, 6, 9) if transb else (3, 9, 6), "float32")
    np.testing.assert_allclose(f(x, y), np.exp(op(x, transa) @ op(y, transb)) * 0.5,
                               rtol=1e-5)


@pytest.mark.parametrize("name", ["tex.contrib.cblas.matmul", "tvm.contrib.cblas.matmul"])
def test_packed_function_called_by_name_as_te_code_does(name):
    assert tex.get_global_func(name, allow_missing=True) is not None
    A = tex.placeholder((11, 4), name="A")
    B = tex.placeholder((4, 9), name="B")
    C = tex.extern((11, 9), [A, B], lambda ins, outs: tex.call_packed(
        name, ins[0], ins[1], outs[0], False, False), name="C")
    f = tex.build(tex.create_schedule(C.op), [A, B, C])
    a, b = operand((11, 4), "float32"), operand((4, 9), "float32")
    np.testing.assert_allclose(f(a, b), a @ b, rtol=1e-5)


def test_wrong_operands_are_named():
    A = tex.placeholder((4, 5), name="A")
    with pytest.raises(tex.ExprError, match=r"matmul: the inner sizes differ: A \(4, 5\) "):
        cblas.matmul(A, tex.placeholder((4, 5), name="B"))
    with pytest.raises(tex.ExprError, match="float32 or float64, rhs I is int32"):
        cblas.matmul(A, tex.placeholder((5, 2), "int32", name="I"))
    with pytest.raises(tex.ExprError, match="lhs A is float32, rhs D float64"):
        cblas.matmul(A, tex.placeholder((5, 2), "float64", name="D"))
    with pytest.raises(tex.ExprError, match="batch_matmul: lhs must be a 3-D tensor"):
        cblas.batch_matmul(A, A)
    with pytest.raises(tex.ExprError, match="batch sizes differ"):
        cblas.batch_matmul(tex.placeholder((2, 4, 5), name="X"),
                           tex.placeholder((3, 5, 4), name="Y"))


def test_builds_for_cpu_targets_only():
    A = tex.placeholder((4, 5), name="A")
    C = cblas.matmul(A, tex.placeholder((5, 3), name="B"))
    with pytest.raises(tex.BuildError, match="stage C is an extern stage"):
        tex.build(tex.create_schedule(C.op), [A, C], "cuda")


def test_another_result_dtype_and_batches_of_different_sizes_are_refused():
    A, B = tex.placeholder((5, 6), name="A"), tex.placeholder((6, 7), name="B")
    with pytest.raises(tex.ExprError, match=r"the result has its operands' dtype, float32; "
                                            r"got dtype='int32'"):
        cblas.matmul(A, B, dtype="int32")
    b1, b2 = tex.var("b1"), tex.var("b2")
    X, Y = tex.placeholder((b1, 5, 9), name="X"), tex.placeholder((b2, 9, 6), name="Y")
    Z = cblas.batch_matmul(X, Y)
    f = tex.build(tex.create_schedule(Z.op), [X, Y, Z])
    x, y = np.ones((3, 5, 9), "float32"), np.ones((1, 9, 6), "float32")
    with pytest.raises(tex.PackedFuncError, match="the batch sizes differ, 3 and 1"):
        f(x, y, np.empty((3, 5, 6), "float32"))
