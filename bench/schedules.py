"""Hand-written schedules that the benchmarks time against NumPy.

Each function declares its operation, schedules it, and returns
`(schedule, args)`, ready for `tex.build(schedule, args)`.
"""
from __future__ import annotations

import tex

#: The best matmul configuration found on the development machine (2 cores,
#: AVX-512), see bench/results/matmul.txt and `python -m bench.matmul --sweep`.
BEST_MATMUL = {"mr": 6, "nr": 64, "kc": None, "pack_a": False}


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _pack_b(B, K: int, N: int, nr: int):
    """B in panels of nr columns: B_packed[p, k, jj] = B[k, p * nr + jj] (zero past N)."""
    panels = _ceil_div(N, nr)
    if N % nr == 0:
        return tex.compute((panels, K, nr), lambda p, k, jj: B[k, p * nr + jj], name="B_packed")
    return tex.compute(
        (panels, K, nr),
        lambda p, k, jj: tex.if_then_else(p * nr + jj < N, B[k, p * nr + jj],
                                          tex.const(0.0, "float32")),
        name="B_packed")


def _pack_a(A, M: int, K: int, mr: int):
    """A in panels of mr rows: A_packed[p, k, ii] = A[p * mr + ii, k] (zero past M)."""
    panels = _ceil_div(M, mr)
    if M % mr == 0:
        return tex.compute((panels, K, mr), lambda p, k, ii: A[p * mr + ii, k], name="A_packed")
    return tex.compute(
        (panels, K, mr),
        lambda p, k, ii: tex.if_then_else(p * mr + ii < M, A[p * mr + ii, k],
                                          tex.const(0.0, "float32")),
        name="A_packed")


def matmul(M: int, N: int, K: int, *, mr: int = 4, nr: int = 64, kc: int | None = None,
           pack_a: bool = False, parallel: bool = True):
    """C = A @ B (float32) with an mr x nr tile of C accumulated in registers.

    B is packed into panels nr columns wide, so that the inner loop reads one
    contiguous row of a panel per step of k; with `pack_a`, A is packed into
    panels mr rows tall, so that the mr broadcasts of a step read consecutive
    floats. The loops over column panels go outermost (and run in parallel),
    so one panel of B stays in a core's L2 while the rows of A pass by.

    Without `kc`, the tile is a write cache (`cache_write` + `compute_at`)
    reduced over all of k and copied to C once. With `kc`, k is split by kc
    and its outer loop goes outside the loop over row tiles (the k-blocked
    "GotoBLAS" order): C itself accumulates, one kc-deep slice of A at a time.
    Returns (schedule, [A, B, C]).
    """
    A = tex.placeholder((M, K), name="A")
    B = tex.placeholder((K, N), name="B")
    B_packed = _pack_b(B, K, N, nr)
    k = tex.reduce_axis((0, K), name="k")
    A_packed = _pack_a(A, M, K, mr) if pack_a else None

    def a_at(i, k):
        return A_packed[i // mr, k, i % mr] if pack_a else A[i, k]

    C = tex.compute((M, N), lambda i, j: tex.sum(a_at(i, k) * B_packed[j // nr, k, j % nr],
                                                 axis=k), name="C")
    s = tex.create_schedule(C.op)
    if kc is None:
        j_outer = _register_tile_cached(s, C, mr, nr)
    else:
        j_outer = _register_tile_k_blocked(s, C, mr, nr, kc)
    _schedule_pack(s, B_packed, parallel, "vectorize")
    if pack_a:  # a transpose of mr-row strips: unroll the short lane loop, no gathers
        _schedule_pack(s, A_packed, parallel, "unroll")
    if parallel:
        s[C].parallel(j_outer)
    return s, [A, B, C]


def _register_tile_cached(s, C, mr: int, nr: int):
    """An mr x nr write cache computed at each tile of C; returns the column-panel loop."""
    C_local = s.cache_write(C, "local")
    i, j = C.op.axis
    j_outer, j_inner = s[C].split(j, factor=nr)
    i_outer, i_inner = s[C].split(i, factor=mr)
    s[C].reorder(j_outer, i_outer, i_inner, j_inner)
    s[C].unroll(i_inner)
    s[C].vectorize(j_inner)
    s[C_local].compute_at(s[C], i_outer)
    i_c, j_c = s[C_local].op.axis
    (k_c,) = s[C_local].op.reduce_axis
    s[C_local].reorder(k_c, i_c, j_c)
    s[C_local].unroll(i_c)
    s[C_local].vectorize(j_c)
    return j_outer


def _register_tile_k_blocked(s, C, mr: int, nr: int, kc: int):
    """C accumulated in place, k split by kc outside the row tiles; returns the panel loop."""
    i, j = C.op.axis
    (k,) = C.op.reduce_axis
    j_outer, j_inner = s[C].split(j, factor=nr)
    i_outer, i_inner = s[C].split(i, factor=mr)
    k_outer, k_inner = s[C].split(k, factor=kc)
    s[C].reorder(j_outer, k_outer, i_outer, k_inner, i_inner, j_inner)
    s[C].unroll(i_inner)
    s[C].vectorize(j_inner)
    return j_outer


def _schedule_pack(s, packed, parallel: bool, lanes: str):
    panel, _, lane = packed.op.axis
    getattr(s[packed], lanes)(lane)
    if parallel:
        s[packed].parallel(panel)
