"""Matrix products by the BLAS that NumPy uses, as extern stages. TVM: `tvm.contrib.cblas`.

    C = tex.contrib.cblas.matmul(A, B)                  # (n, l) x (l, m) -> (n, m)
    D = tex.compute(C.shape, lambda i, j: C[i, j] + bias)
    E = tex.contrib.cblas.batch_matmul(X, Y, transb=True)   # (b, n, l) x (b, m, l)

Each is an extern stage (`tex.extern`) whose statement calls the packed function
"tex.contrib.cblas.matmul" (or "...batch_matmul"): `np.matmul` writing into the
output, so float32 and float64 products run in NumPy's BLAS (OpenBLAS or MKL),
on the thread that calls the kernel. The functions are registered when tex is
imported (the table `PACKED_FUNCTIONS`), under TVM's names too
("tvm.contrib.cblas.matmul", ...), so that TE code calling them by name with
`call_packed` runs unchanged. Like every extern stage, they build for CPU
targets only.
"""
from __future__ import annotations

import numpy as np

from tex.codegen.packed_func import register_func
from tex.errors import ExprError
from tex.expr import Const
from tex.extern_op import call_packed, extern
from tex.tensor import Tensor

__all__ = ["batch_matmul", "matmul"]


def matmul(lhs: Tensor, rhs: Tensor, transa: bool = False, transb: bool = False,
           **kwargs) -> Tensor:
    """`lhs @ rhs` of two 2-D tensors, `lhs` transposed first when `transa`, `rhs` when
    `transb`; `kwargs` go to `tex.extern` (`name`, `tag`). TVM: `cblas.matmul`."""
    _check("matmul", lhs, rhs, 2, transa, transb, kwargs)
    n = lhs.shape[1] if transa else lhs.shape[0]
    m = rhs.shape[0] if transb else rhs.shape[1]
    return extern((n, m), [lhs, rhs], lambda ins, outs: call_packed(
        "tex.contrib.cblas.matmul", ins[0], ins[1], outs[0], transa, transb),
        **{"name": "C", **kwargs})


def batch_matmul(lhs: Tensor, rhs: Tensor, transa: bool = False, transb: bool = False,
                 iterative: bool = False, **kwargs) -> Tensor:
    """`lhs[k] @ rhs[k]` for each k of two 3-D tensors of one batch size, each matrix
    transposed first as `transa` / `transb` say. `iterative` is accepted for TVM code
    (NumPy chooses how to loop). TVM: `cblas.batch_matmul`."""
    _check("batch_matmul", lhs, rhs, 3, transa, transb, kwargs)
    b = lhs.shape[0]
    n = lhs.shape[2] if transa else lhs.shape[1]
    m = rhs.shape[1] if transb else rhs.shape[2]
    return extern((b, n, m), [lhs, rhs], lambda ins, outs: call_packed(
        "tex.contrib.cblas.batch_matmul", ins[0], ins[1], outs[0], transa, transb),
        **{"name": "C", **kwargs})


def _check(who: str, lhs, rhs, rank: int, transa: bool, transb: bool, kwargs: dict):
    """Tensors of `rank` dimensions, one float dtype (the result's too), whose inner sizes
    agree where they are known."""
    if "dtype" in kwargs and str(kwargs["dtype"]) != str(getattr(lhs, "dtype", None)):
        raise ExprError(f"cblas.{who}: the result has its operands' dtype, "
                        f"{getattr(lhs, 'dtype', '?')}; got dtype={kwargs['dtype']!r}")
    for side, t in (("lhs", lhs), ("rhs", rhs)):
        if not isinstance(t, Tensor) or len(t.shape) != rank:
            raise ExprError(f"cblas.{who}: {side} must be a {rank}-D tensor, got "
                            f"{getattr(t, 'shape', t)}")
        if str(t.dtype) not in ("float32", "float64"):
            raise ExprError(f"cblas.{who}: BLAS multiplies float32 or float64, {side} "
                            f"{t.name} is {t.dtype}")
    if lhs.dtype != rhs.dtype:
        raise ExprError(f"cblas.{who}: lhs {lhs.name} is {lhs.dtype}, rhs {rhs.name} "
                        f"{rhs.dtype}; cast one first")
    inner = (lhs.shape[-2] if transa else lhs.shape[-1], rhs.shape[-1] if transb
             else rhs.shape[-2])
    pairs = [inner] + ([(lhs.shape[0], rhs.shape[0])] if rank == 3 else [])
    for what, (a, b) in zip(("inner sizes", "batch sizes"), pairs):
        if isinstance(a, Const) and isinstance(b, Const) and a.value != b.value:
            raise ExprError(f"cblas.{who}: the {what} differ: {lhs.name} {lhs.shape} "
                            f"(transa={transa}) and {rhs.name} {rhs.shape} (transb={transb})")


def _matmul(a, b, c, transa, transb):
    """c = op(a) @ op(b): the packed function of `matmul` and `batch_matmul` (the last two
    axes are the matrices; batches of one size, which NumPy would broadcast)."""
    if a.ndim == 3 and a.shape[0] != b.shape[0]:
        raise ValueError(f"batch_matmul: the batch sizes differ, {a.shape[0]} and "
                         f"{b.shape[0]}")
    np.matmul(np.swapaxes(a, -1, -2) if transa else a,
              np.swapaxes(b, -1, -2) if transb else b, out=c)


#: The packed functions of this module, by name; TVM's names are for TE code that calls
#: them with `call_packed`.
PACKED_FUNCTIONS = {
    "tex.contrib.cblas.matmul": _matmul,
    "tex.contrib.cblas.batch_matmul": _matmul,
    "tvm.contrib.cblas.matmul": _matmul,
    "tvm.contrib.cblas.batch_matmul": _matmul,
}
for _name, _fn in PACKED_FUNCTIONS.items():
    register_func(_name, _fn)
