"""What porting TE code to tex needs: programs TE accepts, compiled and compared with NumPy."""
import numpy as np
import pytest

import tex
from checks import check, random_array


def test_a_zero_dimensional_intermediate_stage():
    A = tex.placeholder((7,), "float32", name="A")
    k = tex.reduce_axis((0, 7), name="k")
    C = tex.compute((), lambda: tex.sum(A[k], axis=k), name="C")
    D = tex.compute((), lambda: C[()] + 1.0, name="D")
    a = random_array((7,))
    check(tex.create_schedule(D.op), [A, D], [a], np.asarray(a.sum() + 1, "float32"))
    E = tex.compute((3,), lambda i: A[i] * D[()], name="E")  # a 0-d stage read by a 1-d one
    check(tex.create_schedule(E.op), [A, E], [a], a[:3] * (a.sum() + 1), rtol=1e-5)


def lower_triangle_sums(n):
    """Y[i] = sum of X[i, :i + 1]: a reduction whose bounds use the data axis."""
    X = tex.placeholder((n, n), "float32", name="X")

    def row(i):
        k = tex.reduce_axis((0, i + 1), name="k")
        return tex.sum(X[i, k], axis=k)
    return X, tex.compute((n,), row, name="Y")


@pytest.mark.parametrize("how", ["plain", "split", "cache_write", "compute_at"])
def test_a_reduction_bounded_by_a_data_axis(how):
    n = tex.var("n")
    X, Y = lower_triangle_sums(n)
    out = Y
    s = tex.create_schedule(Y.op)
    if how == "split":
        s[Y].split(Y.op.axis[0], factor=3)
    elif how == "cache_write":
        YL = s.cache_write(Y, "local")
        outer, _ = s[Y].split(Y.op.axis[0], factor=3)
        s[YL].compute_at(s[Y], outer)
    elif how == "compute_at":  # Y's buffer holds a tile whose start is not 0
        out = tex.compute((n,), lambda i: Y[i] * 2.0, name="Z")
        s = tex.create_schedule(out.op)
        outer, _ = s[out].split(out.op.axis[0], factor=4)
        s[Y].compute_at(s[out], outer)
    x = random_array((11, 11))
    expected = np.tril(x).sum(axis=1) * (2.0 if how == "compute_at" else 1.0)
    check(s, [X, out], [x], expected.astype("float32"), rtol=1e-4)


def test_dtypes_compare_with_their_names_and_pass_to_numpy():
    A = tex.placeholder((3, 4), "float32", name="A")
    assert A.dtype == "float32" and A.dtype == "float" and A.dtype != "int32"
    assert {A.dtype: 1}["float32"] == 1
    assert np.zeros((2,), dtype=A.dtype).dtype == np.float32
    assert np.arange(3).astype(A.dtype).dtype == np.float32
    assert tex.placeholder((2,), "float").dtype == "float32"


def test_tensors_are_called_or_indexed_one_dimension_at_a_time():
    A = tex.placeholder((5, 6), "float32", name="A")
    B = tex.compute((5, 6), lambda i, j: A[i][j] * 2.0 + A(i, j), name="B")
    a = random_array((5, 6))
    check(tex.create_schedule(B.op), [A, B], [a], 3 * a)
    with pytest.raises(tex.ExprError, match="A has 2 dimensions but 1 index"):
        tex.compute((5,), lambda i: A[i] + 1.0)
