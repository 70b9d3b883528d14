"""Operators that call libraries outside tex, as extern stages: `cblas` (matrix products by
the BLAS NumPy uses). TVM: `tvm.contrib`."""
from tex.contrib import cblas

__all__ = ["cblas"]
