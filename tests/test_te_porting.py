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
